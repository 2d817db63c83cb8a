"""The portal: newest images first (only those the asker may see), with the ingest queue and its
failures (admins: all; users: their own; guests: none)."""

from __future__ import annotations

from quart import Blueprint, render_template

from app.archive import get_archive
from app.routes.views import htmx, image_listing, page_args, queue_state

bp = Blueprint("portal", __name__)


@bp.get("/")
async def index() -> str:
    archive = get_archive()
    page, per_page = page_args(archive.settings.page_size)
    listing = await image_listing(archive, page, per_page)
    queue = await queue_state(archive)
    template = "_catalog.html" if htmx() else "index.html"
    watched = [str(folder) for folder in archive.settings.watch_folders] if archive.watcher else []
    return await render_template(template, listing=listing, queue=queue, watched=watched)
