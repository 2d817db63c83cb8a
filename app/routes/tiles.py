"""Deep Zoom files and thumbnails. The hot path: a signed token in the URL, no catalog query."""

from __future__ import annotations

import re
from typing import Any

from quart import Blueprint, Response, request
from werkzeug.exceptions import Forbidden, NotFound

from app import tokens
from app.archive import get_archive

bp = Blueprint("tiles", __name__)
_NAME = re.compile(r"^(?:image\.dzi|thumb\.jpeg|image_files/\d{1,2}/\d{1,6}_\d{1,6}\.jpeg)$")
_ID = re.compile(r"^[A-Za-z0-9]{6,32}$")
_TYPES = {".dzi": "application/xml", ".jpeg": "image/jpeg"}


@bp.get("/tiles/<image_id>/<token>/<path:name>")
async def tile(image_id: str, token: str, name: str) -> Any:
    archive = get_archive()
    if not _ID.fullmatch(image_id) or not _NAME.fullmatch(name):
        raise NotFound("no such tile")
    remaining = tokens.check(archive.secret, image_id, token)
    if remaining is None:
        raise Forbidden("this tile link has expired or is not valid; reload the page")
    path = archive.tile_folder(image_id) / name
    # Tiles are small (tens of KB) and usually in the page cache: a direct read is cheaper than a
    # thread hop, and it is what keeps this route fast.
    try:
        stat = path.stat()
        etag = f'"{stat.st_mtime_ns:x}-{stat.st_size:x}"'
        wanted = request.headers.get("If-None-Match", "")
        if wanted.strip() == "*" or etag in wanted:
            response = Response(b"", status=304)
        else:
            response = Response(path.read_bytes(), content_type=_TYPES[path.suffix])
    except FileNotFoundError:
        raise NotFound("no such tile") from None
    response.headers["ETag"] = etag
    response.headers["Cache-Control"] = f"public, max-age={remaining}, immutable"
    return response
