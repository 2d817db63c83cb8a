"""Run a real nginx (Debian's, with its JavaScript module) as a plain process: its own prefix, main
configuration and loopback port in a temporary folder, never as a system service."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

JS_MODULE = Path("/usr/lib/nginx/modules/ngx_http_js_module.so")


def missing() -> str:
    """Why nginx with njs cannot run here ('' when it can)."""
    if shutil.which("nginx") is None:
        return "nginx is not installed (apt-get install nginx libnginx-mod-http-js; `make test-nginx` does)"
    if not JS_MODULE.is_file():
        return f"nginx's JavaScript module is missing ({JS_MODULE}: apt-get install libnginx-mod-http-js)"
    return ""


def main_config(prefix: Path, site: str, *, workers: int = 1) -> str:
    """A whole nginx.conf around `site` (an http-context file), everything it writes under `prefix`."""
    user = "user root;\n" if os.geteuid() == 0 else ""  # workers must read the test's private folders
    temp = "\n".join(f"    {kind}_temp_path {prefix / 'temp' / kind};"
                     for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    return f"""load_module {JS_MODULE};
{user}daemon off;
worker_processes {workers};
pid {prefix / 'nginx.pid'};
error_log {prefix / 'error.log'} warn;
events {{
    worker_connections 4096;
}}
http {{
    access_log off;
{temp}
    include {site};
}}
"""


@contextlib.contextmanager
def running(prefix: Path, site: Path, probe_url: str, *,
            workers: int = 1) -> Iterator[subprocess.Popen[bytes]]:
    """nginx with `site` until the block ends; it must answer `probe_url` (any HTTP status) first."""
    (prefix / "temp").mkdir(parents=True, exist_ok=True)
    conf = prefix / "nginx.conf"
    conf.write_text(main_config(prefix, site, workers=workers))
    checked = subprocess.run(["nginx", "-t", "-p", str(prefix), "-c", str(conf)], capture_output=True,
                             text=True, timeout=30)
    assert checked.returncode == 0, checked.stderr
    with (prefix / "nginx.out").open("wb") as output:
        process = subprocess.Popen(["nginx", "-p", str(prefix), "-c", str(conf)], stdout=output,
                                   stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(probe_url, timeout=2).close()
                break
            except urllib.error.HTTPError:
                break  # it answers
            except OSError:
                assert process.poll() is None, (prefix / "error.log").read_text()
                assert time.monotonic() < deadline, "nginx did not answer"
                time.sleep(0.1)
        yield process
    finally:
        process.terminate()  # SIGTERM: nginx's fast shutdown
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
