// Embed an ImageX view in any page:
//   <script src="https://HOST/static/embed.js" data-imagex-image="ID" data-width="640" data-height="480"></script>
//   <script src="https://HOST/static/embed.js" data-imagex-mosaic="ID1,ID2"></script>
// An image with planes (a cube, a series) opens at plane k (counted from 1) with data-plane="k".
// Each such tag gets an iframe of HOST's /embed/... page right after it; HOST is taken from the tag's own src.
(function () {
  "use strict";

  var DEFAULT_WIDTH = 640, DEFAULT_HEIGHT = 480, LARGEST = 10000;
  var ID = /^[A-Za-z0-9]{6,32}$/;

  function size(text, fallback) {
    // a whole number of CSS pixels, or a percentage; anything else falls back to the default
    var value = String(text || "").trim();
    if (/^\d{1,5}$/.test(value) && Number(value) > 0 && Number(value) <= LARGEST) { return value + "px"; }
    if (/^\d{1,3}%$/.test(value) && Number(value.slice(0, -1)) > 0 && Number(value.slice(0, -1)) <= 100) {
      return value;
    }
    return fallback + "px";
  }

  function embedUrl(script) {
    var origin = new URL(script.src, document.baseURI).origin;
    var image = script.getAttribute("data-imagex-image");
    var mosaic = script.getAttribute("data-imagex-mosaic");
    if (image !== null) {
      image = image.trim();
      if (!ID.test(image)) { return { error: "data-imagex-image is not an image id: " + image }; }
      var plane = script.getAttribute("data-plane");
      var query = "";
      if (plane !== null) {
        plane = plane.trim();
        if (!/^[1-9]\d{0,5}$/.test(plane)) { return { error: "data-plane is not a plane number (from 1): " + plane }; }
        query = "?plane=" + plane;
      }
      return { url: origin + "/embed/images/" + image + query, title: "ImageX image " + image };
    }
    if (mosaic !== null) {
      var ids = mosaic.split(",").map(function (part) { return part.trim(); }).filter(Boolean);
      var bad = ids.filter(function (part) { return !ID.test(part); });
      if (!ids.length || bad.length) {
        return { error: "data-imagex-mosaic must be image ids separated by commas" };
      }
      return { url: origin + "/embed/mosaic?ids=" + ids.map(encodeURIComponent).join(","),
               title: "ImageX mosaic of " + ids.length + " images" };
    }
    return { error: "add data-imagex-image=\"ID\" or data-imagex-mosaic=\"ID1,ID2\" to the script tag" };
  }

  function embed(script) {
    if (script.getAttribute("data-imagex-done") !== null) { return; }
    script.setAttribute("data-imagex-done", "");
    var target = embedUrl(script);
    if (target.error) {
      if (window.console) { window.console.error("ImageX embed: " + target.error); }
      return;
    }
    var frame = document.createElement("iframe");
    frame.src = target.url;
    frame.title = script.getAttribute("data-title") || target.title;
    frame.style.width = size(script.getAttribute("data-width"), DEFAULT_WIDTH);
    frame.style.height = size(script.getAttribute("data-height"), DEFAULT_HEIGHT);
    frame.style.border = "0";
    frame.setAttribute("allowfullscreen", "");
    frame.setAttribute("loading", "lazy");
    frame.setAttribute("referrerpolicy", "no-referrer");
    frame.className = "imagex-embed";
    script.parentNode.insertBefore(frame, script.nextSibling);
  }

  if (document.currentScript) {
    embed(document.currentScript);
  }
  // tags added with async/defer (or whose run saw no currentScript) are found by their attributes
  var selector = "script[data-imagex-image], script[data-imagex-mosaic]";
  Array.prototype.forEach.call(document.querySelectorAll(selector), function (script) {
    if (/\/static\/embed\.js(?:[?#].*)?$/.test(script.src)) { embed(script); }
  });
})();
