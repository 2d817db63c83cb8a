"""What the browser tests share about pages of another origin: a plain static web server on another port (a
blog's, or a Jupyter server's), a notebook's page of outputs to serve there, and waiting for an embed frame's
tiles."""

from __future__ import annotations

import contextlib
import functools
import threading
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from tests.processes import free_port

FRAME_LOADED = """() => {
  const mosaic = window.imagexMosaic;
  return !!mosaic && mosaic.ready() && mosaic.layers.length > 0 &&
    mosaic.layers.every(layer => layer.items.length > 0 && layer.items.every(item => item.getFullyLoaded()));
}"""


class Quiet(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextlib.contextmanager
def other_site(folder: Path) -> Iterator[str]:
    """A plain static web server for `folder` on another port: another origin than ImageX's."""
    port = free_port()
    server = ThreadingHTTPServer(("127.0.0.1", port), functools.partial(Quiet, directory=str(folder)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def notebook_page(*outputs: str) -> str:
    """A notebook's page: each output's HTML in its own `<div class="output" id="out<index>">`."""
    cells = "".join(f'<div class="output" id="out{index}">{html}</div>' for index, html in enumerate(outputs))
    return (f'<!doctype html><html><head><meta charset="utf-8"><title>Notebook</title></head>'
            f'<body>{cells}</body></html>')
