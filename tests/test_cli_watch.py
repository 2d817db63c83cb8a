"""`imagex watch` and `imagex serve` with IMAGEX_WATCH_DIRS as real processes: a file dropped into a watched
folder is ingested with no other command, a signal stops the watcher cleanly, a file the watcher's user may
not read fails with the pipeline's message, and bad folders or owners are refused."""

from __future__ import annotations

import json
import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.cli_helpers import catalog, environment, imagex, running, wait_until
from tests.ingest.ingest_helpers import fits_bytes
from tests.processes import answers, free_port

TIMEOUT = 90
REPO = Path(__file__).resolve().parents[1]


def finished_jobs(data: Path) -> list[dict[str, Any]]:
    if not (data / "catalog.sqlite").exists():
        return []
    with catalog(data) as db:
        rows = [dict(row) for row in db.execute("SELECT path, state, error, provenance, owner FROM jobs")]
    return rows if rows and all(row["state"] in ("done", "failed") for row in rows) else []


def stop(process: subprocess.Popen[str], signum: int, log: Path) -> str:
    process.send_signal(signum)
    assert process.wait(timeout=60) == 0, log.read_text()
    return log.read_text()


def test_watch_ingests_dropped_files_and_stops_on_sigterm(tmp_path):
    inbox, data, log = tmp_path / "inbox", tmp_path / "var", tmp_path / "watch.log"
    inbox.mkdir()
    (inbox / "before.fits").write_bytes(fits_bytes(1))
    past = time.time() - 600
    os.utime(inbox / "before.fits", (past, past))
    env = environment(data)
    with running(["watch", str(inbox), "--workers", "1", "--watch-settle", "0.5"], env, log) as process:
        wait_until(lambda: "Ctrl-C stops" in log.read_text(), "the watcher to start", process, log)
        (inbox / "dropped.fits").write_bytes(fits_bytes(2))
        jobs = wait_until(lambda: len(finished_jobs(data)) == 2 and finished_jobs(data), "two ingested files",
                          process, log)
        output = stop(process, signal.SIGTERM, log)
    assert sorted((Path(job["path"]).name, job["state"], job["provenance"]) for job in jobs) == [
        ("before.fits", "done", "watch"), ("dropped.fits", "done", "watch")]
    assert f"ImageX watching {inbox} into {data}; Ctrl-C stops" in output
    assert "Stopped watching; 2 file(s) queued while watching." in output
    with catalog(data) as db:
        assert db.execute("SELECT count(*) FROM images WHERE provenance = 'watch'").fetchone()[0] == 2


def test_watch_reads_its_folders_from_the_settings_and_stops_on_sigint(tmp_path):
    inbox, data, log = tmp_path / "inbox", tmp_path / "var", tmp_path / "watch.log"
    inbox.mkdir()
    env = environment(data, IMAGEX_WATCH_DIRS=str(inbox), IMAGEX_WORKERS="1")
    with running(["watch"], env, log) as process:
        wait_until(lambda: "Ctrl-C stops" in log.read_text(), "the watcher to start", process, log)
        output = stop(process, signal.SIGINT, log)
    assert f"ImageX watching {inbox} into {data}" in output
    assert "Stopped watching; 0 file(s) queued while watching." in output


@pytest.mark.parametrize(("args", "env", "message"), [
    ([], {}, "imagex: watch: name the folders to watch, or set IMAGEX_WATCH_DIRS"),
    (["{tmp}/nowhere"], {}, "imagex: watch: no such folder: {tmp}/nowhere"),
    (["{tmp}/inbox/file.fits"], {}, "imagex: watch: no such folder: {tmp}/inbox/file.fits"),
    (["{tmp}/inbox"], {"IMAGEX_WATCH_OWNERS": "{tmp}/inbox=carol"},
     "imagex: IMAGEX_WATCH_OWNERS: {tmp}/inbox=carol: there is no user 'carol'; add one with "
     "`imagex user add carol`"),
    (["{tmp}/inbox", "--watch-settle", "0"], {},
     "imagex: --watch-settle: must be a positive number, got '0'"),
    (["{tmp}/inbox", "--watch-visibility", "world"], {},
     "imagex: --watch-visibility: must be one of private, registered, public, got 'world'"),
])
def test_watch_refuses_bad_folders_and_settings(tmp_path, args, env, message):
    (tmp_path / "inbox").mkdir()
    (tmp_path / "inbox" / "file.fits").write_bytes(fits_bytes(3))
    result = imagex(tmp_path / "var", "watch", *(arg.format(tmp=tmp_path) for arg in args), timeout=60,
                    **{key: value.format(tmp=tmp_path) for key, value in env.items()})
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr.strip() == message.format(tmp=tmp_path)


# Runs `imagex watch` as the user nobody: the interpreter lives under root's home, which nobody may not
# enter, so it starts as root, imports what the watcher and the pipeline's first steps need, and drops its
# privileges for good (os.setgid, os.setuid) before the command starts.
AS_NOBODY = """
import os, sys
import anyio._backends._asyncio, app.archive, app.cli, app.ingest.jobs, app.ingest.pipeline, app.ingest.watch
import app.fleet, app.lifecycle, app.store.sqlite, app.tiles.pyramid, email.parser, encodings.idna
app.fleet.version()  # reads the package metadata (importlib.metadata, the email package)
os.setgroups([])
os.setgid(int(sys.argv[2]))
os.setuid(int(sys.argv[1]))
assert os.getuid() != 0 and os.geteuid() != 0
sys.exit(app.cli.main(sys.argv[3:]))
"""


def test_a_file_the_watcher_may_not_read_is_queued_and_fails_with_a_message():
    """Tests run as root, who may read anything: so the watcher runs as the user nobody (as a service
    account would), and the file belongs to root with mode 0600."""
    nobody = pwd.getpwnam("nobody")
    base = Path(tempfile.mkdtemp(prefix="imagex-watch-"))  # pytest's own folders are root's alone
    try:
        inbox, data, log = base / "inbox", base / "var", base / "watch.log"
        inbox.mkdir()
        for folder in (base, inbox):
            os.chown(folder, nobody.pw_uid, nobody.pw_gid)
        env = environment(data, HOME=str(base))
        command = [sys.executable, "-c", AS_NOBODY, str(nobody.pw_uid), str(nobody.pw_gid), "watch",
                   str(inbox), "--workers", "1", "--watch-settle", "0.5"]
        with log.open("w") as output:
            process = subprocess.Popen(command, env=env, cwd=REPO, stdout=output, stderr=subprocess.STDOUT,
                                       text=True)
        try:
            wait_until(lambda: "Ctrl-C stops" in log.read_text(), "the watcher to start", process, log)
            secret = inbox / "secret.fits"
            secret.write_bytes(fits_bytes(4))
            secret.chmod(0o600)
            [job] = wait_until(lambda: finished_jobs(data), "the file to be tried", process, log)
            output_text = stop(process, signal.SIGTERM, log)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait(timeout=30)
        assert (job["path"], job["state"], job["provenance"]) == (str(secret), "failed", "watch")
        assert job["error"] == f"{secret}: permission denied: the file cannot be read"
        assert "Stopped watching; 1 file(s) queued while watching." in output_text
        assert (data / "catalog.sqlite").stat().st_uid == nobody.pw_uid  # it really ran as nobody
    finally:
        shutil.rmtree(base, ignore_errors=True)


def test_serve_with_watch_dirs_shows_a_dropped_file_with_no_other_command(tmp_path):
    inbox, data, log = tmp_path / "inbox", tmp_path / "var", tmp_path / "serve.log"
    inbox.mkdir()
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = environment(data, IMAGEX_WATCH_DIRS=str(inbox), IMAGEX_WATCH_SETTLE="0.5",
                      IMAGEX_WATCH_VISIBILITY="public", IMAGEX_WORKERS="1", IMAGEX_PORT=str(port))
    with running(["serve"], env, log) as process:
        wait_until(lambda: answers(url + "/api/images"), "the server", process, log)
        (inbox / "tonight.fits").write_bytes(fits_bytes(6, OBSERVER="Watcher test"))

        def listed() -> list[dict[str, Any]]:
            with urllib.request.urlopen(url + "/api/images", timeout=10) as response:
                return list(json.loads(response.read())["images"])

        [image] = wait_until(listed, "the dropped file in /api/images", process, log)
        stop(process, signal.SIGTERM, log)
    assert (image["name"], image["provenance"], image["visibility"], image["owner"]) == (
        "Field 6", "watch", "public", "")
    assert image["path"] == "tonight.fits"  # a guest learns the file name, not the server's folders
