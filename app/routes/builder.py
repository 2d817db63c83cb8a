"""The search builder (administrators only): create, edit, reorder, switch on/off and delete the search
form's elements, choosing keywords from those the catalog holds (with how many images have each). The
store creates and drops the keyword indexes as elements come and go. JSON twin under
`/api/admin/search-elements`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from quart import Blueprint, jsonify, render_template, request
from werkzeug.exceptions import BadRequest, NotFound
from werkzeug.exceptions import Conflict as HTTPConflict

from app.archive import Archive, get_archive
from app.exceptions import Conflict
from app.openapi import ERROR, STRING, Param, RequestBody, array, described, mapping, obj, whole
from app.routes import schemas
from app.routes.views import htmx, require_admin
from app.search.compile import element_summary
from app.search.elements import TYPE_NAMES, ElementError, element_from, missing_keywords
from app.store.records import ELEMENT_TYPES, SearchElement

bp = Blueprint("builder", __name__, url_prefix="/admin/search")
# the builder's JSON API, under /api/admin/search-elements, guarded the same way
api_bp = Blueprint("builder_api", __name__, url_prefix="/api/admin/search-elements")


bp.before_request(require_admin)
api_bp.before_request(require_admin)
ORDER_MESSAGE = 'send {"ids": [...]}: the element ids in their new order'
FORM_FIELDS = ("type", "label", "id", "keywords", "help", "enabled", "match", "autocomplete", "min", "max",
               "unit", "choices", "from_values", "radius", "mode")


async def builder_state(archive: Archive) -> dict[str, Any]:
    """The elements with what the page shows about them, the keywords present and the indexes."""
    elements = await archive.store.list_elements()
    present = await archive.store.keyword_counts()
    return {
        "elements": [{**element.public(), "describe": element_summary(element),
                      "type_name": TYPE_NAMES[element.type], "missing": missing_keywords(element, present)}
                     for element in elements],
        "keywords": sorted(present.items(), key=lambda item: (-item[1], item[0])),
        "indexed": await archive.store.indexed_keywords(),
    }


def _form_values(form: Mapping[str, str]) -> dict[str, Any]:
    values: dict[str, Any] = {name: form[name] for name in FORM_FIELDS if name in form}
    for flag in ("enabled", "autocomplete", "from_values"):
        values[flag] = form.get(flag) is not None
    return values  # the type's options sit beside the other fields, as element_from reads them


def _draft(element: SearchElement) -> dict[str, Any]:
    """An element as the form's field values."""
    options = element.options
    return {"type": element.type, "label": element.label, "id": element.id,
            "keywords": ", ".join(element.keywords), "help": element.help, "enabled": element.enabled,
            "match": options.get("match", "contains"), "autocomplete": options.get("autocomplete", True),
            "min": "" if options.get("min") is None else options["min"],
            "max": "" if options.get("max") is None else options["max"], "unit": options.get("unit", ""),
            "choices": "\n".join(options.get("choices", [])),
            "from_values": options.get("from_values", False),
            "radius": options.get("radius", "10arcmin"), "mode": options.get("mode", "overlaps")}


EMPTY_DRAFT = {"type": "text", "label": "", "id": "", "keywords": "", "help": "", "enabled": True,
               "match": "contains", "autocomplete": True, "min": "", "max": "", "unit": "", "choices": "",
               "from_values": True, "radius": "10arcmin", "mode": "overlaps"}


async def _section(status: int = 200, *, draft: Mapping[str, Any] | None = None, editing: str = "",
                   error: str = "", error_field: str = "", message: str = "") -> tuple[str, int]:
    archive = get_archive()
    template = "_builder.html" if htmx() else "admin_search.html"
    page = await render_template(template, section="search", state=await builder_state(archive),
                                 draft=draft or EMPTY_DRAFT, editing=editing, error=error,
                                 error_field=error_field, message=message, types=TYPE_NAMES,
                                 type_order=ELEMENT_TYPES)
    return page, status


async def _element(archive: Archive, element_id: str) -> SearchElement:
    for element in await archive.store.list_elements():
        if element.id == element_id:
            return element
    raise NotFound(f"there is no search element {element_id!r}")


@bp.get("")
async def page() -> Any:
    return await _section()


@bp.post("/elements")
async def create() -> Any:
    archive = get_archive()
    values = _form_values(await request.form)
    try:
        element = element_from(values, present=await archive.store.keyword_counts())
        await archive.store.add_element(element)
    except ElementError as refused:
        return await _section(422, draft=values, error=str(refused), error_field=refused.field)
    except Conflict as refused:
        return await _section(409, draft=values, error=str(refused), error_field="id")
    return await _section(201, message=f"Added “{element.label}” to the search form.")


@bp.get("/elements/<element_id>/edit")
async def edit(element_id: str) -> Any:
    element = await _element(get_archive(), element_id)
    return await _section(draft=_draft(element), editing=element.id)


@bp.post("/elements/<element_id>")
async def update(element_id: str) -> Any:
    archive = get_archive()
    old = await _element(archive, element_id)
    values = _form_values(await request.form)
    try:
        element = element_from(values, element_id=old.id, present=await archive.store.keyword_counts())
    except ElementError as refused:
        return await _section(422, draft={**values, "id": old.id}, editing=old.id, error=str(refused),
                              error_field=refused.field)
    if not await archive.store.update_element(element):
        raise NotFound(f"there is no search element {element_id!r}")
    return await _section(message=f"Saved “{element.label}”.")


@bp.post("/elements/<element_id>/delete")
async def delete(element_id: str) -> Any:
    archive = get_archive()
    element = await _element(archive, element_id)
    await archive.store.delete_element(element.id)
    return await _section(message=f"Removed “{element.label}” from the search form.")


@bp.post("/elements/<element_id>/enabled")
async def switch(element_id: str) -> Any:
    """Switch an element on or off (`enabled` present in the form: on)."""
    archive = get_archive()
    element = await _element(archive, element_id)
    element.enabled = (await request.form).get("enabled") is not None
    await archive.store.update_element(element)
    state = "shown on" if element.enabled else "hidden from"
    return await _section(message=f"“{element.label}” is {state} the search page.")


@bp.post("/elements/<element_id>/move")
async def move(element_id: str) -> Any:
    """Move an element one place `up` or `down` in the form."""
    archive = get_archive()
    direction = (await request.form).get("direction")
    if direction not in ("up", "down"):
        raise BadRequest("direction must be up or down")
    ids = [element.id for element in await archive.store.list_elements()]
    if element_id not in ids:
        raise NotFound(f"there is no search element {element_id!r}")
    at = ids.index(element_id)
    other = at - 1 if direction == "up" else at + 1
    if 0 <= other < len(ids):
        ids[at], ids[other] = ids[other], ids[at]
        await archive.store.order_elements(ids)
    return await _section()


@bp.get("/options")
async def options() -> Any:
    """The type-specific fields of the element form, when the type changes."""
    kind = request.args.get("type", "text")
    if kind not in ELEMENT_TYPES:
        raise BadRequest(f"type must be one of {', '.join(ELEMENT_TYPES)}")
    draft = {**EMPTY_DRAFT, **{name: value for name, value in request.args.items() if name in FORM_FIELDS}}
    return await render_template("_builder_options.html", draft={**draft, "type": kind}, error_field="")


# JSON ------------------------------------------------------------------------------------------------
async def _json_body() -> dict[str, Any]:
    body = await request.get_json(force=True, silent=True)
    if not isinstance(body, dict):
        raise BadRequest("send the element as a JSON object")
    return body


def _refused(error: ElementError) -> BadRequest:
    return BadRequest(f"{error.field}: {error}")


@api_bp.get("")
@described("The search form's fields in order, the catalog's keywords and the indexed ones", access="admin",
           tag="admin", answers={200: ("the builder's state", obj({
               "elements": array(schemas.ELEMENT), "keywords": mapping(whole(minimum=0)),
               "indexed": array(STRING)}))})
async def list_api() -> Any:
    state = await builder_state(get_archive())
    return jsonify({"elements": state["elements"], "keywords": dict(state["keywords"]),
                    "indexed": state["indexed"]})


@api_bp.post("")
@described("Add a field to the search form", access="admin", tag="admin",
           body=RequestBody(schemas.ELEMENT_BODY),
           answers={201: ("the field", schemas.ELEMENT), 409: ("the id is taken", ERROR)})
async def create_api() -> Any:
    archive = get_archive()
    try:
        element = element_from(await _json_body(), present=await archive.store.keyword_counts())
        await archive.store.add_element(element)
    except ElementError as error:
        raise _refused(error) from None
    except Conflict as error:
        raise HTTPConflict(str(error)) from None
    return jsonify((await _element(archive, element.id)).public()), 201


@api_bp.put("/<element_id>")
@described("Replace a field of the search form (its id stays)", access="admin", tag="admin",
           params=(Param("element_id", STRING, "the field's id", where="path"),),
           body=RequestBody(schemas.ELEMENT_BODY),
           answers={200: ("the field", schemas.ELEMENT)})
async def update_api(element_id: str) -> Any:
    archive = get_archive()
    old = await _element(archive, element_id)
    body = await _json_body()
    if body.get("id", old.id) != old.id:
        raise BadRequest("id cannot change: delete the element and add a new one")
    try:
        element = element_from(body, element_id=old.id, present=await archive.store.keyword_counts())
    except ElementError as error:
        raise _refused(error) from None
    await archive.store.update_element(element)
    return jsonify((await _element(archive, element_id)).public())


@api_bp.delete("/<element_id>")
@described("Remove a field from the search form", access="admin", tag="admin",
           params=(Param("element_id", STRING, "the field's id", where="path"),),
           answers={200: ("the removed field's id", obj({"deleted": STRING}, closed=True))})
async def delete_api(element_id: str) -> Any:
    archive = get_archive()
    element = await _element(archive, element_id)
    await archive.store.delete_element(element.id)
    return jsonify({"deleted": element.id})


@api_bp.post("/order")
@described("Reorder the search form's fields", access="admin", tag="admin",
           body=RequestBody({**obj({"ids": {**array(STRING), "x-message": ORDER_MESSAGE}}),
                             "x-message": ORDER_MESSAGE}),
           answers={200: ("the fields in their new order", obj({"elements": array(schemas.ELEMENT)})),
                    404: ("an id names no field", ERROR)})
async def order_api() -> Any:
    archive = get_archive()
    body = await _json_body()
    ids = body.get("ids")
    if not isinstance(ids, list) or not all(isinstance(item, str) for item in ids):
        raise BadRequest(ORDER_MESSAGE)
    known = {element.id for element in await archive.store.list_elements()}
    unknown = [item for item in ids if item not in known]
    if unknown:
        raise NotFound(f"there is no search element {unknown[0]!r}")
    await archive.store.order_elements(ids)
    return jsonify({"elements": [element.public() for element in await archive.store.list_elements()]})
