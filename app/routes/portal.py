"""The portal: newest images first (only those the asker may see), with the ingest queue and its
failures (admins: all; users: their own; guests: none)."""

from __future__ import annotations

import math
from typing import Any

from quart import Blueprint, render_template, request
from werkzeug.exceptions import BadRequest

from app.accounts import current_site, current_user
from app.archive import Archive, get_archive
from app.permissions import Action, effective_visibility, may, visible
from app.store.base import JOB_STATES, And, ImageRecord, JobRecord, Query, User
from app.tiles.render import default_spec

bp = Blueprint("portal", __name__)
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
    if permissions["view"]:
        token = archive.tile_token(image.id)
        summary["thumbnail_url"] = f"/tiles/{image.id}/{token}/thumb.jpeg"
        summary["dzi_url"] = f"/tiles/{image.id}/{token}/image.dzi"
        # dynamic tiles: <display_url><spec>/image.dzi (see app/tiles/render.py)
        summary["display_url"] = f"/tiles/{image.id}/{token}/display/"
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
    jobs, guests nothing."""
    user = current_user()
    if user is None:
        return {"counts": dict.fromkeys(JOB_STATES, 0), "pending": 0, "failed": [], "running": [],
                "background_errors": []}
    owner = job_owner(user)
    counts = await archive.store.job_counts(owner=owner)
    failed = await archive.store.list_jobs("failed", limit=20, owner=owner)
    active = await archive.store.list_jobs("running", limit=20, owner=owner)
    return {
        "counts": counts,
        "pending": counts["queued"] + counts["running"],
        "failed": [job_summary(job) for job in failed],
        "running": [job_summary(job) for job in active],
        "background_errors": list(archive.background_errors) if user.is_admin else [],
    }


@bp.get("/")
async def index() -> str:
    archive = get_archive()
    page, per_page = page_args(archive.settings.page_size)
    listing = await image_listing(archive, page, per_page)
    queue = await queue_state(archive)
    template = "_catalog.html" if request.headers.get("HX-Request") else "index.html"
    return await render_template(template, listing=listing, queue=queue)
