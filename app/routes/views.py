"""The data behind the pages and their JSON twins, written once: each function here is what one view shows
(a listing, an image's detail, a job, a user's storage) or decides (who may load an image, who may enter
the admin area); the page route renders it as HTML and the API route as JSON."""

from __future__ import annotations

import math
import re
from collections import OrderedDict
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import quote

from quart import Response, redirect, render_template, request
from werkzeug.exceptions import (
    BadRequest,
    Forbidden,
    Gone,
    HTTPException,
    NotFound,
    Unauthorized,
    UnprocessableEntity,
)

from app import identity as accounts
from app.archive import Archive
from app.exceptions import ImageXError
from app.identity import current_site, current_user
from app.ingest.removal import Removal, delete_image
from app.monitor import ingest_rate
from app.permissions import Action, effective_visibility, may, visible
from app.routes.readiness import refuse_unviewable, tiling_state
from app.search.positions import parse_position
from app.site_policy import VISIBILITIES, Site
from app.sky.readout import OffImage, locate, sky_readout
from app.store.query import MAX_TEXT, And, FieldIn, Or, Query, TextMatch
from app.store.records import JOB_STATES, ImageRecord, JobRecord, User
from app.tiles import display_cache, histogram, render, science
from app.tiles.pyramid import DZI_NAME
from app.tiles.render import default_spec

MAX_PER_PAGE = 200
MAX_PAGE = 1_000_000_000  # far past any catalog, and its offset still fits a store's 64-bit integer
# Listings count matches up to this many and then say "more than": counting every match of a broad search
# in a catalog of millions would cost more than the page itself.
COUNT_LIMIT = 10_000
ACTIONS: tuple[Action, ...] = ("view", "download", "change", "delete")


def page_args(default_size: int) -> tuple[int, int]:
    """`page` (from 1) and `per_page` from the query string, validated."""
    try:
        page = int(request.args.get("page", "1"))
        per_page = int(request.args.get("per_page", str(default_size)))
    except ValueError:
        raise BadRequest("page and per_page must be whole numbers") from None
    if not 1 <= page <= MAX_PAGE or not 1 <= per_page <= MAX_PER_PAGE:
        raise BadRequest(f"page must be 1 or more (at most {MAX_PAGE}) and per_page 1-{MAX_PER_PAGE}")
    return page, per_page


def shown_path(path: str, user: User | None) -> str:
    """Where a file lies, as the asker may know it: the full server path for administrators, the file's
    own name for everyone else (a server's folders are not theirs to learn)."""
    return path if user is not None and user.is_admin else path.rsplit("/", 1)[-1]


def image_summary(archive: Archive, image: ImageRecord) -> dict[str, Any]:
    """An image as listings show it, with what the asker may do with it. Tile URLs (signed tokens) are
    issued only when the asker may view the image."""
    user, site = current_user(), current_site()
    permissions = {action: may(user, action, image, site) for action in ACTIONS}
    summary = {
        **image.public(),
        # the histogram has its own endpoint (`histogram_of`): listings need not carry it
        "display": {key: value for key, value in image.display.items() if key not in ("histogram", "tiling")},
        "tiling": tiling_state(image),
        "path": shown_path(image.path, user),
        "effective_visibility": effective_visibility(image, site),
        "permissions": permissions,
        "date": image.header.get("DATE-OBS") or image.header.get("DATE") or "",
        "url": f"/images/{image.id}",
        "api_url": f"/api/images/{image.id}",
        "thumbnail_url": None,
        "dzi_url": None,
        "display_url": None,
        "display_default": default_spec(image.display).text,
        "original_url": f"/images/{image.id}/original",
    }
    if permissions["view"] and not image.is_reading():  # else it has no tiles yet, not even a thumbnail
        token = archive.tile_token(image.id)
        summary["thumbnail_url"] = f"/tiles/{image.id}/{token}/thumb.jpeg"
        tiling = summary["tiling"]
        if tiling is None:
            summary["dzi_url"] = f"/tiles/{image.id}/{token}/image.dzi"
        if tiling is None or tiling["state"] == "pending":
            # dynamic tiles: <display_url><spec>/image.dzi (see app/tiles/render.py)
            summary["display_url"] = f"/tiles/{image.id}/{token}/display/"
        if tiling is not None and tiling["state"] == "pending":
            # its pyramid still to come: the dynamic tiles of its own display, rendered on request from
            # the original (through a science pyramid built from it once)
            summary["dzi_url"] = f"{summary['display_url']}{summary['display_default']}/image.dzi"
    return summary


def job_summary(job: JobRecord) -> dict[str, Any]:
    # an upload is stored under a generated name: show the client's
    return {**job.public(), "path": shown_path(job.path, current_user()),
            "name": job.options.get("client_name") or job.path.rsplit("/", 1)[-1]}


def visible_images(query: Query | None = None) -> Query | None:
    """`query` narrowed to the images the asker may see (None: everything)."""
    condition = visible(current_user(), current_site())
    if condition is None:
        return query
    return condition if query is None else And((condition, query))


async def image_listing(archive: Archive, page: int, per_page: int,
                        query: Query | None = None) -> dict[str, Any]:
    """One page of the images the asker may see, newest first, with paging facts (counted by the store
    under the same condition): the portal and `/api/images` share it."""
    condition = visible_images(query)
    total, images = await archive.store.search_images(condition, offset=(page - 1) * per_page, limit=per_page,
                                                      count_at_most=COUNT_LIMIT)
    return {
        "images": [image_summary(archive, image) for image in images],
        "page": page,
        "per_page": per_page,
        "total": total,
        "total_exact": total < COUNT_LIMIT,
        "pages": max(1, math.ceil(total / per_page)),
    }


def job_owner(user: User) -> str | None:
    """Whose jobs a user may see: everyone's (None) for admins, their own for users."""
    return None if user.is_admin else user.username


async def queue_state(archive: Archive) -> dict[str, Any]:
    """The ingest queue as the asker may see it: admins all jobs (and background errors), users their own
    jobs, guests only whether public images are being prepared."""
    user = current_user()
    if user is None:
        # a guest learns only that public images are on their way (the samples of a new site, a public
        # upload), never what or whose
        coming = [*await archive.store.list_jobs("running", limit=50),
                  *await archive.store.list_jobs("queued", limit=50)]
        public = any(job.options.get("visibility") == "public" for job in coming)
        return {"counts": dict.fromkeys(JOB_STATES, 0), "pending": int(public), "preparing": public,
                "progress": None,
                "failed": [], "running": [], "background_errors": []}
    owner = job_owner(user)
    counts = await archive.store.job_counts(owner=owner)
    failed = await archive.store.list_jobs("failed", limit=20, owner=owner)
    active = await archive.store.list_jobs("running", limit=20, owner=owner)
    pending = counts["queued"] + counts["running"] + counts["harvested"]
    return {
        "counts": counts,
        "pending": pending,
        "progress": await ingest_rate(archive, pending, owner) if pending else None,
        "preparing": False,
        "failed": [job_summary(job) for job in failed],
        "running": [job_summary(job) for job in active],
        "background_errors": list(archive.background_errors) if user.is_admin else [],
    }


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
    archive.hips.refresh([image])  # HiPS: into or out of each survey's tiles
    return image


async def remove(archive: Archive, image_id: str) -> Removal:
    """Delete one image record with its tiles (and an uploaded original nobody else uses)."""
    return await delete_image(archive, await load_image(archive, image_id, "delete"))


async def access_fragment(archive: Archive, image: ImageRecord, *, saved: bool = False) -> str:
    return await render_template("_image_access.html", image=image_detail(archive, image),
                                 audiences=AUDIENCES, saved=saved)


async def readout_of(archive: Archive, image: ImageRecord) -> dict[str, Any]:
    """What the viewer needs for sky or map coordinates, scale bar and compass
    (`app.sky.readout.sky_readout`).
    The page fetches it after loading, so a pool busy with ingest never holds up the page itself."""
    key = (image.id, image.sha256)
    if key in _READOUTS:
        _READOUTS.move_to_end(key)
        return _READOUTS[key]
    readout = await archive.run_in_pool(sky_readout, image.header, image.width, image.height)
    _READOUTS[key] = readout
    while len(_READOUTS) > _READOUTS_KEPT:
        _READOUTS.popitem(last=False)
    return readout


def plane_count(image: ImageRecord) -> int:
    """How many planes the image has (a cube, a series; 1 for a plain image)."""
    return int(image.planes.get("count", 1)) if image.planes else 1


def check_plane(image: ImageRecord, plane: int, *, first: int = 0) -> int:
    """Plane `plane` of the image, counted from `first` (0 in the API and tile URLs, 1 in page URLs), as
    an index from 0; a 400 saying how many planes the image has when there is no such plane."""
    count = plane_count(image)
    if not first <= plane < count + first:
        raise BadRequest(f"there is no plane {plane} in this image: it has {count} (counted from {first})")
    return plane - first


async def histogram_of(archive: Archive, image: ImageRecord, spec_text: str | None,
                       plane: int = 0) -> dict[str, Any]:
    """The pixel histogram of plane `plane` (from 0) of an image (`app.tiles.histogram`) and the cuts of
    a display on it: the low and high data values its interval maps to black and white, exactly as the
    tiles of that display use them (`spec_text`: a display spec; None: the image's own display, which the
    first plane shows with the static pyramid scaled at ingest)."""
    check_plane(image, plane)
    default = default_spec(image.display)
    try:
        spec = default if spec_text is None else render.parse(spec_text)
    except render.SpecError as error:
        raise BadRequest(f"display: {error}") from None
    folder = archive.tile_folder(image.id)
    place = str(science.plane_folder(folder, plane))
    stored = image.display.get("histogram")
    science_path: str | None = None
    if plane == 0 and histogram.valid(stored):
        assert isinstance(stored, dict)
        counted = {key: stored[key] for key in histogram.KEYS}
    else:  # an image ingested before histograms were, or a plane other than the first
        science_path = await plane_science(archive, image, folder, plane)
        counted = await archive.run_in_pool(histogram.of_plane, place, science_path)
    low, high = spec.low, spec.high
    applied = (image.display.get("low"), image.display.get("high"))
    if spec.interval != "manual" and plane == 0 and spec == default and all(
            isinstance(v, int | float) and math.isfinite(v) for v in applied):
        low, high = applied  # the static pyramid's own limits
    elif spec.interval != "manual":
        science_path = science_path or await plane_science(archive, image, folder, plane)
        low, high = await archive.run_in_pool(render.cuts_of, place, science_path, spec.text,
                                              display_cache.limits_of(archive.settings))
    return {**counted, "plane": plane, "display": spec.text, "default": default.text, "low": low,
            "high": high}


async def plane_science(archive: Archive, image: ImageRecord, folder: Path, plane: int) -> str:
    """The science pyramid of a plane of the image (its tile folder `folder`), built from the original
    when there is none yet (as a dynamic tile's first request does)."""
    path = science.plane_folder(folder, plane) / science.NAME
    if path.exists():
        return str(path)
    refuse_unviewable(image)
    if tiling_state(image) is None and not (folder / f"{DZI_NAME}.dzi").exists():
        raise NotFound("this image has no tiles (it is being replaced or was deleted); reload the page")
    original, within = image.plane_source(plane)
    try:
        return await archive.run_in_pool(science.ensure, str(folder), original, image.hdu,
                                         archive.settings.max_pixels, plane, within)
    except science.MissingOriginal:
        raise Gone(f"the original file is no longer at {shown_path(original, current_user())}: the "
                   "histogram needs it once to read this image's values") from None
    except ImageXError as error:
        raise NotFound(str(error)) from None


# header keywords that name what an image shows, beside those of the site's object search fields
OBJECT_KEYWORDS = ("OBJECT", "OBJNAME", "TARGNAME", "TARGET")
NAME_CANDIDATES = 200


def _folded_name(text: str) -> str:
    """An object name as compared: case, spaces, underscores and hyphens ignored (`M 31` is `m31`)."""
    return re.sub(r"[\s_-]+", "", text).casefold()


async def object_keywords(archive: Archive) -> list[str]:
    """The header keywords that name objects: OBJECT_KEYWORDS and the keywords of the search form's text
    fields about objects or targets."""
    found = list(OBJECT_KEYWORDS)
    for element in await archive.store.list_elements():
        about = f"{element.id} {element.label}".casefold()
        if element.type == "text" and ("object" in about or "target" in about):
            found.extend(keyword for keyword in element.keywords if keyword not in found)
    return found


async def resolve_name(archive: Archive, text: str) -> tuple[float, float, ImageRecord]:
    """An object name resolved from the archive itself (no name resolver can be reached offline): the
    footprint centre of the newest image the asker may see whose object keyword or name is `text`
    (compared as `_folded_name` does). 404 naming what was looked up when none is."""
    name = text.strip()[:MAX_TEXT]
    wanted = _folded_name(name)
    if not wanted:
        raise BadRequest("go to: give an object name, or RA and Dec")
    keywords = await object_keywords(archive)
    spaced = " ".join(re.sub(r"[\s_-]+", " ", name).split())
    # how catalogues write one name: as typed, with spaces, without, and with a space between letters and
    # digits (`M31`, `M 31`; `NGC3372`, `NGC 3372`); the comparison below settles which ones match
    spellings = dict.fromkeys([name, spaced, spaced.replace(" ", ""),
                               re.sub(r"(?<=[A-Za-z])(?=\d)|(?<=\d)(?=[A-Za-z])", " ", spaced)])
    terms: list[Query] = [FieldIn("name", (name,))]
    terms += [TextMatch(keyword, spelling) for keyword in keywords for spelling in spellings if spelling]
    for image in await archive.store.find_images(visible_images(Or(tuple(terms))), limit=NAME_CANDIDATES):
        named = [image.name] + [str(image.header.get(keyword, "")) for keyword in keywords]
        ra, dec = (image.sky or {}).get("center_ra"), (image.sky or {}).get("center_dec")
        if ra is not None and dec is not None and any(_folded_name(value) == wanted for value in named
                                                      if value):
            return float(ra), float(dec), image
    raise NotFound(f"no image you may see is of an object named {name!r} (looked up in the archive's "
                   f"{', '.join(keywords)} and image names; no outside name resolver is used): give RA and "
                   "Dec instead")


async def go_to(archive: Archive, image_id: str, ra_text: str | None, dec_text: str | None,
                frame: str | None, name_text: str | None = None) -> dict[str, Any]:
    """Where a typed sky position, or an object named in the archive, falls on the image, in FITS pixels
    (1-based, y up), with the position in ICRS degrees; 400 for text that is not a position, 404 for a
    name the archive does not know, 422 for a position off the image."""
    image = await load_image(archive, image_id)
    return await go_to_on(archive, image.header, image.width, image.height, ra_text, dec_text, frame,
                          name_text)


async def go_to_on(archive: Archive, header: Mapping[str, Any], width: int, height: int, ra_text: str | None,
                   dec_text: str | None, frame: str | None, name_text: str | None = None) -> dict[str, Any]:
    """`go_to` on any celestial header of that size in pixels (an image's, or a mosaic's frame)."""
    source: dict[str, Any] = {}
    if name_text and name_text.strip() and not (ra_text or dec_text):
        ra, dec, named = await resolve_name(archive, name_text)
        source = {"name": name_text.strip(), "from": {"id": named.id, "name": named.name}}
    elif not ra_text or not dec_text:
        raise BadRequest("go to needs both ra= and dec= (and frame=icrs or galactic), or an object name "
                         "(name=)")
    else:
        try:
            ra, dec = parse_position(ra_text, dec_text, frame or "icrs")
        except ValueError as error:
            raise BadRequest(str(error)) from None
    try:
        x, y = await archive.run_in_pool(locate, header, width, height, ra, dec)
    except OffImage as error:
        raise UnprocessableEntity(str(error)) from None
    except ValueError as error:
        raise BadRequest(str(error)) from None
    return {"x": x + 1, "y": y + 1, "ra": ra, "dec": dec, **source}


def job_fields(job: JobRecord, visible_ids: set[str]) -> dict[str, Any]:
    """A job as `/api/jobs` lists it and `/api/jobs/<id>` shows it (that one adds its images), naming
    only the images in `visible_ids` (an older job may name someone else's)."""
    options = job.options
    return {**job_summary(job), "client_name": options.get("client_name", ""), "size": options.get("size"),
            "sha256": options.get("sha256", ""), "visibility": options.get("visibility", ""),
            "status_url": f"/api/jobs/{job.id}", "finished": job.state in ("done", "failed"),
            "image_ids": [image_id for image_id in job.image_ids if image_id in visible_ids]}


OWN_IMAGES_SHOWN = 50


async def own_images(archive: Archive, user: User) -> dict[str, Any]:
    """The user's own images, newest first (the first OWN_IMAGES_SHOWN), each with the bytes its file
    takes (the extensions of one file share it), and how many there are in all."""
    mine = FieldIn("owner", (user.username,))
    total = await archive.store.count_images(mine)
    images = await archive.store.find_images(mine, limit=OWN_IMAGES_SHOWN)
    return {"total": total, "images": [
        {"id": image.id, "name": image.name, "hdu": image.hdu, "format": image.format, "size": image.size,
         "visibility": image.visibility, "created": image.created} for image in images]}


async def storage(archive: Archive, user: User, site: Site) -> dict[str, Any]:
    """The user's images, bytes used and quota (their own or the site's default)."""
    images = used = 0
    for owner, usage in (await archive.store.usage()).items():
        if owner and owner.casefold() == user.username.casefold():
            images += usage.images
            used += usage.bytes
    quota = site.default_quota if user.quota is None else user.quota
    percent = 100.0 if quota <= 0 and used > 0 else (0.0 if quota <= 0 else min(100.0, 100 * used / quota))
    return {"images": images, "bytes": used, "quota": quota,
            "quota_source": "site" if user.quota is None else "account", "percent": round(percent, 1)}


def wants_json() -> bool:
    return request.path.startswith("/api/") or request.accept_mimetypes.best == "application/json"


def htmx() -> bool:
    return request.headers.get("HX-Request") == "true"


async def require_admin() -> Any:
    """The one gate of the admin area: an administrator passes; a guest is sent to log in (JSON: 401;
    htmx: a redirect header, so the login page is not swapped into a fragment); anyone else gets 403."""
    user = accounts.current_user()
    if user is not None and user.is_admin:
        return None
    if user is not None:
        raise Forbidden("the administration pages are for administrators only")
    if wants_json():
        raise Unauthorized("log in as an administrator, or send an administrator's API token")
    # after login, come back to this page (a form's target cannot be fetched with GET)
    target = request.full_path.rstrip("?") if request.method == "GET" else "/admin"
    login = f"/login?next={quote(target, safe='/')}"
    if htmx():
        return Response("", 401, headers={"HX-Redirect": login})
    return redirect(login)
