"""JSON endpoints for automation; each returns the same dict its page renders."""

from __future__ import annotations

from typing import Any

from quart import Blueprint, jsonify, request
from werkzeug.exceptions import BadRequest, Forbidden, Unauthorized

from app.accounts import current_site, current_user
from app.archive import get_archive
from app.routes.portal import image_listing, job_owner, job_summary, page_args
from app.routes.viewer import change_visibility, go_to, image_detail, load_image, readout_of, remove
from app.search.dates import date_range
from app.search.sky import parse_cone
from app.store.base import JOB_STATES, And, Compare, Cone, Query, Scalar, check_keyword, keyword_range

bp = Blueprint("api", __name__, url_prefix="/api")


def parse_value(text: str) -> Scalar:
    """Numbers compare as numbers: `10` and `1.5e3` become numbers, `T`/`F` FITS booleans; else text."""
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        pass
    if text in ("T", "F"):
        return text == "T"
    return text


def keyword_query() -> Query | None:
    """`keyword=NAME` with `eq=VALUE`, or with `min=` and/or `max=` for a range."""
    keyword = request.args.get("keyword")
    filtering = keyword is not None or any(name in request.args for name in ("eq", "min", "max"))
    if filtering and current_user() is None and not current_site().guest_search:
        raise Forbidden("guests may not search this site: log in to filter the catalog "
                        "(browsing without a filter is allowed)")
    if keyword is None:
        if filtering:
            raise BadRequest("eq, min and max need a keyword=NAME")
        return None
    try:
        check_keyword(keyword)
    except ValueError as error:
        raise BadRequest(str(error)) from None
    eq, low, high = (request.args.get(name) for name in ("eq", "min", "max"))
    if eq is not None:
        if low is not None or high is not None:
            raise BadRequest("use either eq or min/max, not both")
        return Compare(keyword, "eq", parse_value(eq))
    if low is None and high is None:
        raise BadRequest("keyword needs eq=VALUE or min=/max= bounds")
    low_value = None if low is None else parse_value(low)
    high_value = None if high is None else parse_value(high)
    if isinstance(low_value, int | float) and isinstance(high_value, int | float) and low_value > high_value:
        raise BadRequest(f"min ({low}) is greater than max ({high})")
    return keyword_range(keyword, low_value, high_value)


DATE_ARGS = ("date_keywords", "date_from", "date_to")


def date_query() -> Query | None:
    """`date_keywords=DATE-OBS,DATE,MJD-OBS` (alternates, any of them) with `date_from=` and/or `date_to=`:
    calendar dates (whole days, UTC, inclusive) or ISO date-times."""
    if not any(name in request.args for name in DATE_ARGS):
        return None
    if current_user() is None and not current_site().guest_search:
        raise Forbidden("guests may not search this site: log in to filter the catalog "
                        "(browsing without a filter is allowed)")
    if "date_keywords" not in request.args:
        raise BadRequest("date_from and date_to need date_keywords=NAME[,NAME...], "
                         "e.g. DATE-OBS,DATE,MJD-OBS")
    try:
        return date_range(request.args["date_keywords"], request.args.get("date_from"),
                          request.args.get("date_to"))
    except ValueError as error:
        raise BadRequest(str(error)) from None


CONE_ARGS = ("ra", "dec", "radius", "frame", "mode")


def cone_query() -> Query | None:
    """`ra=&dec=&radius=` (sexagesimal or degrees; radius with a unit arcsec/arcmin/deg, bare: degrees),
    `frame=icrs|galactic`, `mode=overlaps|contains` (the image holds the point; no radius needed)."""
    if not any(name in request.args for name in CONE_ARGS):
        return None
    if current_user() is None and not current_site().guest_search:
        raise Forbidden("guests may not search this site: log in to filter the catalog "
                        "(browsing without a filter is allowed)")
    ra, dec = request.args.get("ra"), request.args.get("dec")
    if ra is None or dec is None:
        raise BadRequest("a cone search needs both ra= and dec= (with radius=, frame=, mode=)")
    try:
        cone = parse_cone(ra, dec, request.args.get("radius"), request.args.get("frame", "icrs"),
                          request.args.get("mode", "overlaps"))
    except ValueError as error:
        raise BadRequest(str(error)) from None
    return Cone(cone.ra, cone.dec, cone.radius, cone.mode)


@bp.get("/images")
async def images() -> Any:
    archive = get_archive()
    page, per_page = page_args(archive.settings.page_size)
    parts = [part for part in (keyword_query(), date_query(), cone_query()) if part is not None]
    query = None if not parts else parts[0] if len(parts) == 1 else And(tuple(parts))
    return jsonify(await image_listing(archive, page, per_page, query))


@bp.get("/images/<image_id>")
async def image(image_id: str) -> Any:
    archive = get_archive()
    return jsonify(image_detail(archive, await load_image(archive, image_id)))


@bp.get("/images/<image_id>/readout")
async def image_readout(image_id: str) -> Any:
    """The image page's sky description: a grid of ICRS unit vectors for the cursor readout (`celestial`,
    null without a celestial WCS) and the physical pixel size in metres (`physical`, or null)."""
    archive = get_archive()
    return jsonify(await readout_of(archive, await load_image(archive, image_id)))


@bp.get("/images/<image_id>/locate")
async def image_locate(image_id: str) -> Any:
    """`ra=&dec=` (sexagesimal or degrees, `frame=icrs|galactic`): the image page's go-to form."""
    archive = get_archive()
    return jsonify(await go_to(archive, image_id, request.args.get("ra"), request.args.get("dec"),
                               request.args.get("frame")))


@bp.post("/images/<image_id>/visibility")
async def image_visibility(image_id: str) -> Any:
    """`{"visibility": "private" | "registered" | "public"}`: the image page's visibility form."""
    archive = get_archive()
    body = await request.get_json(force=True, silent=True)
    value = body.get("visibility") if isinstance(body, dict) else None
    return jsonify(image_detail(archive, await change_visibility(archive, image_id, value)))


@bp.delete("/images/<image_id>")
async def delete_image(image_id: str) -> Any:
    """The image page's delete button."""
    archive = get_archive()
    return jsonify((await remove(archive, image_id)).public())


@bp.get("/jobs")
async def jobs() -> Any:
    """Ingest jobs: admins see all of them, users their own; guests must log in."""
    archive = get_archive()
    user = current_user()
    if user is None:
        raise Unauthorized("log in or send an API token to see ingest jobs")
    owner = job_owner(user)
    page, per_page = page_args(50)
    state = request.args.get("state") or None
    if state is not None and state not in JOB_STATES:
        raise BadRequest(f"state must be one of {', '.join(JOB_STATES)}")
    listed = await archive.store.list_jobs(state, offset=(page - 1) * per_page, limit=per_page,
                                           owner=owner)
    return jsonify({"counts": await archive.store.job_counts(owner=owner), "page": page,
                    "per_page": per_page, "jobs": [job_summary(job) for job in listed]})
