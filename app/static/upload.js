// The upload page: each chosen or dropped file is sent as the raw body of PUT /api/uploads/NAME with
// XMLHttpRequest, whose upload progress drives the file's bar; then the ingest state is polled (an htmx
// fragment) until the job is done (links to the viewer) or failed (its message).
(function () {
  "use strict";

  var AT_ONCE = 2; // files sent at the same time
  var waiting = [];
  var sending = 0;

  function megabytes(bytes) {
    return (bytes / 1e6).toFixed(bytes < 1e7 ? 2 : 0) + " MB";
  }

  function row(file) {
    var item = document.createElement("li");
    item.className = "upload-item";
    var name = document.createElement("span");
    name.className = "name";
    name.textContent = file.name; // text, never markup: the name is the client's
    var bar = document.createElement("progress");
    bar.max = 100;
    bar.value = 0;
    bar.setAttribute("aria-label", "upload progress of " + file.name);
    var status = document.createElement("span");
    status.className = "status meta";
    status.textContent = "waiting";
    var ingest = document.createElement("div");
    item.append(name, bar, status, ingest);
    document.getElementById("uploads").append(item);
    return { file: file, item: item, bar: bar, status: status, ingest: ingest };
  }

  function fail(entry, message) {
    entry.item.classList.add("failed");
    entry.bar.classList.add("refused");
    entry.bar.setAttribute("aria-label", "upload of " + entry.file.name + " refused");
    entry.status.className = "status bad";
    entry.status.textContent = message;
  }

  function follow(entry, job) {
    // the server renders the ingest state; the fragment polls itself until the job is finished
    entry.ingest.setAttribute("hx-get", "/upload/jobs/" + encodeURIComponent(job.id));
    entry.ingest.setAttribute("hx-trigger", "load");
    entry.ingest.setAttribute("hx-swap", "outerHTML");
    if (window.htmx) { window.htmx.process(entry.ingest); }
  }

  function send(entry, section) {
    sending += 1;
    var file = entry.file;
    var visibility = document.getElementById("visibility");
    var url = "/api/uploads/" + encodeURIComponent(file.name);
    if (visibility) { url += "?visibility=" + encodeURIComponent(visibility.value); }
    var request = new XMLHttpRequest();
    request.open("PUT", url);
    request.setRequestHeader("X-CSRF-Token", section.dataset.csrf);
    request.setRequestHeader("Content-Type", "application/octet-stream");
    request.setRequestHeader("Accept", "application/json");
    request.upload.onprogress = function (event) {
      var total = event.lengthComputable ? event.total : file.size;
      var percent = total ? Math.floor(100 * event.loaded / total) : 100;
      entry.bar.value = percent;
      entry.status.textContent = percent + "% of " + megabytes(total) + " sent";
    };
    request.onload = function () {
      var answer = null;
      try { answer = JSON.parse(request.responseText); } catch (error) { answer = null; }
      if (request.status === 201 && answer) {
        entry.bar.value = 100;
        entry.status.className = "status ok";
        entry.status.textContent = "100% sent (" + megabytes(file.size) + ")";
        follow(entry, answer);
      } else {
        fail(entry, (answer && answer.error) || ("refused: HTTP " + request.status));
      }
      done(section);
    };
    request.onerror = function () {
      fail(entry, "the connection was cut before the server answered; nothing was kept");
      done(section);
    };
    entry.status.textContent = "0% of " + megabytes(file.size) + " sent";
    request.send(file);
  }

  function done(section) {
    sending -= 1;
    next(section);
  }

  function next(section) {
    while (sending < AT_ONCE && waiting.length) { send(waiting.shift(), section); }
  }

  function add(files, section) {
    var max = Number(section.dataset.max);
    Array.prototype.forEach.call(files, function (file) {
      var entry = row(file);
      if (file.size === 0) {
        fail(entry, "empty file (0 bytes): there is nothing to upload");
      } else if (file.size > max) {
        fail(entry, "larger than this site's maximum file size of " + megabytes(max));
      } else {
        waiting.push(entry);
      }
    });
    next(section);
  }

  function start() {
    var section = document.getElementById("upload");
    if (!section) { return; }
    var input = document.getElementById("files");
    var drop = document.getElementById("drop");
    input.addEventListener("change", function () {
      add(input.files, section);
      input.value = "";
    });
    ["dragenter", "dragover"].forEach(function (type) {
      drop.addEventListener(type, function (event) {
        event.preventDefault();
        drop.classList.add("over");
      });
    });
    ["dragleave", "drop"].forEach(function (type) {
      drop.addEventListener(type, function (event) {
        event.preventDefault();
        drop.classList.remove("over");
      });
    });
    drop.addEventListener("drop", function (event) {
      if (event.dataTransfer && event.dataTransfer.files.length) { add(event.dataTransfer.files, section); }
    });
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
