"""The HiPS surveys as static files: `/hips/<survey>/properties`, `Moc.fits`, `NorderK/DirD/NpixN.{png,jpg,
fits}` and `Norder3/Allsky.{png,jpg,fits}` (app/hips/survey.py writes them). The public survey is open to
every site (`Access-Control-Allow-Origin: *`), so that an Aladin Lite page anywhere can open it by URL; it
is the only survey so far, and other names are 404.

Files are written under a temporary name and renamed into place, so each answer is a whole file; their
ETag names the file's inode and modification time in nanoseconds, which every update changes.
"""

from __future__ import annotations

import os
import re
from typing import Any

from quart import Blueprint, Response, request
from werkzeug.exceptions import NotFound

from app.archive import get_archive
from app.hips.live import PUBLIC, SURVEYS
from app.hips.survey import hips_root
from app.tiles.server import matches

bp = Blueprint("hips", __name__)
_NAME = re.compile(r"properties|Moc\.fits|Norder3/Allsky\.(?:png|jpg|fits)"
                   r"|Norder(?P<order>[0-9]|[12][0-9])/Dir(?P<dir>0|[1-9]\d{4,17})/Npix(?P<npix>0|[1-9]\d{0,18})"
                   r"\.(?:png|jpg|fits)")
_TYPES = {".png": "image/png", ".jpg": "image/jpeg", ".fits": "application/fits",
          "": "text/plain; charset=utf-8"}
# Tiles change when images arrive or go: a cache may keep one a minute, then asks again with the ETag.
CACHE = "public, max-age=60"


def etag_of(stat: os.stat_result) -> str:
    return f'"{stat.st_ino:x}-{stat.st_mtime_ns:x}-{stat.st_size:x}"'


@bp.get("/hips/<survey>/<path:name>")
async def file(survey: str, name: str) -> Any:
    """One file of a survey."""
    if survey not in SURVEYS:
        raise NotFound(f"no survey {survey!r}: the archive has one HiPS survey, /hips/{PUBLIC}/")
    match = _NAME.fullmatch(name)
    if match is None or (match["npix"] is not None
                         and int(match["dir"]) != (int(match["npix"]) // 10000) * 10000):
        raise NotFound("no such file in a HiPS survey")
    path = hips_root(get_archive().settings.data) / survey / name
    try:
        stat = path.stat()
        etag = etag_of(stat)
        unchanged = matches(etag, request.headers.get("If-None-Match", ""))
        data = b"" if unchanged else path.read_bytes()
    except (FileNotFoundError, NotADirectoryError):
        raise NotFound("no such tile: nothing in the survey covers it") from None
    response = Response(b"", status=304) if unchanged else Response(data, content_type=_TYPES[path.suffix])
    response.headers["ETag"] = etag
    response.headers["Cache-Control"] = CACHE
    if survey == PUBLIC:
        response.headers["Access-Control-Allow-Origin"] = "*"
    return response
