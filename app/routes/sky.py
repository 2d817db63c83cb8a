"""The sky page: the archive's images on the whole sky in Aladin Lite (app/static/sky-page.js), over the
archive's own HiPS survey the asker may see when there is one (`registered` for a logged-in user, with their
own survey over it; `public` for a guest). The footprints it draws come from `GET /api/search/footprints`
with the page's own query string: the search page's results shown on the sky."""

from __future__ import annotations

from typing import Any

from quart import Blueprint, render_template, request

from app.archive import get_archive
from app.headers import use_sky_policy
from app.hips.access import survey_url, surveys_for
from app.identity import current_site, current_user

bp = Blueprint("sky", __name__)


@bp.get("/sky")
async def sky_page() -> Any:
    archive = get_archive()
    use_sky_policy()
    elements = [element for element in await archive.store.list_elements() if element.enabled]
    cone = next((element.id for element in elements if element.type == "cone"), "")
    base, own = surveys_for(archive, current_user(), current_site())
    query = request.query_string.decode("ascii", "replace")
    return await render_template("sky.html", query=query, cone=cone, survey=base,
                                 survey_url=survey_url(archive, base) if base else "",
                                 own_url=survey_url(archive, own) if own else "")
