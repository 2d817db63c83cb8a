"""One image: the zoomable view, its header, and the original file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from quart import Blueprint, render_template, send_file
from werkzeug.exceptions import Gone, NotFound

from app.archive import Archive, get_archive
from app.routes.portal import image_summary
from app.store.base import ImageRecord

bp = Blueprint("viewer", __name__)


async def load_image(archive: Archive, image_id: str) -> ImageRecord:
    image = await archive.store.get_image(image_id)
    if image is None:
        raise NotFound(f"there is no image {image_id!r}")
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


@bp.get("/images/<image_id>")
async def image_page(image_id: str) -> str:
    archive = get_archive()
    image = await load_image(archive, image_id)
    return await render_template("image.html", image=image_detail(archive, image), rows=header_rows(image))


@bp.get("/images/<image_id>/original")
async def original(image_id: str) -> Any:
    archive = get_archive()
    image = await load_image(archive, image_id)
    path = Path(image.path)
    if not path.is_file():
        raise Gone(f"the original file is no longer at {image.path}")
    response = await send_file(path, as_attachment=True, attachment_filename=path.name,
                               mimetype="application/octet-stream", conditional=True)
    response.headers["Digest"] = f"sha-256={image.sha256}"
    return response
