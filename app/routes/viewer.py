"""One image: the zoomable view, its header, the original file, and the owner's actions (who may see
it, delete it). Every route asks `permissions.may`; an image the asker may not see answers exactly as
a missing one."""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path
from typing import Any

from quart import Blueprint, Response, redirect, render_template, request, send_file
from werkzeug.exceptions import (
    BadRequest,
    Forbidden,
    Gone,
    HTTPException,
    NotFound,
    Unauthorized,
    UnprocessableEntity,
)

from app.accounts import current_site, current_user
from app.archive import Archive, get_archive
from app.headers import content_disposition
from app.ingest.removal import Removal, delete_image
from app.permissions import Action, may
from app.routes.portal import image_summary, shown_path
from app.search.sky import parse_position
from app.site import VISIBILITIES, Site
from app.sky.readout import OffImage, describe, locate
from app.store.base import ImageRecord, User

bp = Blueprint("viewer", __name__)
# What each visibility means, as the image page explains it.
AUDIENCES = {
    "private": "only its owner and administrators",
    "registered": "registered users",
    "public": "everyone, guests included",
}
# Readout descriptions by (image id, checksum): a header never changes after ingest, and computing one
# takes a pool round trip. Bounded: the least recently used go first.
_READOUTS: OrderedDict[tuple[str, str], dict[str, Any]] = OrderedDict()
_READOUTS_KEPT = 256


def refusal(user: User | None, action: Action, image: ImageRecord, site: Site) -> HTTPException:
    """Why the asker, who may see `image`, may not `action` it: 401 for a guest (logging in may help),
    403 for a user."""
    doing = {"view": "see this image", "download": "download the original",
             "change": "change who may see this image", "delete": "delete this image"}[action]
    if user is None:
        if action == "download":
            return Unauthorized("log in to download the original: guests may not download originals "
                                "on this site")
        return Unauthorized(f"log in to {doing}")
    if site.demo_mode:
        return Forbidden("this site is in demo mode: it is read-only for everyone but administrators")
    if user.username != image.owner:
        return Forbidden(f"you may not {doing}: only its owner or an administrator may")
    if action == "change":
        return Forbidden(f"the site's sharing policy ({site.sharing}) does not let owners choose who sees "
                         "their images; ask an administrator")
    if action == "delete":
        return Forbidden("users may not delete their images on this site; ask an administrator")
    return Forbidden(f"you may not {doing}")


async def load_image(archive: Archive, image_id: str, action: Action = "view") -> ImageRecord:
    """The image, when the asker may `action` it. An image the asker may not even see is a 404 with the
    same message as a missing one, so its existence is not revealed."""
    user, site = current_user(), current_site()
    image = await archive.store.get_image(image_id)
    if image is None or not may(user, "view", image, site):
        raise NotFound(f"there is no image {image_id!r}")
    if action != "view" and not may(user, action, image, site):
        raise refusal(user, action, image, site)
    return image


def header_rows(image: ImageRecord) -> list[dict[str, Any]]:
    """The header as table rows; COMMENT and HISTORY as one row per entry."""
    rows: list[dict[str, Any]] = []
    for keyword, value in image.header.items():
        if isinstance(value, list):
            rows.extend({"keyword": keyword, "value": item, "comment": ""} for item in value)
        else:
            rows.append({"keyword": keyword, "value": value, "comment": image.comments.get(keyword, "")})
    return rows


def image_detail(archive: Archive, image: ImageRecord) -> dict[str, Any]:
    return {**image_summary(archive, image), "header": image.header, "comments": image.comments}


def parse_visibility(value: object) -> str:
    if value not in VISIBILITIES:
        raise BadRequest(f"visibility must be one of {', '.join(VISIBILITIES)}")
    return str(value)


async def change_visibility(archive: Archive, image_id: str, value: object) -> ImageRecord:
    """Set who may see one image record (the page and the JSON API share it)."""
    image = await load_image(archive, image_id, "change")
    visibility = parse_visibility(value)
    await archive.store.set_visibility([image.id], visibility)
    # links handed out under the old visibility stop working now, not when their tokens expire
    await archive.revoke_tiles([image.id])
    image.visibility = visibility
    return image


async def remove(archive: Archive, image_id: str) -> Removal:
    """Delete one image record with its tiles (and an uploaded original nobody else uses)."""
    return await delete_image(archive, await load_image(archive, image_id, "delete"))


async def access_fragment(archive: Archive, image: ImageRecord, *, saved: bool = False) -> str:
    return await render_template("_image_access.html", image=image_detail(archive, image),
                                 audiences=AUDIENCES, saved=saved)


async def readout_of(archive: Archive, image: ImageRecord) -> dict[str, Any]:
    """What the viewer needs for sky coordinates, scale bar and compass (`app.sky.readout.describe`).
    The page fetches it after loading, so a pool busy with ingest never holds up the page itself."""
    key = (image.id, image.sha256)
    if key in _READOUTS:
        _READOUTS.move_to_end(key)
        return _READOUTS[key]
    readout = await archive.run_in_pool(describe, image.header, image.width, image.height)
    _READOUTS[key] = readout
    while len(_READOUTS) > _READOUTS_KEPT:
        _READOUTS.popitem(last=False)
    return readout


async def go_to(archive: Archive, image_id: str, ra_text: str | None, dec_text: str | None,
                frame: str | None) -> dict[str, Any]:
    """Where a typed sky position falls on the image, in FITS pixels (1-based, y up), with the position
    in ICRS degrees; 400 for text that is not a position, 422 for a position off the image."""
    image = await load_image(archive, image_id)
    if not ra_text or not dec_text:
        raise BadRequest("go to needs both ra= and dec= (and frame=icrs or galactic)")
    try:
        ra, dec = parse_position(ra_text, dec_text, frame or "icrs")
    except ValueError as error:
        raise BadRequest(str(error)) from None
    try:
        x, y = await archive.run_in_pool(locate, image.header, image.width, image.height, ra, dec)
    except OffImage as error:
        raise UnprocessableEntity(str(error)) from None
    except ValueError as error:
        raise BadRequest(str(error)) from None
    return {"x": x + 1, "y": y + 1, "ra": ra, "dec": dec}


@bp.get("/images/<image_id>")
async def image_page(image_id: str) -> str:
    archive = get_archive()
    image = await load_image(archive, image_id)
    return await render_template("image.html", image=image_detail(archive, image), rows=header_rows(image),
                                 audiences=AUDIENCES, saved=False)


@bp.get("/images/<image_id>/original")
async def original(image_id: str) -> Any:
    archive = get_archive()
    image = await load_image(archive, image_id, "download")
    path = Path(image.path)
    if not path.is_file():
        raise Gone(f"the original file is no longer at {shown_path(image.path, current_user())}")
    response = await send_file(path, mimetype="application/octet-stream", conditional=True)
    response.headers["Content-Disposition"] = content_disposition(path.name)
    response.headers["Digest"] = f"sha-256={image.sha256}"
    return response


@bp.post("/images/<image_id>/visibility")
async def visibility(image_id: str) -> Any:
    """The image page's visibility form: the access fragment back to htmx, a redirect otherwise."""
    archive = get_archive()
    form = await request.form
    image = await change_visibility(archive, image_id, form.get("visibility"))
    if request.headers.get("HX-Request"):
        return await access_fragment(archive, image, saved=True)
    return redirect(f"/images/{image.id}", 303)


@bp.post("/images/<image_id>/delete")
async def delete(image_id: str) -> Any:
    """The image page's delete button: back to the portal (htmx follows `HX-Redirect`)."""
    archive = get_archive()
    await remove(archive, image_id)
    if request.headers.get("HX-Request"):
        return Response("", status=204, headers={"HX-Redirect": "/"})
    return redirect("/", 303)
