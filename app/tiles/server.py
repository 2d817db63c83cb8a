"""The tile hot path as a thin ASGI layer in front of the Quart app: a tile URL whose token is good and
whose file is on disk is answered here (token check, one file read, headers), with no Quart request or
response objects; everything else, and every tile request it cannot answer (a bad or revoked token, a
display tile not rendered yet, a pixel value, a missing file, HEAD), goes to the Quart app, whose tile
route gives the same answers the slow way and the error messages.

Measured by bench/tiles.py against a bare ASGI file server under the same Hypercorn.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any

from app import tokens
from app.headers import TILE_HEADERS
from app.tiles import display_cache

if TYPE_CHECKING:
    from app.archive import Archive

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[Any]]
Send = Callable[[Any], Awaitable[None]]

PREFIX = "/tiles/"
ID = re.compile(r"[A-Za-z0-9]{6,32}")
# The files a tile URL may name below the image's generation folder: the static pyramid and thumbnail,
# and rendered display tiles (a spec holds a "~", so it is never "." or "..").
STATIC_NAME = re.compile(r"image\.dzi|thumb\.jpeg|image_files/\d{1,2}/\d{1,6}_\d{1,6}\.jpeg")
# A plane of a cube other than the first keeps its rendered tiles in planes/<index>/.
CACHED_NAME = re.compile(r"(?:planes/[1-9]\d{0,5}/)?display/[A-Za-z0-9_.:+\-]*~[A-Za-z0-9_.:~+\-]*/"
                         r"image_files/(?:0|[1-9]\d?)/(?:0|[1-9]\d{0,5})_(?:0|[1-9]\d{0,5})\.jpeg")
SERVED_NAME = re.compile(f"{STATIC_NAME.pattern}|{CACHED_NAME.pattern}")
TYPES = {"dzi": b"application/xml", "jpeg": b"image/jpeg"}


# Headers every tile answer carries besides its own (type, length, ETag, Cache-Control), here and in the
# nginx site: the same as the app's on every response.
SECURITY_HEADERS = TILE_HEADERS


def etag_of(stat: os.stat_result) -> str:
    """The ETag of a tile file: nginx's spelling (modification second and size in hex), so a browser's
    cached copy stays valid whichever of ImageX and nginx in front answers."""
    return f'"{int(stat.st_mtime):x}-{stat.st_size:x}"'


def cache_control(remaining: int) -> str:
    """Tiles never change under one URL: cacheable for as long as their token is valid."""
    return f"public, max-age={remaining}, immutable"


# Tokens found signed, remembered by the server (whether a token is signed never changes; expiry is checked
# on each request): a signature is computed once per token, not once per tile. Emptied when full.
SIGNED_MEMORY = 4096


def matches(etag: str, wanted: str) -> bool:
    """Does an If-None-Match value name `etag` (or `*`)?"""
    return wanted.strip() == "*" or etag in wanted


class TileServer:
    """ASGI middleware: answers tile requests it can from disk, passes the rest to `app`."""

    def __init__(self, app: Any, archive: Archive,
                 security_headers: Sequence[tuple[str, str]] = SECURITY_HEADERS,
                 clock: Callable[[], float] = time.time) -> None:
        self.app = app
        self.clock = clock
        self.archive = archive
        self.tiles = str(archive.settings.tiles_dir)
        self.security = [(name.lower().encode(), value.encode()) for name, value in security_headers]
        self._known: dict[tuple[str, str], tuple[int, str]] = {}
        self._signed_with = b""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "GET" and scope["path"].startswith(PREFIX):
            answer = self._answer(scope)
            if answer is not None:
                status, headers, body = answer
                await send({"type": "http.response.start", "status": status, "headers": headers})
                await send({"type": "http.response.body", "body": body})
                return
        await self.app(scope, receive, send)

    def _signed(self, image_id: str, token: str) -> tuple[int, str] | None:
        """(expiry, generation) of a token the site's secret signed for this image (remembered), else None."""
        secret = self.archive.secret
        if secret is not self._signed_with:  # a new key (tests make archives anew): forget the old answers
            self._known.clear()
            self._signed_with = secret
        key = (image_id, token)
        found = self._known.get(key)
        if found is None:
            if not secret or not ID.fullmatch(image_id):
                return None
            found = tokens.signed(secret, image_id, token)
            if found is None:
                return None  # not remembered: a forger cannot fill the memory
            if len(self._known) >= SIGNED_MEMORY:
                self._known.clear()
            self._known[key] = found
        return found

    def _answer(self, scope: Scope) -> tuple[int, list[tuple[bytes, bytes]], bytes] | None:
        parts = scope["path"][len(PREFIX):].split("/", 2)
        if len(parts) != 3:
            return None
        image_id, token, name = parts
        if not SERVED_NAME.fullmatch(name):
            return None
        signed = self._signed(image_id, token)
        if signed is None:
            return None
        expires, gen = signed
        remaining = expires - int(self.clock())
        if remaining <= 0:
            return None  # the tile route says it expired
        # The file read directly, in the event loop: tiles are small and usually in the page cache, and
        # a thread hop would cost more than the read.
        try:
            descriptor = os.open(f"{self.tiles}/{image_id[:2]}/{image_id}/{gen}/{name}", os.O_RDONLY)
        except OSError:
            return None  # revoked, deleted, not rendered yet: the tile route says which
        try:
            stat = os.fstat(descriptor)
            etag = etag_of(stat)
            headers = [(b"etag", etag.encode()), (b"cache-control", cache_control(remaining).encode()),
                       *self.security]
            for key, value in scope["headers"]:
                if key == b"if-none-match" and matches(etag, value.decode("latin-1")):
                    return 304, headers, b""
            body = os.pread(descriptor, stat.st_size, 0)
            if name.startswith("display/"):  # the display cache evicts the least recently used first
                display_cache.used(descriptor, stat)
        finally:
            os.close(descriptor)
        headers += [(b"content-type", TYPES[name.rsplit(".", 1)[1]]),
                    (b"content-length", b"%d" % len(body))]
        return 200, headers, body
