"""Mosaics and embeds: `/mosaic?ids=...` (and its JSON twin `/api/mosaic`) places several images by their
WCS in a north-up frame built from their combined footprint (`app.sky.frame`), or with `ref=ID` on that
image's pixel grid; `scaling=common` shows them all through one interval measured over all of them.
`/embed/images/<id>` and `/embed/mosaic?ids=...` show the viewer alone, for
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
from app.openapi import ERROR, STRING, Param, check_query, described, one_of, whole
from app.permissions import effective_visibility
from app.routes import schemas
from app.routes.readiness import tiling_state, unviewable
from app.routes.views import (
    check_plane,
    go_to_on,
    image_summary,
    load_image,
    plane_count,
    plane_science,
    visible_images,
)
from app.sky.frame import Frame, TooFarApart, north_up
from app.sky.mosaic import Sheet, placements
from app.sky.readout import sky_readout
from app.sky.warp import save_frame
from app.store.query import FieldIn
from app.store.records import ImageRecord
from app.tiles import colormaps, render
from app.tiles.pyramid import OVERLAP, TILE_SIZE

bp = Blueprint("mosaic", __name__)


MAX_IMAGES = 500
_ID = re.compile(r"[A-Za-z0-9]{6,32}")
# Pages that other sites may frame; every other page refuses framing.
_NOTICE_IDS = 20
_PART = 40  # images placed by one pool task; a longer mosaic is shared among the workers
_PLANE = Param("plane", whole(minimum=1), "the plane to open at, counted from 1 as in the image page's URL")
_REF = Param("ref", STRING, "the image whose pixel grid is the mosaic's frame (default: a north-up frame)")
_SCALING = Param("scaling", one_of("image", "common"),
                 "image: each image through its own display; common: one interval over all of them")
_COMMON_INTERVAL = "zscale"
_READOUTS: dict[str, Any] = {}
_READOUTS_MAX = 64


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
    """The signed tile folder (`/tiles/ID/TOKEN/`) from the summary's dynamic tiles' URL."""
    return str(summary["display_url"])[: -len("display/")]


def _layer(archive: Archive, image: ImageRecord, placed: dict[str, Any], frame: str = "") -> dict[str, Any]:
    """What the page needs to draw one image; `frame`: the key of the saved frame, for a layer drawn
    resampled (`warp`: its box in the frame and the frame's key)."""
    summary = image_summary(archive, image)
    warp = placed.get("warp")
    return {
        "id": image.id, "name": image.name, "url": summary["url"], "width": image.width,
        "height": image.height, "tiles_url": _tiles_url(summary), "dzi_url": summary["dzi_url"],
        # its pyramid still to be built (two-phase ingest): drawn from its dynamic tiles meanwhile
        "tiling": summary["tiling"] is not None,
        # the interval and stretch of the image's own display: a colormap changes only the colours
        "scaling": str(summary["display_default"]).rsplit("~", 1)[0],
        "public": effective_visibility(image, current_site()) == "public",
        "pieces": placed["pieces"], "error_px": placed["error_px"],
        "warp": {"x": warp[0], "y": warp[1], "width": warp[2], "height": warp[3], "frame": frame}
        if warp else None,
    }


def _listed(ids: list[str]) -> str:
    shown = ", ".join(ids[:_NOTICE_IDS])
    return shown + (f" and {len(ids) - _NOTICE_IDS} more" if len(ids) > _NOTICE_IDS else "")


async def place_all(archive: Archive, sheets: list[Sheet], reference: Sheet) -> list[dict[str, Any] | str]:
    """`placements` in the pool against `reference`: a long list is cut into one part per worker, placed
    in parallel."""
    if len(sheets) <= _PART:
        return await archive.run_in_pool(placements, sheets, reference) if sheets else []
    size = max(_PART, math.ceil(len(sheets) / archive.pool.size))
    parts = await asyncio.gather(*(archive.run_in_pool(placements, sheets[start:start + size], reference)
                                   for start in range(0, len(sheets), size)))
    return [entry for part in parts for entry in part]


def mosaic_options() -> tuple[str | None, str]:
    """The `ref` (an image id, or None for north up) and `scaling` parameters, checked."""
    check_query(_REF)
    check_query(_SCALING)
    ref = request.args.get("ref") or None
    if ref is not None and not _ID.fullmatch(ref):
        raise BadRequest(f"ref: {ref[:40]!r} is not an image id (6 to 32 letters and digits)")
    return ref, request.args.get("scaling") or "image"


async def frame_readout(archive: Archive, sheet: Sheet) -> dict[str, Any] | None:
    """The readout grid (`sky_readout`'s `celestial`) of a frame, kept by the frame's key."""
    if sheet.key in _READOUTS:
        return _READOUTS[sheet.key]  # type: ignore[no-any-return]
    celestial = (await archive.run_in_pool(sky_readout, sheet.header, sheet.width, sheet.height))["celestial"]
    _READOUTS[sheet.key] = celestial
    while len(_READOUTS) > _READOUTS_MAX:
        _READOUTS.pop(next(iter(_READOUTS)))
    return celestial  # type: ignore[no-any-return]


async def mosaic_frame(archive: Archive, images: list[ImageRecord], sheets: list[Sheet],
                       ref: str | None) -> Sheet | str | None:
    """The frame the images are placed in: north up (`ref` None) or the pixel grid of image `ref`; the
    warning naming the images when no north-up frame holds them; None when no image has a celestial WCS."""
    if ref is not None:
        for image, sheet in zip(images, sheets, strict=True):
            if image.id == ref:
                return sheet
        raise BadRequest(f"ref: {ref} is not one of the images shown in this mosaic")
    names = [f"{image.name} ({image.id})" for image in images]
    try:
        frame: Frame | None = await archive.run_in_pool(north_up, sheets, names)
    except TooFarApart as error:
        return str(error)
    return frame.sheet() if frame is not None else None


async def common_scaling(archive: Archive, images: list[ImageRecord]) -> dict[str, Any]:
    """One `manual` interval over all the images (their science samples together), with the first
    image's stretch: `{"interval", "stretch", "low", "high", "scaling"}` (`scaling`: the display spec
    without its colormap, as the tiles take it)."""
    paths = [await plane_science(archive, image, archive.tile_folder(image.id), 0) for image in images]
    low, high = await archive.run_in_pool(render.common_limits, paths, _COMMON_INTERVAL)
    if not (math.isfinite(low) and math.isfinite(high) and low < high):
        low, high = (low, low + 1.0) if math.isfinite(low) else (0.0, 1.0)
    stretch = render.default_spec(images[0].display).stretch
    spec = render.parse(render.Spec("manual", stretch, "grey", low=low, high=high).text)
    assert spec.low is not None and spec.high is not None
    return {"interval": _COMMON_INTERVAL, "stretch": stretch, "low": spec.low, "high": spec.high,
            "scaling": spec.text.rsplit("~", 1)[0]}


async def mosaic_view(archive: Archive, ids: list[str], ref: str | None = None,
                      scaling: str = "image") -> dict[str, Any]:
    """The images of `ids` the asker may view, placed in the mosaic's frame (north up, or `ref`'s pixel
    grid), and notices for the ones left out (missing and hidden alike: "no such image"); `warning` when
    the images are too far apart for one north-up frame (then none is placed)."""
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
    reference = await mosaic_frame(archive, images, sheets, ref)
    warning = reference if isinstance(reference, str) else None
    placed: list[dict[str, Any] | str] = ["it has no celestial WCS"] * len(sheets)
    if isinstance(reference, Sheet):
        placed = await place_all(archive, sheets, reference)
    shown, layers = [], []
    frame_key = ""
    if isinstance(reference, Sheet) and any(isinstance(each, dict) and each.get("warp") for each in placed):
        frame_key = await asyncio.to_thread(save_frame, archive.settings.data, reference)
    for image, result in zip(images, placed if warning is None else [], strict=False):
        tiling = tiling_state(image) if isinstance(result, dict) else None
        if tiling is not None and (why := unviewable(image)):
            notices.append(f"{image.name} ({image.id}) is left out: {why}")
            if tiling["state"] == "reading":
                await archive.store.prioritize_job(image.job_id)  # somebody waits for it
        elif isinstance(result, str):
            notices.append(f"{image.name} ({image.id}) is left out: {result}")
        else:
            if tiling is not None:
                await archive.store.prioritize_job(image.job_id)  # somebody waits for its pyramids
            shown.append(image)
            layers.append(_layer(archive, image, result, frame_key))
    common = await common_scaling(archive, shown) if scaling == "common" and shown else None
    if common is not None:
        for layer in layers:
            layer["scaling"] = common["scaling"]
    frame = None
    if isinstance(reference, Sheet) and layers:
        frame = {"width": reference.width, "height": reference.height, "north_up": ref is None, "ref": ref,
                 "celestial": await frame_readout(archive, reference)}
    ref_image = found.get(ref) if ref is not None and layers else None
    return {"ids": ids, "layers": layers, "notices": notices,
            "reference": ({"id": ref_image.id, "name": ref_image.name, "width": ref_image.width,
                           "height": ref_image.height} if ref_image is not None else None),
            "frame": frame, "warning": warning, "scaling": scaling,
            "common": {key: common[key] for key in ("interval", "stretch", "low", "high")}
            if common else None,
            "choices": [{"id": image.id, "name": image.name} for image in images],
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
            "frame": {"width": image.width, "height": image.height, "north_up": False, "ref": image.id,
                      "celestial": None},
            "warning": None, "scaling": "image", "common": None, "choices": [],
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
    ids = parse_ids(request.args.get("ids"))
    view = await mosaic_view(archive, ids, *mosaic_options())
    return await render_template("mosaic.html", mosaic=view)


@bp.get("/api/mosaic")
@described("Several images placed by their WCS in a north-up frame or on one image's pixel grid",
           tag="mosaic", params=(Param("ids", STRING, "image ids separated by commas", required=True), _REF,
                                 _SCALING),
           answers={200: ("the layers and notices for images left out", schemas.MOSAIC)})
async def mosaic_api() -> Any:
    archive = get_archive()
    ids = parse_ids(request.args.get("ids"))
    return jsonify(await mosaic_view(archive, ids, *mosaic_options()))


@bp.get("/api/mosaic/locate")
@described("Where a sky position falls in a mosaic's frame", tag="mosaic", params=(
    Param("ids", STRING, "image ids separated by commas", required=True), _REF,
    Param("ra", STRING, "degrees or sexagesimal (with dec)"),
    Param("dec", STRING, "degrees or sexagesimal (with ra)"), Param("frame", one_of("icrs", "galactic")),
    Param("name", STRING, "an object name, looked up in the archive's images instead of ra and dec")),
    answers={200: ("FITS pixel of the frame (1-based, y up) and the ICRS position", schemas.LOCATION),
             422: ("the position is off the frame", ERROR)})
async def mosaic_locate() -> Any:
    """The mosaic page's go-to form: as an image's (`/api/images/<id>/locate`), on the mosaic's frame."""
    archive = get_archive()
    ids = parse_ids(request.args.get("ids"))
    ref, _ = mosaic_options()
    found = {image.id: image for image in await archive.store.find_images(
        visible_images(FieldIn("id", tuple(ids))), limit=len(ids))}
    images = [found[image_id] for image_id in ids if image_id in found]
    sheets = [Sheet(dict(image.header), image.width, image.height, key=f"{image.id}:{image.sha256}")
              for image in images]
    reference = await mosaic_frame(archive, images, sheets, ref)
    if not isinstance(reference, Sheet):
        raise BadRequest(reference or "none of these images has a celestial WCS")
    return jsonify(await go_to_on(archive, reference.header, reference.width, reference.height,
                                  request.args.get("ra"), request.args.get("dec"), request.args.get("frame"),
                                  request.args.get("name")))


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
    tiling = tiling_state(image)
    if tiling is not None and (why := unviewable(image)):
        if tiling["state"] == "reading":
            await archive.store.prioritize_job(image.job_id)  # somebody waits for it
        return await _embed(archive, "embed_image.html", single_view(archive, image),
                            f"this image is catalogued, but {why}")
    if tiling is not None:
        await archive.store.prioritize_job(image.job_id)  # somebody waits for its pyramids
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
    try:
        view = await mosaic_view(archive, ids, *mosaic_options())
    except BadRequest:  # a bad option, or a ref not among the images the asker may see: as if none
        return await _embed(archive, "embed_mosaic.html", None)
    if not view["layers"] and view.get("warning"):  # images too far apart: the frame says so, naming them
        return await _embed(archive, "embed_mosaic.html", view, problem=str(view["warning"]))
    return await _embed(archive, "embed_mosaic.html", view if view["layers"] else None)
