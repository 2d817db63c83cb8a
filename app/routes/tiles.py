"""Deep Zoom files and thumbnails, dynamic tiles (another interval, stretch or colormap, rendered from the
science pyramid and cached on disk) and pixel values. The hot path: a signed token in the URL, no catalog
query when the file is there. Requests for files on disk are answered before they reach this route, by
the thin ASGI layer in app/tiles/server.py; this route gives the same answers, renders what is missing and
says why a request fails.

The token names the image's tile generation (app/tiles/pyramid.py): the files are in
`<tiles>/<id[:2]>/<id>/<gen>/`. When that folder is gone, the link was revoked (visibility changed, the
owner disabled) or the image deleted: 403, reload the page.

    /tiles/<id>/<token>/image.dzi, thumb.jpeg, image_files/<level>/<col>_<row>.jpeg   static pyramid
    /tiles/<id>/<token>/display/<spec>/image.dzi, .../image_files/<level>/<col>_<row>.jpeg   dynamic
    /tiles/<id>/<token>/pixel/<x>_<y>   the original value at display pixel (x, y), as JSON
    /tiles/<id>/<token>/block/<x>_<y>   the 5x5 values around display pixel (x, y), as JSON (the pixel table)
    /tiles/<id>/<token>/warp/<frame>/<spec>/image_files/<level>/<col>_<row>.png   the image drawn resampled
        into a mosaic's frame (app/sky/warp.py), PNG with alpha
    /tiles/<id>/<token>/planes/<k>/display/..., .../planes/<k>/pixel/<x>_<y>   the same for plane k (from 0)
        of an image with planes (a cube, a series): rendered from that plane's science pyramid, which is
        built from the original on first use
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from pathlib import Path
from typing import Any

import pyvips
from quart import Blueprint, Response, jsonify, request
from werkzeug.exceptions import Forbidden, Gone, NotFound

from app import tokens
from app.archive import Archive, get_archive
from app.exceptions import ImageXError
from app.routes.readiness import refuse_unviewable, tiling_state
from app.sky.mosaic import Sheet
from app.sky.warp import load_frame
from app.tiles import display_cache, pyramid, render, science, warped
from app.tiles.pyramid import DZI_NAME, NO_GEN
from app.tiles.server import cache_control, etag_of, matches

bp = Blueprint("tiles", __name__)
_NAME = re.compile(r"^(?:image\.dzi|thumb\.jpeg|image_files/\d{1,2}/\d{1,6}_\d{1,6}\.jpeg)$")
_LOW = re.compile(r"^image_files/(?P<level>0|[1-9]\d?)/0_0\.jpeg$")  # the levels of one tile
_ID = re.compile(r"^[A-Za-z0-9]{6,32}$")
_TYPES = {".dzi": "application/xml", ".jpeg": "image/jpeg", ".png": "image/png"}
_INTEGER = r"(?:0|[1-9]\d{0,5})"  # one spelling per number: one cache file per tile
_DISPLAY = re.compile(rf"^display/(?P<spec>[^/]+)/(?:image\.dzi|image_files/(?P<level>0|[1-9]\d?)/"
                      rf"(?P<col>{_INTEGER})_(?P<row>{_INTEGER})\.jpeg)$")
_PIXEL = re.compile(rf"^(?P<kind>pixel|block)/(?P<x>{_INTEGER})_(?P<y>{_INTEGER})$")
BLOCK_RADIUS = 2  # the pixel table: 5x5 values, as DS9 shows them
_WARP = re.compile(rf"^warp/(?P<frame>[0-9a-f]{{32}})/(?P<spec>[^/]+)/image_files/(?P<level>0|[1-9]\d?)/"
                   rf"(?P<col>{_INTEGER})_(?P<row>{_INTEGER})\.png$")
_PLANE = re.compile(r"^planes/(?P<index>[1-9]\d{0,5})/(?P<rest>(?:display|pixel|block|warp)/.*)$")
_EXPIRED = "this tile link has expired or is not valid; reload the page"
_REVOKED = "this tile link has expired or was revoked; reload the page"


@bp.get("/tiles/<image_id>/<token>/<path:name>")
async def tile(image_id: str, token: str, name: str) -> Any:
    archive = get_archive()
    index = 0
    plane = _PLANE.fullmatch(name)
    if plane:
        index, name = int(plane["index"]), plane["rest"]
    if _ID.fullmatch(image_id) and name.startswith("display/"):
        return await _display(archive, image_id, token, name, index)
    if _ID.fullmatch(image_id) and name.startswith(("pixel/", "block/")):
        return await _pixel(archive, image_id, token, name, index)
    if _ID.fullmatch(image_id) and name.startswith("warp/"):
        return await _warped(archive, image_id, token, name, index)
    if plane:
        raise NotFound("no such tile")
    if not _ID.fullmatch(image_id) or not _NAME.fullmatch(name):
        raise NotFound("no such tile")
    folder, remaining = _check(archive, image_id, token)
    path = folder / name
    low = _LOW.fullmatch(name)
    if low and not path.exists():  # a level below those written at ingest: made from theirs, once
        with contextlib.suppress(FileNotFoundError, pyvips.Error):  # revoked meanwhile: _file says so
            level, quality = int(low["level"]), archive.settings.jpeg_quality
            await asyncio.to_thread(pyramid.low_tile, folder, level, quality)
    return _file(folder, path, remaining)


def _check(archive: Archive, image_id: str, token: str) -> tuple[Path, int]:
    """The generation folder the token names and the seconds it stays valid; 403 when the token is bad
    or its folder is gone (revoked or deleted)."""
    checked = tokens.check(archive.secret, image_id, token)
    if checked is None:
        raise Forbidden(_EXPIRED)
    remaining, gen = checked
    if gen == NO_GEN:  # made for an image that has no tiles
        raise NotFound("no such tile")
    folder = archive.tile_root(image_id) / gen
    if not folder.is_dir():
        raise Forbidden(_REVOKED)
    return folder, remaining


def _file(folder: Path, path: Path, remaining: int) -> Response:
    """The file's bytes, or a 304 for a matching ETag; 404 when it is not there, 403 when its generation
    folder went away (revoked) meanwhile."""
    try:
        stat = path.stat()
        etag = etag_of(stat)
        unchanged = matches(etag, request.headers.get("If-None-Match", ""))
        data = b"" if unchanged else path.read_bytes()
    except FileNotFoundError:
        if not folder.is_dir():
            raise Forbidden(_REVOKED) from None
        raise NotFound("no such tile") from None
    response = Response(b"", status=304) if unchanged else Response(data, content_type=_TYPES[path.suffix])
    response.headers["ETag"] = etag
    response.headers["Cache-Control"] = cache_control(remaining)
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response


def _named(pattern: re.Pattern[str], name: str) -> tuple[re.Match[str], render.Spec]:
    """The tile name's parts and its display spec; 404 when either is not one."""
    match = pattern.fullmatch(name)
    if not match:
        raise NotFound("no such tile")
    try:
        return match, render.parse(match["spec"])
    except render.SpecError as error:
        raise NotFound(f"no such display: {error}") from None


async def _display(archive: Archive, image_id: str, token: str, name: str, index: int) -> Response:
    """A dynamic tile of plane `index`: from the disk cache, else rendered in the pool from the plane's
    science pyramid."""
    match, spec = _named(_DISPLAY, name)
    folder, remaining = _check(archive, image_id, token)
    if match["level"] is None:  # the descriptor: the same geometry as the static pyramid
        static = folder / f"{DZI_NAME}.dzi"
        if not static.exists():  # a pyramid still to be built (two-phase ingest): said from the catalog
            image = await archive.store.get_image(image_id)
            if image is not None and tiling_state(image) is not None:
                refuse_unviewable(image)
                response = Response(pyramid.descriptor(image.width, image.height),
                                    content_type="application/xml")
                response.headers["Cache-Control"] = cache_control(remaining)
                response.headers["X-Content-Type-Options"] = "nosniff"
                return response
        return _file(folder, static, remaining)
    level, col, row = int(match["level"]), int(match["col"]), int(match["row"])
    place = science.plane_folder(folder, index)
    path = render.tile_path(place, spec.text, level, col, row)
    if path.is_file():
        response = _file(folder, path, remaining)
        display_cache.used(path)  # the cache's bound removes the least recently used tiles first
        return response
    science_path = await _science(archive, image_id, folder, index)
    data = await archive.pool.run(render.render_tile, str(place), science_path, spec.text, level, col, row,
                                  archive.settings.jpeg_quality, display_cache.limits_of(archive.settings))
    if data is None:
        raise NotFound("no such tile")
    # from the cache file just written (its ETag); gone when the image was revoked or deleted meanwhile
    return _file(folder, path, remaining)


async def _warped(archive: Archive, image_id: str, token: str, name: str, index: int) -> Response:
    """A tile of plane `index` drawn resampled into a mosaic's frame (app/sky/warp.py): from the disk cache,
    else rendered in the pool."""
    match, spec = _named(_WARP, name)
    folder, remaining = _check(archive, image_id, token)
    level, col, row = int(match["level"]), int(match["col"]), int(match["row"])
    place = science.plane_folder(folder, index)
    path = warped.tile_path(place, match["frame"], spec.text, level, col, row)
    if path.is_file():
        response = _file(folder, path, remaining)
        display_cache.used(path)
        return response
    frame = load_frame(archive.settings.data, match["frame"])
    image = await archive.store.get_image(image_id)
    if frame is None or image is None:
        raise NotFound("no such frame: open the mosaic again")
    science_path = await _science(archive, image_id, folder, index)
    sheet = Sheet(dict(image.header), image.width, image.height, key=f"{image.id}:{image.sha256}")
    data = await archive.pool.run(warped.render_warped, str(place), science_path, spec.text, frame, sheet,
                                  level, col, row, display_cache.limits_of(archive.settings))
    if data is None:
        raise NotFound("no such tile")
    return _file(folder, path, remaining)


async def _science(archive: Archive, image_id: str, folder: Path, index: int = 0) -> str:
    """The science pyramid of plane `index`, built from the original first when there is none (a plane
    other than the first, or an image ingested before science pyramids existed): only then is the catalog
    asked where the original is."""
    path = science.plane_folder(folder, index) / science.NAME
    if path.exists():
        return str(path)
    image = await archive.store.get_image(image_id)
    if image is not None:
        refuse_unviewable(image)
    if image is None or (tiling_state(image) is None and not (folder / f"{DZI_NAME}.dzi").exists()):
        raise NotFound("no such tile")
    count = int(image.planes.get("count", 1)) if image.planes else 1
    if index >= count:
        raise NotFound(f"no plane {index} in this image: it has {count} (counted from 0)")
    try:
        original, within = image.plane_source(index)
        return await archive.pool.run(science.ensure, str(folder), original, image.hdu,
                                      archive.settings.max_pixels, index, within)
    except science.MissingOriginal as error:
        raise Gone(str(error)) from None
    except ImageXError as error:
        raise NotFound(str(error)) from None


async def _pixel(archive: Archive, image_id: str, token: str, name: str, index: int) -> Any:
    """`{"x", "y", "value"}` at display pixel (x, y) (0-based from the top left, as the viewer counts), or
    for `block/` the 5x5 values around it (`columns`, `rows` top first, `values`): FITS images answer in FITS
    pixel coordinates (1-based, y from the bottom); null for NaN."""
    match = _PIXEL.fullmatch(name)
    if not match:
        raise NotFound("no such pixel: use pixel/<x>_<y> or block/<x>_<y> with whole numbers")
    folder, remaining = _check(archive, image_id, token)
    image = await archive.store.get_image(image_id)
    if image is None:
        raise NotFound("no such tile")
    x, y = int(match["x"]), int(match["y"])
    if not (x < image.width and y < image.height):
        raise NotFound(f"pixel ({x}, {y}) is outside the image ({image.width}x{image.height} pixels; x and "
                       "y count from 0)")
    science_path = await _science(archive, image_id, folder, index)
    fits = image.format == "fits"
    rgb: list[float] | None = None
    try:
        if match["kind"] == "block":
            _, height, left, top, rows = await archive.pool.run(science.block, science_path, x, y,
                                                                BLOCK_RADIUS)
        else:
            _, height, value, rgb = await archive.pool.run(science.reading, science_path, x, y)
    except IndexError as error:
        raise NotFound(str(error)) from None
    if match["kind"] == "block":
        # rows top first, as the image is shown; each column and row named as the readout names pixels
        answer = {"x": x + 1 if fits else x, "y": height - y if fits else y,
                  "columns": [c + 1 if fits else c for c in range(left, left + len(rows[0]))],
                  "rows": [height - r if fits else r for r in range(top, top + len(rows))], "values": rows}
    elif fits:
        answer = {"x": x + 1, "y": height - y, "value": value}
    else:
        answer = {"x": x, "y": y, "value": value}
    if rgb is not None:
        answer["rgb"] = rgb  # a colour image: its own red, green and blue besides the grey level
    response = jsonify(answer)
    response.headers["Cache-Control"] = f"public, max-age={remaining}"
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response
