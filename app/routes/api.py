"""JSON endpoints for automation; each returns the same dict its page renders."""

from __future__ import annotations

from typing import Any

from quart import Blueprint, current_app, jsonify, request
from werkzeug.exceptions import BadRequest, Forbidden, Unauthorized, UnprocessableEntity

from app.archive import get_archive
from app.identity import current_site, current_user
from app.openapi import (
    ERROR,
    OPENAPI_PATH,
    STRING,
    Param,
    RequestBody,
    described,
    document,
    obj,
    one_of,
    whole,
)
from app.routes import schemas
from app.routes.views import (
    change_visibility,
    go_to,
    histogram_of,
    image_detail,
    image_listing,
    job_fields,
    job_owner,
    load_image,
    page_args,
    readout_of,
    remove,
    visible_images,
)
from app.search.dates import date_range
from app.search.numbers import NotFinite, finite_number, number_of
from app.search.positions import parse_cone
from app.sky.readout import OffImage, position_at
from app.store.query import And, Compare, Cone, FieldIn, Or, Query, Scalar, check_keyword, keyword_range
from app.store.records import JOB_STATES

bp = Blueprint("api", __name__, url_prefix="/api")


def parse_value(text: str, name: str) -> Scalar:
    """Numbers compare as numbers: `10` and `1.5e3` become numbers, `T`/`F` FITS booleans; else text.
    `nan` and `inf` are refused (400), as the search refuses them."""
    try:
        number = number_of(text)
    except NotFinite:
        raise BadRequest(f"{name} must be a finite number, not {text!r}") from None
    if number is not None:
        return number
    if text in ("T", "F"):
        return text == "T"
    return text


def keyword_query() -> Query | None:
    """`keyword=NAME` with `eq=VALUE` (a number matches the number and the same text), or with `min=`
    and/or `max=` for a range."""
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
        value = parse_value(eq, "eq")
        if isinstance(value, int | float) and not isinstance(value, bool):
            # the number, or the same characters as text: an identifier a header holds as a string
            # (DICOM's code values and accession numbers, a FITS OBSID = '12345')
            return Or((Compare(keyword, "eq", value), Compare(keyword, "eq", eq)))
        return Compare(keyword, "eq", value)
    if low is None and high is None:
        raise BadRequest("keyword needs eq=VALUE or min=/max= bounds")
    low_value = None if low is None else parse_value(low, "min")
    high_value = None if high is None else parse_value(high, "max")
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
@described("Images the asker may see, newest first, with optional filters", params=(
    *schemas.PAGING,
    Param("keyword", STRING, "a header keyword to filter on, with eq= or min=/max= (letters, digits, - _ . "
          "and the [n] of a DICOM sequence item: ReferencedImageSequence[0].ReferencedSOPClassUID)"),
    Param("eq", STRING, "the keyword's value (a number matches the number and the same text; T/F are FITS "
          "booleans)"),
    Param("min", STRING, "the lowest value of the keyword (a finite number, or text)"),
    Param("max", STRING, "the highest value of the keyword (a finite number, or text)"),
    Param("date_keywords", STRING, "date keywords, any of which may match: DATE-OBS,DATE,MJD-OBS"),
    Param("date_from", STRING, "a calendar date (whole day, UTC) or an ISO date-time"),
    Param("date_to", STRING, "a calendar date (whole day, UTC, inclusive) or an ISO date-time"),
    Param("ra", STRING, "cone centre: degrees or sexagesimal"),
    Param("dec", STRING, "cone centre: degrees or sexagesimal"),
    Param("radius", STRING, "cone radius with a unit (arcsec, arcmin, deg; bare: degrees)"),
    Param("frame", one_of("icrs", "galactic")), Param("mode", one_of("overlaps", "contains"))),
    answers={200: ("one page of images", schemas.LISTING),
             403: ("guests may not filter (search) on this site", ERROR)})
async def images() -> Any:
    archive = get_archive()
    page, per_page = page_args(archive.settings.page_size)
    parts = [part for part in (keyword_query(), date_query(), cone_query()) if part is not None]
    query = None if not parts else parts[0] if len(parts) == 1 else And(tuple(parts))
    return jsonify(await image_listing(archive, page, per_page, query))


@bp.get("/images/<image_id>")
@described("One image with its whole header", params=(schemas.IMAGE_ID,),
           answers={200: ("the image record", schemas.IMAGE_DETAIL)})
async def image(image_id: str) -> Any:
    archive = get_archive()
    return jsonify(image_detail(archive, await load_image(archive, image_id)))


@bp.get("/images/<image_id>/readout")
@described("What the viewer needs for the cursor readout, scale bar and compass", params=(schemas.IMAGE_ID,),
           answers={200: ("the sky grid, the map grid and physical pixel size (each may be null)",
                          schemas.READOUT)})
async def image_readout(image_id: str) -> Any:
    """The image page's sky description: a grid of ICRS unit vectors for the cursor readout (`celestial`,
    null without a celestial WCS), a map's grid of WGS 84 longitude/latitude with its projected coordinates
    (`geographic`, null but for a GeoTIFF with a known CRS) and the physical pixel size in metres
    (`physical`, or null)."""
    archive = get_archive()
    return jsonify(await readout_of(archive, await load_image(archive, image_id)))


@bp.get("/images/<image_id>/histogram")
@described("The pixel histogram of an image and the cuts of a display on it", params=(
    schemas.IMAGE_ID,
    Param("display", STRING, "a display spec, <interval>~<stretch>~<colormap> as in the dynamic tile "
                             "URLs (e.g. zscale~asinh~viridis, p99.5~linear~grey); default: the image's "
                             "own display"),
    Param("plane", whole(minimum=0), "the plane of a cube or series, counted from 0 as in the tile URLs")),
    answers={200: ("the histogram (log counts are the display controls' business) with the display's low "
                   "and high data values", schemas.HISTOGRAM),
             409: ("another display's cuts need the image's values, and its pyramids could not be built "
                   "(a two-phase ingest catalogued it, then its file was removed or changed)", ERROR),
             410: ("the image's values must be read once from its original file, which is gone", ERROR)})
async def image_histogram(image_id: str) -> Any:
    """The image page's histogram with cuts: counted once (at ingest, or on first request for an older
    image or another plane) and the interval's limits exactly as the display's tiles use them."""
    archive = get_archive()
    plane = int(float(request.args.get("plane", "0")))
    return jsonify(await histogram_of(archive, await load_image(archive, image_id),
                                      request.args.get("display"), plane))


@bp.get("/images/<image_id>/locate")
@described("Where a sky position falls on the image", params=(
    schemas.IMAGE_ID, Param("ra", STRING, "degrees or sexagesimal (with dec)"),
    Param("dec", STRING, "degrees or sexagesimal (with ra)"),
    Param("frame", one_of("icrs", "galactic")),
    Param("name", STRING, "an object name, looked up in the archive's images instead of ra and dec")),
    answers={200: ("FITS pixel (1-based, y up) and the ICRS position", schemas.LOCATION),
             404: ("no image the asker may see is of an object by that name", ERROR),
             422: ("the position is off the image", ERROR)})
async def image_locate(image_id: str) -> Any:
    """`ra=&dec=` (sexagesimal or degrees, `frame=icrs|galactic`), or `name=` (an object the archive
    knows): the image page's go-to form."""
    archive = get_archive()
    return jsonify(await go_to(archive, image_id, request.args.get("ra"), request.args.get("dec"),
                               request.args.get("frame"), request.args.get("name")))


@bp.get("/images/<image_id>/position")
@described("The exact sky position of a pixel", params=(
    schemas.IMAGE_ID, Param("x", STRING, "FITS pixel x (1-based)", required=True),
    Param("y", STRING, "FITS pixel y (1-based, up)", required=True)),
    answers={200: ("the pixel and its ICRS and Galactic position (null where the projection puts no sky)",
                   schemas.POSITION),
             422: ("the pixel is off the image", ERROR)})
async def image_position(image_id: str) -> Any:
    """What the readout asks where its grid cannot follow the projection (`rough` cells: near the rim of
    an all-sky map): the position astropy computes for the pixel."""
    archive = get_archive()
    image = await load_image(archive, image_id)
    try:
        x = finite_number(request.args.get("x", ""), "x")
        y = finite_number(request.args.get("y", ""), "y")
    except ValueError as error:
        raise BadRequest(str(error)) from None
    try:
        sky = await archive.run_in_pool(position_at, image.header, image.width, image.height, x - 1, y - 1)
    except OffImage as error:
        raise UnprocessableEntity(str(error)) from None
    except ValueError as error:
        raise BadRequest(str(error)) from None
    return jsonify({"x": x, "y": y, "sky": sky})


@bp.post("/images/<image_id>/visibility")
@described("Set who may see one image", access="user", params=(schemas.IMAGE_ID,),
           body=RequestBody({**obj({"visibility": schemas.VISIBILITY}), "x-message": (
               'visibility must be one of private, registered, public: send {"visibility": ...}')}),
           answers={200: ("the image record", schemas.IMAGE_DETAIL)})
async def image_visibility(image_id: str) -> Any:
    """`{"visibility": "private" | "registered" | "public"}`: the image page's visibility form."""
    archive = get_archive()
    body = await request.get_json(force=True, silent=True)
    value = body.get("visibility") if isinstance(body, dict) else None
    return jsonify(image_detail(archive, await change_visibility(archive, image_id, value)))


@bp.delete("/images/<image_id>")
@described("Delete one image, its tiles and an uploaded original nobody else uses", access="user",
           params=(schemas.IMAGE_ID,), answers={200: ("what was removed", schemas.REMOVAL)})
async def delete_image(image_id: str) -> Any:
    """The image page's delete button."""
    archive = get_archive()
    return jsonify((await remove(archive, image_id)).public())


@bp.get("/jobs")
@described("Ingest jobs: administrators see all of them, users their own", access="user", params=(
    Param("state", one_of(*JOB_STATES)), *schemas.PAGING),
    answers={200: ("counts per state and one page of jobs", schemas.JOB_LIST)})
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
    named = sorted({image_id for job in listed for image_id in job.image_ids})
    visible_ids = {image.id for image in await archive.store.find_images(
        visible_images(FieldIn("id", tuple(named))), limit=len(named))} if named else set()
    return jsonify({"counts": await archive.store.job_counts(owner=owner), "page": page,
                    "per_page": per_page, "jobs": [job_fields(job, visible_ids) for job in listed]})


@bp.get(OPENAPI_PATH.removeprefix("/api"))
@described("This description of the JSON API (OpenAPI 3.1)", access="open",
           answers={200: ("the OpenAPI document", {"type": "object"})})
async def openapi() -> Any:
    """Made from the routes' own declarations (`app.openapi`), titled with the site's title."""
    return jsonify(document(current_app, title=current_site().site_title))
