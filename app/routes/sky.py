"""The sky page: the archive's images on the whole sky in Aladin Lite (app/static/sky-page.js), over the
archive's own HiPS survey the asker may see when there is one (`registered` for a logged-in user, with their
own survey over it; `public` for a guest). The footprints it draws come from `GET /api/search/footprints`
with the page's own query string: the search page's results shown on the sky.

`/embed/sky` is the same sky for a frame on another site (a notebook's `app.notebook.sky`): no list beside
it, a click opens the image in a new tab. `target` ("RA Dec" in degrees) and `fov` (degrees) choose where
either page looks first."""

from __future__ import annotations

import math
from typing import Any
from urllib.parse import urlencode

from quart import Blueprint, Response, render_template, request
from werkzeug.exceptions import BadRequest

from app.archive import get_archive
from app.headers import allow_framing, use_sky_policy
from app.hips.access import survey_url, surveys_for
from app.identity import current_site, current_user

bp = Blueprint("sky", __name__)
VIEW_ARGS = ("target", "fov")  # where the page looks first: not search parameters


def first_view() -> tuple[str, str]:
    """`target` and `fov` of the request, checked, as the page hands them to Aladin Lite ("" when not
    given); BadRequest naming what is wrong."""
    target, fov = request.args.get("target", "").strip(), request.args.get("fov", "").strip()
    if target:
        parts = target.replace(",", " ").split()
        try:
            ra, dec = (float(part) for part in parts) if len(parts) == 2 else (math.nan, math.nan)
        except ValueError:
            ra = dec = math.nan
        if not (math.isfinite(ra) and math.isfinite(dec) and -90 <= dec <= 90):
            raise BadRequest(f"target must be 'RA Dec' in degrees (Dec from -90 to 90), e.g. '83.82 -5.39'; "
                             f"got {target[:60]!r}")
        target = f"{ra % 360:.8g} {dec:.8g}"
    if fov:
        try:
            width = float(fov.removesuffix("deg"))
        except ValueError:
            width = math.nan
        if not (math.isfinite(width) and 0 < width <= 360):
            raise BadRequest(f"fov must be the width of the view in degrees, above 0 and at most 360; "
                             f"got {fov[:60]!r}")
        fov = f"{width:.8g}"
    return target, fov


async def sky_context() -> dict[str, Any]:
    archive = get_archive()
    use_sky_policy()
    target, fov = first_view()
    elements = [element for element in await archive.store.list_elements() if element.enabled]
    cone = next((element.id for element in elements if element.type == "cone"), "")
    base, own = surveys_for(archive, current_user(), current_site())
    query = urlencode([(key, value) for key, value in request.args.items(multi=True) if key not in VIEW_ARGS])
    return {"query": query, "cone": cone, "survey": base, "target": target, "fov": fov,
            "survey_url": survey_url(archive, base) if base else "",
            "own_url": survey_url(archive, own) if own else ""}


@bp.get("/sky")
async def sky_page() -> Any:
    return await render_template("sky.html", **await sky_context())


@bp.get("/embed/sky")
async def sky_embed() -> Response:
    """The sky for a frame: any site named by IMAGEX_FRAME_ANCESTORS may frame what a guest sees; what a
    logged-in user sees (their private images, signed survey links) only this site."""
    archive = get_archive()
    try:
        body, status = await render_template("embed_sky.html", **await sky_context()), 200
    except BadRequest as error:
        body, status = await render_template("_embed_unavailable.html", message=error.description), 400
    response = Response(body, status=status, content_type="text/html; charset=utf-8")
    allow_framing(archive.settings.frame_ancestors if current_user() is None else "'self'")
    response.headers["Cache-Control"] = "no-store"
    return response
