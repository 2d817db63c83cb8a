"""The sky page: the archive's images on the whole sky in Aladin Lite (app/static/sky-page.js), over the
archive's own HiPS survey when there is one. The footprints it draws come from `GET /api/search/footprints`
with the page's own query string: the search page's results shown on the sky."""

from __future__ import annotations

from typing import Any

from quart import Blueprint, render_template, request

from app.archive import get_archive
from app.headers import use_sky_policy

bp = Blueprint("sky", __name__)
PUBLIC_SURVEY = "public"


@bp.get("/sky")
async def sky_page() -> Any:
    archive = get_archive()
    use_sky_policy()
    elements = [element for element in await archive.store.list_elements() if element.enabled]
    cone = next((element.id for element in elements if element.type == "cone"), "")
    survey = archive.hips.folder(PUBLIC_SURVEY) / "properties"
    query = request.query_string.decode("ascii", "replace")
    return await render_template("sky.html", query=query, cone=cone,
                                 survey_url=f"/hips/{PUBLIC_SURVEY}" if survey.is_file() else "")
