"""One image: the zoomable view, its header, the original file, and the owner's actions (who may see
it, delete it). Every route asks `permissions.may`; an image the asker may not see answers exactly as
a missing one."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from quart import Blueprint, Response, redirect, render_template, request, send_file
from werkzeug.exceptions import Gone

from app.archive import get_archive
from app.headers import content_disposition
from app.identity import current_user
from app.openapi import Param, check_query, whole
from app.routes.readiness import tiling_state
from app.routes.views import (
    AUDIENCES,
    access_fragment,
    change_visibility,
    check_plane,
    header_rows,
    htmx,
    image_detail,
    load_image,
    remove,
    shown_path,
)
from app.routes.zipstream import zip_stream
from app.store.records import ImageRecord
from app.tiles.render import display_names

bp = Blueprint("viewer", __name__)


@bp.get("/images/<image_id>")
async def image_page(image_id: str) -> str:
    archive = get_archive()
    image = await load_image(archive, image_id)
    if tiling_state(image) is not None:
        # catalogued by a two-phase ingest, its pyramids still to come: somebody waits for them
        await archive.store.prioritize_job(image.job_id)
    return await render_template("image.html", image=image_detail(archive, image), rows=header_rows(image),
                                 audiences=AUDIENCES, saved=False, display_names=display_names())


@bp.get("/images/<image_id>/tiling")
async def tiling(image_id: str) -> Any:
    """What the image page asks every 2 s while the image's pyramids are being built: the notice again
    (the job kept first in the queue), or, once they are built, nothing (htmx removes the notice; the
    view goes on as it is, and the page uses the pyramids from its next load). A page shown while the
    image's pixels were still being read (`reading`, it has no view) is loaded again once they are."""
    archive = get_archive()
    image = await load_image(archive, image_id)
    if request.args.get("reading") and not image.is_reading():
        response = Response("", status=200, content_type="text/html; charset=utf-8")
        response.headers["HX-Refresh"] = "true"
        return response
    if tiling_state(image) is None:
        return Response("", status=200, content_type="text/html; charset=utf-8")
    await archive.store.prioritize_job(image.job_id)
    return await render_template("_tiling.html", image=image_detail(archive, image))


_PLANE = Param("plane", whole(minimum=0), "one plane's file (a slice of a DICOM series), counted from 0")


@bp.get("/images/<image_id>/original")
async def original(image_id: str) -> Any:
    archive = get_archive()
    image = await load_image(archive, image_id, "download")
    chosen = request.args.get("plane")
    if image.series and chosen is None:
        return series_zip(image)
    check_query(_PLANE)
    plane = 0 if chosen is None else check_plane(image, int(float(chosen)))
    original, _ = image.plane_source(plane)
    path = Path(original)
    if not path.is_file():
        raise Gone(f"the original file is no longer at {shown_path(original, current_user())}")
    response = await send_file(path, mimetype="application/octet-stream", conditional=True)
    # a slice's file is named by its place in the series: file names may carry a patient's name
    name = f"{image.id}-slice-{plane + 1:04d}.dcm" if image.series else path.name
    response.headers["Content-Disposition"] = content_disposition(name)
    response.headers["Digest"] = f"sha-256={image.series[plane]['sha256'] if image.series else image.sha256}"
    return response


def series_zip(image: ImageRecord) -> Response:
    """A DICOM series' slice files as one zip, in plane order, each named by its place in the series."""
    files = [(f"{image.id}-slice-{index + 1:04d}.dcm", Path(str(item["path"])))
             for index, item in enumerate(image.series)]
    if not any(path.is_file() for _, path in files):
        raise Gone("the original files of this series are no longer where they were ingested from")
    response = Response(zip_stream(files), mimetype="application/zip")
    response.headers["Content-Disposition"] = content_disposition(f"{image.id}-series.zip")
    response.timeout = None
    return response


@bp.post("/images/<image_id>/visibility")
async def visibility(image_id: str) -> Any:
    """The image page's visibility form: the access fragment back to htmx, a redirect otherwise."""
    archive = get_archive()
    form = await request.form
    image = await change_visibility(archive, image_id, form.get("visibility"))
    if htmx():
        return await access_fragment(archive, image, saved=True)
    return redirect(f"/images/{image.id}", 303)


@bp.post("/images/<image_id>/delete")
async def delete(image_id: str) -> Any:
    """The image page's delete button: back to the portal (htmx follows `HX-Redirect`)."""
    archive = get_archive()
    await remove(archive, image_id)
    if htmx():
        return Response("", status=204, headers={"HX-Redirect": "/"})
    return redirect("/", 303)
