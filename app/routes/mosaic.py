"""Mosaics and embeds: `/mosaic?ids=...` (and its JSON twin `/api/mosaic`) places several images by their
WCS relative to the first; `/embed/images/<id>` and `/embed/mosaic?ids=...` show the viewer alone, for
other sites' frames. Only images the asker may view are shown, and an image they may not see is left out
exactly as a missing one is. The embed of an image with planes has a plane slider, and opens at plane k of
`/embed/images/<id>?plane=k` (counted from 1, as in the image page's URL)."""

from __future__ import annotations

import asyncio
import math
import re
from typing import Any

from quart import Blueprint, Response, jsonify, render_template, request
from werkzeug.exceptions import BadRequest, NotFound

from app.archive import Archive, get_archive
from app.headers import allow_framing
from app.identity import current_site
from app.openapi import STRING, Param, check_query, described, whole
from app.permissions import effective_visibility
from app.routes import schemas
from app.routes.views import check_plane, image_summary, load_image, plane_count, visible_images
from app.sky.mosaic import Sheet, first_celestial, placements
from app.store.base import FieldIn, ImageRecord
from app.tiles import colormaps
from app.tiles.pyramid import OVERLAP, TILE_SIZE

bp = Blueprint("mosaic", __name__)


MAX_IMAGES = 500
_ID = re.compile(r"[A-Za-z0-9]{6,32}")
# Pages that other sites may frame; every other page refuses framing.
_NOTICE_IDS = 20
_PART = 40  # images placed by one pool task; a longer mosaic is shared among the workers
_PLANE = Param("plane", whole(minimum=1), "the plane to open at, counted from 1 as in the image page's URL")


def parse_ids(raw: str | None) -> list[str]:
    """The `ids` parameter: image ids separated by commas, duplicates dropped, order kept."""
    if raw is None or not raw.replace(",", "").strip():
        raise BadRequest("ids: name the images to show, separated by commas (e.g. ?ids=ID1,ID2)")
    ids = list(dict.fromkeys(part.strip() for part in raw.split(",") if part.strip()))
    if len(ids) > MAX_IMAGES:
        raise BadRequest(f"ids: a mosaic shows at most {MAX_IMAGES} images; {len(ids)} were asked for")
    for image_id in ids:
        if not _ID.fullmatch(image_id):
            shown = image_id if len(image_id) <= 40 else image_id[:40] + "..."
            raise BadRequest(f"ids: {shown!r} is not an image id (6 to 32 letters and digits)")
    return ids


def _tiles_url(summary: dict[str, Any]) -> str:
    """The signed tile folder (`/tiles/ID/TOKEN/`) from the summary's DZI URL."""
    dzi = str(summary["dzi_url"])
    return dzi[: -len("image.dzi")]


def _layer(archive: Archive, image: ImageRecord, placed: dict[str, Any]) -> dict[str, Any]:
    summary = image_summary(archive, image)
    return {
        "id": image.id, "name": image.name, "url": summary["url"], "width": image.width,
        "height": image.height, "tiles_url": _tiles_url(summary), "dzi_url": summary["dzi_url"],
        # the interval and stretch of the image's own display: a colormap changes only the colours
        "scaling": str(summary["display_default"]).rsplit("~", 1)[0],
        "public": effective_visibility(image, current_site()) == "public",
        "pieces": placed["pieces"], "error_px": placed["error_px"],
    }


def _listed(ids: list[str]) -> str:
    shown = ", ".join(ids[:_NOTICE_IDS])
    return shown + (f" and {len(ids) - _NOTICE_IDS} more" if len(ids) > _NOTICE_IDS else "")


async def place_all(archive: Archive, sheets: list[Sheet]) -> list[dict[str, Any] | str]:
    """`placements` in the pool: a long list is cut into one part per worker, placed in parallel against
    the same reference (found first)."""
    if len(sheets) <= _PART:
        return await archive.run_in_pool(placements, sheets) if sheets else []
    index = await archive.run_in_pool(first_celestial, sheets)
    if index is None:
        return ["it has no celestial WCS"] * len(sheets)
    size = max(_PART, math.ceil(len(sheets) / archive.pool.size))
    parts = await asyncio.gather(*(archive.run_in_pool(placements, sheets[start:start + size], sheets[index])
                                   for start in range(0, len(sheets), size)))
    return [entry for part in parts for entry in part]


async def mosaic_view(archive: Archive, ids: list[str]) -> dict[str, Any]:
    """The images of `ids` the asker may view, placed relative to the first with a celestial WCS, and
    notices for the ones left out (missing and hidden alike: "no such image")."""
    found = {image.id: image for image in await archive.store.find_images(
        visible_images(FieldIn("id", tuple(ids))), limit=len(ids))}
    images = [found[image_id] for image_id in ids if image_id in found]
    notices = []
    absent = [image_id for image_id in ids if image_id not in found]
    if absent:
        notices.append(f"no such image: {_listed(absent)}" if len(absent) == 1
                       else f"no such images: {_listed(absent)}")
    sheets = [Sheet(dict(image.header), image.width, image.height, key=f"{image.id}:{image.sha256}")
              for image in images]
    placed = await place_all(archive, sheets)
    layers = []
    for image, result in zip(images, placed, strict=True):
        if isinstance(result, str):
            notices.append(f"{image.name} ({image.id}) is left out: {result}")
        else:
            layers.append(_layer(archive, image, result))
    reference = ({"id": layers[0]["id"], "name": layers[0]["name"], "width": layers[0]["width"],
                  "height": layers[0]["height"]} if layers else None)
    return {"ids": ids, "layers": layers, "notices": notices, "reference": reference,
            "colormaps": list(colormaps.NAMES), "tile_format": {"format": "jpeg", "tile_size": TILE_SIZE,
                                                          "overlap": OVERLAP},
            "max_images": MAX_IMAGES}


def single_view(archive: Archive, image: ImageRecord, plane: int = 0) -> dict[str, Any]:
    """One image as a mosaic of one, placed as it is (no WCS needed), showing plane `plane` (from 0); an
    image with planes carries them (`planes`: count, axis, unit, values or labels) for the plane slider."""
    width, height = float(image.width), float(image.height)
    piece = {"x": 0.0, "y": 0.0, "width": width, "height": height, "degrees": 0.0, "flipped": False,
             "scale": 1.0, "region": [0.0, 0.0, width, height], "clip": [0.0, 0.0, width, height],
             "error_px": 0.0}
    layer = _layer(archive, image, {"pieces": [piece], "error_px": 0.0})
    return {"ids": [image.id], "layers": [layer], "notices": [],
            "reference": {"id": image.id, "name": image.name, "width": image.width, "height": image.height},
            "colormaps": list(colormaps.NAMES), "tile_format": {"format": "jpeg", "tile_size": TILE_SIZE,
                                                          "overlap": OVERLAP},
            "max_images": MAX_IMAGES, "planes": image.planes if plane_count(image) > 1 else None,
            "plane": plane}


def embed_plane(image: ImageRecord) -> int:
    """The plane an embed opens at (from 0), from its `plane` parameter counted from 1; a 400 saying what
    is wrong with one that is not a whole number or names no plane of the image."""
    check_query(_PLANE)
    raw = request.args.get("plane")
    return 0 if raw is None else check_plane(image, int(float(raw)), first=1)


def _frame_ancestors(archive: Archive, view: dict[str, Any] | None) -> str:
    """Who may frame this embed: the setting for public images; only this site when the embed shows an
    image that is not public (the asker sees it only because of who they are)."""
    if view is not None and not all(layer["public"] for layer in view["layers"]):
        return "'self'"
    return archive.settings.frame_ancestors


async def _embed(archive: Archive, template: str, view: dict[str, Any] | None, problem: str = "") -> Response:
    """An embed page, or "not available" (404, the same bytes whatever the reason); a view that may be
    shown but was asked for wrongly is a 400 saying what is wrong (`problem`), in a page its frame shows."""
    if view is None:
        body, status = await render_template("_embed_unavailable.html"), 404
    elif problem:
        body, status = await render_template("_embed_unavailable.html", message=problem), 400
    else:
        body, status = await render_template(template, mosaic=view), 200
    response = Response(body, status=status, content_type="text/html; charset=utf-8")
    allow_framing(_frame_ancestors(archive, view))
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.get("/mosaic")
async def mosaic_page() -> str:
    archive = get_archive()
    view = await mosaic_view(archive, parse_ids(request.args.get("ids")))
    return await render_template("mosaic.html", mosaic=view)


@bp.get("/api/mosaic")
@described("Several images placed by their WCS relative to the first", tag="mosaic", params=(
    Param("ids", STRING, "image ids separated by commas", required=True),),
    answers={200: ("the layers and notices for images left out", schemas.MOSAIC)})
async def mosaic_api() -> Any:
    archive = get_archive()
    return jsonify(await mosaic_view(archive, parse_ids(request.args.get("ids"))))


@bp.get("/embed/images/<path:image_id>")
async def embed_image(image_id: str) -> Response:
    """One image for a frame; a missing image, one the asker may not see, or a malformed id all answer
    the same "not available" page. A bad `plane` is told only of an image the asker may see."""
    archive = get_archive()
    if not _ID.fullmatch(image_id):
        return await _embed(archive, "embed_image.html", None)
    try:
        image = await load_image(archive, image_id)
    except NotFound:
        return await _embed(archive, "embed_image.html", None)
    try:
        plane = embed_plane(image)
    except BadRequest as error:
        return await _embed(archive, "embed_image.html", single_view(archive, image), str(error.description))
    return await _embed(archive, "embed_image.html", single_view(archive, image, plane))


@bp.get("/embed/mosaic")
async def embed_mosaic() -> Response:
    archive = get_archive()
    try:
        ids = parse_ids(request.args.get("ids"))
    except BadRequest:
        return await _embed(archive, "embed_mosaic.html", None)
    view = await mosaic_view(archive, ids)
    return await _embed(archive, "embed_mosaic.html", view if view["layers"] else None)
