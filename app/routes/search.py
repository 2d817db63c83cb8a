"""The search page and its JSON twin: the form the administrator built (enabled elements, in order),
results that update in place, sorting, paging, autocomplete, and what to do with a selection (download one
streamed zip of the originals, open them together in the mosaic viewer)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path, PurePath
from typing import Any
from urllib.parse import urlencode

from quart import Blueprint, Response, jsonify, redirect, render_template, request
from werkzeug.exceptions import BadRequest, Forbidden, NotFound

from app.archive import Archive, get_archive
from app.formatting import query_string
from app.identity import current_site, current_user
from app.openapi import ERROR, STRING, Param, described, one_of
from app.permissions import may
from app.routes import schemas, views
from app.routes.views import htmx, image_summary, page_args, visible_images
from app.routes.zipstream import zip_stream
from app.search.compile import SORTABLE, Search, compile_search, element_summary, parameters
from app.search.elements import MAX_CHOICES
from app.store.dates import header_dates
from app.store.query import MAX_TEXT, MICROS_PER_DAY, MJD_EPOCH, And, Cone, Query, Scalar
from app.store.records import ImageRecord, SearchElement

bp = Blueprint("search", __name__)


MAX_SELECTION = 500
FOOTPRINT_LIMIT = 2000  # footprints drawn on the sky page, newest first
WHOLE_SKY = Cone(0.0, 0.0, 180.0)  # every image with a sky footprint
SUGGESTIONS = 15


def _args() -> dict[str, str]:
    """The query string, one value per name (the last wins, as in a form)."""
    return {name: request.args.getlist(name)[-1] for name in request.args}


def _guard(search: Search) -> None:
    if search.filtering and current_user() is None and not current_site().guest_search:
        raise Forbidden("guests may not search this site: log in to search (browsing is allowed)")


def _column(element: SearchElement, image: ImageRecord) -> Scalar | None:
    """What the results table shows for one element: the first of its keywords the image has."""
    for keyword in element.keywords:
        value = image.header.get(keyword)
        if value is not None and not isinstance(value, list):
            return value
    return None


def _date_of(elements: list[SearchElement], image: ImageRecord) -> str:
    """The observation date shown in results: the first date element's keywords (any spelling the header
    used, as an ISO date-time), else the DATE-OBS/DATE card as written."""
    for element in elements:
        if element.type != "date":
            continue
        dates = header_dates({keyword: image.header[keyword] for keyword in element.keywords
                              if keyword in image.header} | _partners(image))
        for keyword in element.keywords:
            if keyword in dates:
                return _iso(dates[keyword])
    return str(image.header.get("DATE-OBS") or image.header.get("DATE") or "")


def _partners(image: ImageRecord) -> dict[str, Any]:
    # time-of-day cards read with a date card
    return {keyword: image.header[keyword] for keyword in ("TIME-OBS", "UT", "UTSTART", "UT-START")
            if keyword in image.header}


def _iso(mjd: float) -> str:
    moment = MJD_EPOCH + timedelta(microseconds=round(mjd * MICROS_PER_DAY))
    return moment.strftime("%Y-%m-%d %H:%M:%S")


async def _without_values(archive: Archive, used: Sequence[SearchElement]) -> list[SearchElement]:
    """The used elements whose keywords no image the asker may see has a value for. Counted over what
    the asker may see, never over the whole catalog: a notice must not tell a guest which keywords the
    private images carry. The catalog's keyword counts settle the common cases at no cost."""
    used = [element for element in used if element.keywords]
    if not used:
        return []
    present = await archive.store.keyword_counts()
    condition = visible_images(None)
    absent = []
    for element in used:
        if not any(keyword in present for keyword in element.keywords) or (
                condition is not None
                and not await archive.store.distinct_values(element.keywords, condition, limit=1)):
            absent.append(element)
    return absent


async def run_search(archive: Archive, *, strict: bool) -> dict[str, Any]:
    """One page of results for the query string, as the page and the API show them. `strict` (the API):
    any bad parameter is a 400; the page shows messages beside the fields and searches with the rest."""
    elements = await archive.store.list_elements()
    args = _args()
    search = compile_search(elements, args)
    if strict and search.errors:
        raise BadRequest("; ".join(search.errors.values()))
    _guard(search)
    page, per_page = page_args(archive.settings.page_size)
    condition = visible_images(search.query)
    total = 0
    images: list[ImageRecord] = []
    # when every condition asked for was refused, the page shows the messages, not the whole archive
    if not search.errors or search.filtering:
        total, images = await archive.store.search_images(condition, offset=(page - 1) * per_page,
                                                          limit=per_page, order=search.order,
                                                          count_at_most=views.COUNT_LIMIT)
    enabled = [element for element in elements if element.enabled]
    shown = [element for element in enabled if element.type in ("text", "number", "select")]
    notices = [f"{element.label}: no image has {' or '.join(element.keywords)}"
               for element in await _without_values(archive, search.used)]
    results = []
    for image in images:
        summary = image_summary(archive, image)
        summary["columns"] = {element.id: _column(element, image) for element in shown}
        summary["date"] = _date_of(enabled, image)
        results.append(summary)
    values = {name: value for name, value in search.values.items()}
    if search.sort != "created":
        values["sort"] = search.sort
    values["order"] = "desc" if search.descending else "asc"
    if "per_page" in request.args:
        values["per_page"] = str(per_page)
    return {
        "images": results,
        "page": page,
        "per_page": per_page,
        "total": total,
        "total_exact": total < views.COUNT_LIMIT,
        "pages": max(1, math.ceil(total / per_page)),
        "sort": search.sort,
        "order": values["order"],
        "values": search.values,
        "errors": search.errors,
        "notices": notices,
        "elements": [element.public() for element in enabled],
        "columns": [{"id": element.id, "label": element.label,
                     "unit": element.options.get("unit", "")} for element in shown],
        "sortable": [element.id for element in enabled if element.type in SORTABLE],
        "query": query_string(values),
        "query_values": values,
    }


def form_elements(elements: list[SearchElement]) -> list[dict[str, Any]]:
    """The enabled elements as the form renders them."""
    return [{**element.public(), "parameters": parameters(element), "describe": element_summary(element)}
            for element in elements if element.enabled]


@bp.get("/search")
async def search_page() -> Any:
    archive = get_archive()
    results = await run_search(archive, strict=False)
    restoring = request.headers.get("HX-History-Restore-Request") == "true"
    if htmx() and not restoring:
        return await render_template("_search_results.html", results=results)
    elements = await archive.store.list_elements()
    may_search = current_user() is not None or current_site().guest_search
    return await render_template("search.html", results=results, elements=form_elements(elements),
                                 max_text=MAX_TEXT, may_search=may_search)


@bp.get("/api/search")
@described("The search page's results", tag="search", description=(
    "Besides these, one parameter per field of the search form (see the README's Searching section and "
    "`GET /api/admin/search-elements`); any other parameter is a 400."), params=(
    *schemas.PAGING, Param("sort", STRING, "created, size, name or a sortable field's id"),
    Param("order", {**one_of("asc", "desc"), "x-message": "order must be asc or desc"})),
    answers={200: ("one page of results", schemas.SEARCH_RESULTS),
             403: ("guests may not search this site", ERROR)})
async def search_api() -> Any:
    archive = get_archive()
    results = await run_search(archive, strict=True)
    for image in results["images"]:
        image.pop("permissions", None)
    return jsonify({key: results[key] for key in ("images", "page", "per_page", "total", "total_exact",
                                                   "pages", "sort", "order", "notices")})


async def _element(archive: Archive, element_id: str) -> SearchElement:
    for element in await archive.store.list_elements():
        if element.id == element_id and element.enabled:
            return element
    raise NotFound(f"there is no search element {element_id!r}")


async def suggestions(archive: Archive, element_id: str) -> list[dict[str, Any]]:
    """Values present for a text or drop-down element (among the images the asker may see), starting with
    what was typed, most frequent first."""
    element = await _element(archive, element_id)
    if element.type not in ("text", "select"):
        raise BadRequest(f"the search element {element_id!r} has no suggestions")
    every = request.args.get("format") == "options"  # a drop-down filled from the values present
    prefix = "" if every else request.args.get(element.id, request.args.get("prefix", "")).strip()[:MAX_TEXT]
    if current_user() is None and not current_site().guest_search:
        raise Forbidden("guests may not search this site: log in to search")
    # suggestions match as the search does: anywhere in the value, unless the field matches the start
    anywhere = element.type == "text" and element.options.get("match", "contains") == "contains"
    values = await archive.store.distinct_values(element.keywords, visible_images(), prefix=prefix,
                                                 anywhere=anywhere,
                                                 limit=MAX_CHOICES if every else SUGGESTIONS)
    return [{"value": value, "images": count} for value, count in values]


@bp.get("/search/suggest/<element_id>")
async def suggest(element_id: str) -> Any:
    archive = get_archive()
    values = await suggestions(archive, element_id)
    return await render_template("_search_suggestions.html", values=values,
                                 options=request.args.get("format") == "options",
                                 selected=request.args.get("selected", ""))


@bp.get("/api/search/suggest/<element_id>")
@described("Values present for a text or drop-down field, most frequent first", tag="search", params=(
    Param("element_id", STRING, "the field's id", where="path"),
    Param("prefix", STRING, "what was typed (or the field's own id as the parameter name)"),
    Param("format", one_of("options"), "options: every value, for a drop-down")),
    answers={200: ("the values", schemas.SUGGESTIONS),
             403: ("guests may not search this site", ERROR)})
async def suggest_api(element_id: str) -> Any:
    return jsonify({"values": await suggestions(get_archive(), element_id)})


def selected_ids() -> list[str]:
    """`ids=a,b,c` or `ids=a&ids=b`: the selection, in order, without repeats."""
    ids: list[str] = []
    for value in request.args.getlist("ids"):
        ids.extend(part.strip() for part in value.split(",") if part.strip())
    ids = list(dict.fromkeys(ids))
    if not ids:
        raise BadRequest("select at least one image (ids=...)")
    if len(ids) > MAX_SELECTION:
        raise BadRequest(f"select at most {MAX_SELECTION} images at a time ({len(ids)} were given)")
    return ids


@bp.get("/search/open")
async def open_selection() -> Any:
    """The results' "open in viewer" button: the selection as a mosaic."""
    return redirect("/mosaic?" + urlencode({"ids": ",".join(selected_ids())}), 303)


def _zip_names(paths: list[Path]) -> list[str]:
    """Names inside the zip: the files' own names, made unique (`a.fits`, `a-2.fits`)."""
    taken: set[str] = set()
    names = []
    for path in paths:
        stem, suffix = path.name, ""
        for ending in (".fits.fz", ".fits.gz", ".fit.fz"):
            if path.name.lower().endswith(ending):
                stem, suffix = path.name[: -len(ending)], path.name[-len(ending):]
                break
        else:
            stem, suffix = PurePath(path.name).stem, PurePath(path.name).suffix
        name, number = stem + suffix, 1
        while name.lower() in taken:
            number += 1
            name = f"{stem}-{number}{suffix}"
        taken.add(name.lower())
        names.append(name)
    return names


@bp.get("/search/download")
async def download() -> Any:
    """The selected originals the asker may download, as one zip streamed while it is written (memory
    does not grow with the selection). Images of one file (FITS extensions) bring the file once."""
    archive = get_archive()
    user, site = current_user(), current_site()
    paths: list[Path] = []
    refused = 0
    for image_id in selected_ids():
        image = await archive.store.get_image(image_id)
        if image is None or not may(user, "view", image, site):
            continue
        if not may(user, "download", image, site):
            refused += 1
            continue
        for original in [str(item["path"]) for item in image.series] or [image.path]:
            path = Path(original)
            if path not in paths and path.is_file():
                paths.append(path)
    if not paths:
        if refused:
            raise Forbidden("you may not download the originals of the selected images")
        raise NotFound("none of the selected images has an original file to download")
    files = list(zip(_zip_names(paths), paths, strict=True))
    response = Response(zip_stream(files), mimetype="application/zip")
    response.headers["Content-Disposition"] = 'attachment; filename="imagex-selection.zip"'
    response.timeout = None
    return response


@bp.get("/api/search/footprints")
@described("The sky footprints of the images a search finds", description=(
    "Takes the parameters of `GET /api/search` (the site's search elements): the images the asker may see "
    "that have a celestial WCS and match, newest first; the sky page (`/sky`) draws them."),
    answers={200: ("the footprints, newest first", schemas.FOOTPRINTS),
             400: ("a search parameter is not valid", ERROR),
             403: ("guests may not search this site", ERROR)})
async def footprints() -> Any:
    archive = get_archive()
    search = compile_search(await archive.store.list_elements(), _args())
    if search.errors:
        raise BadRequest("; ".join(search.errors.values()))
    _guard(search)
    wanted: Query = WHOLE_SKY if search.query is None else And((WHOLE_SKY, search.query))
    total, images = await archive.store.search_images(visible_images(wanted), limit=FOOTPRINT_LIMIT,
                                                      count_at_most=views.COUNT_LIMIT)
    shown = []
    for image in images:
        sky = image.sky or {}
        corners = sky.get("corners")
        if not isinstance(corners, list) or len(corners) < 3:
            continue
        shown.append({"id": image.id, "name": image.name, "url": f"/images/{image.id}",
                      "center": [float(sky["center_ra"]), float(sky["center_dec"])],
                      "corners": [[float(ra), float(dec)] for ra, dec in corners]})
    return jsonify({"images": shown, "total": total, "limit": FOOTPRINT_LIMIT})
