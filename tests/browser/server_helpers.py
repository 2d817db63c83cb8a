"""A real `imagex serve` (Hypercorn in its own process) on a data folder filled by a real `imagex ingest`, and
screenshots for the README: what the browser tests and others start their servers with."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.processes import answers, free_port, stop

BIN = Path(sys.executable).parent
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
SIZE = 600


@dataclass
class Server:
    url: str
    data: Path
    image: dict[str, Any]
    log: Path

    def get(self, path: str) -> Any:
        with urllib.request.urlopen(self.url + path, timeout=10) as response:
            return json.loads(response.read())


@contextlib.contextmanager
def ingest_and_serve(root: Path, *paths: Path, options: tuple[str, ...] = (),
                     hips: bool = False) -> Iterator[Server]:
    """`imagex ingest` of `paths` (public, with `options`) into `root/var`, then a real `imagex serve` of
    it: yields the server, its `image` the first image listed. `hips`: keep the public HiPS survey."""
    env = {**os.environ, "IMAGEX_DATA": str(root / "var"), "IMAGEX_WORKERS": "1",
           "IMAGEX_PORT": str(free_port()), "IMAGEX_HOST": "127.0.0.1", "IMAGEX_HIPS": str(hips).lower()}
    env.pop("IMAGEX_SAMPLES", None)
    command = [str(BIN / "imagex"), "ingest", "--no-progress", "--visibility", "public", *options,
               *(str(path) for path in paths)]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stdout + done.stderr
    log = root / "serve.log"
    with imagex_serve(env, log) as url:
        server = Server(url=url, data=root / "var", image={}, log=log)
        server.image = server.get("/api/images")["images"][0]
        yield server


@contextlib.contextmanager
def imagex_serve(env: dict[str, str], log: Path) -> Iterator[str]:
    """A real `imagex serve` with `env` (which names its port), its output in `log`: yields its URL once it
    answers; SIGTERM (then kill) afterwards."""
    url = f"http://127.0.0.1:{env['IMAGEX_PORT']}"
    with log.open("w") as output:
        process = subprocess.Popen([str(BIN / "imagex"), "serve"], env=env, stdout=output,
                                   stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while not answers(url + "/api/images"):
            assert process.poll() is None, f"imagex serve exited: {log.read_text()}"
            assert time.monotonic() < deadline, f"imagex serve did not answer: {log.read_text()}"
            time.sleep(0.2)
        yield url
    finally:
        stop(process)


async def screenshot(page: Any, name: str) -> None:
    """With IMAGEX_SCREENSHOTS=FOLDER, keep a screenshot of the page for the README (docs/screenshots)."""
    folder = os.environ.get("IMAGEX_SCREENSHOTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        await page.screenshot(path=str(Path(folder) / name), full_page=False)
