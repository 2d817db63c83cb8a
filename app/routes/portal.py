"""The portal: newest images first, with the ingest queue and its failures."""

from __future__ import annotations

import math
from typing import Any

from quart import Blueprint, render_template, request
from werkzeug.exceptions import BadRequest

from app.archive import Archive, get_archive
from app.store.base import ImageRecord, JobRecord, Query

bp = Blueprint("portal", __name__)
MAX_PER_PAGE = 200


def page_args(default_size: int) -> tuple[int, int]:
    """`page` (from 1) and `per_page` from the query string, validated."""
    try:
        page = int(request.args.get("page", "1"))
        per_page = int(request.args.get("per_page", str(default_size)))
    except ValueError:
        raise BadRequest("page and per_page must be whole numbers") from None
    if page < 1 or not 1 <= per_page <= MAX_PER_PAGE:
        raise BadRequest(f"page must be 1 or more and per_page 1-{MAX_PER_PAGE}")
    return page, per_page


def image_summary(archive: Archive, image: ImageRecord) -> dict[str, Any]:
    token = archive.tile_token(image.id)
    return {
        **image.public(),
        "date": image.header.get("DATE-OBS") or image.header.get("DATE") or "",
        "url": f"/images/{image.id}",
        "api_url": f"/api/images/{image.id}",
        "thumbnail_url": f"/tiles/{image.id}/{token}/thumb.jpeg",
        "dzi_url": f"/tiles/{image.id}/{token}/image.dzi",
        "original_url": f"/images/{image.id}/original",
    }


def job_summary(job: JobRecord) -> dict[str, Any]:
    return {**job.public(), "name": job.path.rsplit("/", 1)[-1]}


async def image_listing(archive: Archive, page: int, per_page: int,
                        query: Query | None = None) -> dict[str, Any]:
    """One page of images, newest first, with paging facts: the portal and `/api/images` share it."""
    total = await archive.store.count_images(query)
    images = await archive.store.find_images(query, offset=(page - 1) * per_page, limit=per_page)
    return {
        "images": [image_summary(archive, image) for image in images],
        "page": page,
        "per_page": per_page,
        "total": total,
        "pages": max(1, math.ceil(total / per_page)),
    }


async def queue_state(archive: Archive) -> dict[str, Any]:
    counts = await archive.store.job_counts()
    failed = await archive.store.list_jobs("failed", limit=20)
    active = await archive.store.list_jobs("running", limit=20)
    return {
        "counts": counts,
        "pending": counts["queued"] + counts["running"],
        "failed": [job_summary(job) for job in failed],
        "running": [job_summary(job) for job in active],
        "background_errors": list(archive.background_errors),
    }


@bp.get("/")
async def index() -> str:
    archive = get_archive()
    page, per_page = page_args(archive.settings.page_size)
    listing = await image_listing(archive, page, per_page)
    queue = await queue_state(archive)
    template = "_catalog.html" if request.headers.get("HX-Request") else "index.html"
    return await render_template(template, listing=listing, queue=queue)
