"""The HiPS surveys as static files: `/hips/<survey>/properties`, `Moc.fits`, `NorderK/DirD/NpixN.{png,jpg,
fits}` and `Norder3/Allsky.{png,jpg,fits}` (app/hips/survey.py writes them).

- `/hips/public/...` is open to every site (`Access-Control-Allow-Origin: *`), so that an Aladin Lite page
  anywhere can open it by URL (refused to guests when the site does not let guests browse).
- The other surveys (`registered`, each user's `user-<digest>`) are served like Deep Zoom tiles:
  `/hips/<survey>/<token>/...`, the token signed for that survey and expiring (app/tokens.py), given by the
  sky page to whoever may see the survey. A bad or expired token is 403; a per-user survey while the site
  setting `user_surveys` is off is 404.

Files are written under a temporary name and renamed into place, so each answer is a whole file; their
ETag names the file's inode and modification time in nanoseconds, which every update changes.
"""

from __future__ import annotations

import os
import re
from typing import Any

from quart import Blueprint, Response, request
from werkzeug.exceptions import Forbidden, NotFound

from app import tokens
from app.archive import get_archive
from app.hips.access import SURVEY_GEN, survey_subject
from app.hips.live import PUBLIC, USER_PREFIX, is_survey_name
from app.hips.survey import hips_root
from app.identity import current_site, current_user
from app.tiles.server import matches

bp = Blueprint("hips", __name__)
_NAME = re.compile(r"properties|Moc\.fits|Norder3/Allsky\.(?:png|jpg|fits)"
                   r"|Norder(?P<order>[0-9]|[12][0-9])/Dir(?P<dir>0|[1-9]\d{4,17})/Npix(?P<npix>0|[1-9]\d{0,18})"
                   r"\.(?:png|jpg|fits)")
_TYPES = {".png": "image/png", ".jpg": "image/jpeg", ".fits": "application/fits",
          "": "text/plain; charset=utf-8"}
# Tiles change when images arrive or go: a cache may keep one a minute, then asks again with the ETag.
CACHE = "public, max-age=60"
_EXPIRED = "this survey link has expired or is not valid; reload the page"


def etag_of(stat: os.stat_result) -> str:
    return f'"{stat.st_ino:x}-{stat.st_mtime_ns:x}-{stat.st_size:x}"'


@bp.get("/hips/<survey>/<path:name>")
async def file(survey: str, name: str) -> Any:
    """One file of a survey."""
    archive = get_archive()
    if not is_survey_name(survey):
        raise NotFound(f"no survey {survey!r}: the archive's HiPS surveys are /hips/{PUBLIC}/ and, for "
                       "logged-in users, the signed ones the sky page links")
    remaining = 0
    if survey == PUBLIC:
        if current_user() is None and not current_site().guest_access:
            raise Forbidden("log in to see this survey: this site does not let guests browse")
    else:
        if survey.startswith(USER_PREFIX) and not current_site().user_surveys:
            raise NotFound("this site keeps no survey per user")
        token, _, name = name.partition("/")
        checked = tokens.check(archive.secret, survey_subject(survey), token)
        if checked is None or checked[1] != SURVEY_GEN:
            raise Forbidden(_EXPIRED)
        remaining = checked[0]
    match = _NAME.fullmatch(name)
    if match is None or (match["npix"] is not None
                         and int(match["dir"]) != (int(match["npix"]) // 10000) * 10000):
        raise NotFound("no such file in a HiPS survey")
    path = hips_root(archive.settings.data) / survey / name
    try:
        stat = path.stat()
        etag = etag_of(stat)
        unchanged = matches(etag, request.headers.get("If-None-Match", ""))
        data = b"" if unchanged else path.read_bytes()
    except (FileNotFoundError, NotADirectoryError):
        raise NotFound("no such tile: nothing in the survey covers it") from None
    response = Response(b"", status=304) if unchanged else Response(data, content_type=_TYPES[path.suffix])
    response.headers["ETag"] = etag
    if survey != PUBLIC:  # the token's holder may see it: as long as it is valid, a minute at most
        response.headers["Cache-Control"] = f"public, max-age={min(60, remaining)}"
    elif current_site().guest_access:
        response.headers["Cache-Control"] = CACHE
        response.headers["Access-Control-Allow-Origin"] = "*"
    else:  # only logged-in users may see it: no shared cache may hand it to a guest
        response.headers["Cache-Control"] = "private, max-age=60"
        response.vary.add("Cookie")
    return response
