"""Search form values -> the store's neutral query. Each element's value becomes one condition that is the
OR over its keywords; the elements' conditions are AND-ed. Nothing typed by a user reaches the store as
query text: values become typed parameters of query nodes.

Parameters, by element type (`ID` is the element's id):
- text and drop-down: `ID=value`
- number range: `ID_min=`, `ID_max=`
- date range: `ID_from=`, `ID_to=` (calendar dates, whole UTC days, inclusive; or ISO date-times)
- cone: `ID_ra=`, `ID_dec=` (degrees or sexagesimal), `ID_radius=` (arcsec/arcmin/deg; the element's
  default when empty), `ID_frame=icrs|galactic`, `ID_mode=overlaps|contains`
and `sort=` (`created`, `name`, `owner`, `size`, or the id of a text, number, drop-down or date element),
`order=asc|desc`, `page=`, `per_page=`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from app.search.dates import date_bounds
from app.search.elements import RESERVED, TYPE_NAMES
from app.search.numbers import NotFinite, number_of
from app.search.positions import parse_cone
from app.store.query import (
    MAX_TEXT,
    ORDER_FIELDS,
    And,
    Compare,
    Cone,
    DateRange,
    Or,
    Order,
    Query,
    Scalar,
    TextMatch,
    TextMode,
    any_in_range,
)
from app.store.records import SearchElement

SUFFIXES = {"text": ("",), "select": ("",), "number": ("_min", "_max"), "date": ("_from", "_to"),
            "cone": ("_ra", "_dec", "_radius", "_frame", "_mode")}
SORTABLE = ("text", "number", "select", "date")


@dataclass
class Search:
    """A search as the page and the API understand it: the query (None: no condition), the values given
    (echoed back into the form), errors by parameter, and the ordering."""

    query: Query | None = None
    values: dict[str, str] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    order: Order | None = None
    sort: str = "created"
    descending: bool = True
    used: list[SearchElement] = field(default_factory=list)

    @property
    def filtering(self) -> bool:
        return bool(self.used)


def parameters(element: SearchElement) -> list[str]:
    return [element.id + suffix for suffix in SUFFIXES[element.type]]


def parse_number(text: str) -> Scalar:
    """A form value as a number when it is one (`10`, `1.5e3`), else the text (`nan` and `inf` too: a
    number element then refuses it as not a number)."""
    try:
        number = number_of(text)
    except NotFinite:
        return text
    return text if number is None else number


def compile_search(elements: Sequence[SearchElement], args: Mapping[str, str]) -> Search:
    """Read the search parameters in `args` against the enabled `elements`."""
    search = Search()
    enabled = [element for element in elements if element.enabled]
    known = {name: element for element in enabled for name in parameters(element)}
    disabled = {name: element for element in elements if not element.enabled for name in parameters(element)}
    for name in args:
        if name in known or name in RESERVED:
            continue
        if name in disabled:
            search.errors[name] = f"the search element {disabled[name].id!r} is switched off"
        else:
            search.errors[name] = f"there is no search element {name!r}"
    parts: list[Query] = []
    for element in enabled:
        given = {name: args.get(name, "").strip() for name in parameters(element)}
        search.values.update({name: value for name, value in given.items() if value})
        if not any(given[element.id + suffix] for suffix in SUFFIXES[element.type]
                   if suffix not in ("_radius", "_frame", "_mode")):
            continue
        try:
            part = _condition(element, given)
        except ValueError as error:
            search.errors[_field_at_fault(element, str(error))] = f"{element.label}: {error}"
            continue
        parts.append(part)
        search.used.append(element)
    if parts:
        search.query = parts[0] if len(parts) == 1 else And(tuple(parts))
    _read_order(search, enabled, args)
    return search


def _field_at_fault(element: SearchElement, message: str) -> str:
    for suffix in sorted(SUFFIXES[element.type], key=len, reverse=True):  # "radius" before "ra"
        word = suffix.lstrip("_")
        if word and message.lower().startswith(word):
            return element.id + suffix
    return element.id + SUFFIXES[element.type][0]


def _condition(element: SearchElement, given: Mapping[str, str]) -> Query:
    keywords = element.keywords
    if element.type == "text":
        text = given[element.id]
        if len(text) > MAX_TEXT:
            raise ValueError(f"search text is limited to {MAX_TEXT} characters")
        mode: TextMode = "prefix" if element.options.get("match") == "prefix" else "contains"
        return _any([TextMatch(keyword, text, mode) for keyword in keywords])
    if element.type == "select":
        value = given[element.id]
        choices = element.options.get("choices") or []
        if not element.options.get("from_values") and value not in choices:
            raise ValueError(f"{value!r} is not one of the choices")
        typed = parse_number(value)
        options: list[Query] = [Compare(keyword, "eq", value) for keyword in keywords]
        if not isinstance(typed, str):
            options += [Compare(keyword, "eq", typed) for keyword in keywords]
        return _any(options)
    if element.type == "number":
        bounds: list[float | None] = []
        for suffix in ("_min", "_max"):
            text = given[element.id + suffix]
            if not text:
                bounds.append(None)
                continue
            number = parse_number(text)
            if isinstance(number, str):
                raise ValueError(f"{suffix[1:]} {text!r} is not a number")
            bounds.append(float(number))
        low, high = bounds
        if low is not None and high is not None and low > high:
            raise ValueError(f"min ({given[element.id + '_min']}) is greater than max "
                             f"({given[element.id + '_max']})")
        return any_in_range(keywords, low, high)
    if element.type == "date":
        start, end = date_bounds(given[element.id + "_from"], given[element.id + "_to"], ("from", "to"))
        return DateRange(tuple(keywords), start, end)
    if element.type == "cone":
        ra, dec = given[element.id + "_ra"], given[element.id + "_dec"]
        if not ra or not dec:
            raise ValueError("a sky position needs both RA and Dec")
        radius = given[element.id + "_radius"] or str(element.options.get("radius", "10arcmin"))
        cone_mode = given[element.id + "_mode"] or str(element.options.get("mode", "overlaps"))
        frame = (given[element.id + "_frame"] or "icrs").lower()
        cone = parse_cone(ra, dec, radius, frame, cone_mode)
        return Cone(cone.ra, cone.dec, cone.radius, cone.mode)
    raise ValueError(f"unknown element type {element.type!r}")


def _any(parts: list[Query]) -> Query:
    return parts[0] if len(parts) == 1 else Or(tuple(parts))


def _read_order(search: Search, elements: Sequence[SearchElement], args: Mapping[str, str]) -> None:
    sort = args.get("sort", "").strip() or "created"
    direction = args.get("order", "").strip().lower()
    if direction not in ("", "asc", "desc"):
        search.errors["order"] = "order must be asc or desc"
        direction = ""
    by_id = {element.id: element for element in elements if element.type in SORTABLE}
    if sort in by_id:
        element = by_id[sort]
        search.descending = direction == "desc"
        search.order = Order(keywords=tuple(element.keywords), dates=element.type == "date",
                             numbers=element.type == "number", descending=search.descending)
    elif sort in ORDER_FIELDS:
        search.descending = direction != "asc" if sort in ("created", "size") else direction == "desc"
        search.order = Order(field=sort, descending=search.descending)
    else:
        choices = ", ".join([*ORDER_FIELDS, *by_id])
        search.errors["sort"] = f"cannot sort by {sort!r}: choose one of {choices}"
        sort = "created"
        search.order = Order()
    search.sort = sort


def element_summary(element: SearchElement) -> str:
    """`Exposure (number range over EXPTIME or EXPOSURE)`: what an element searches, for pages."""
    over = " or ".join(element.keywords) if element.keywords else "the sky footprint"
    return f"{element.label} ({TYPE_NAMES[element.type]} over {over})"
