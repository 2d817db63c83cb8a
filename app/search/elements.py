"""Search elements: the fields of the search form that administrators build. Each has a type, the header
keywords it searches (a primary keyword and alternates, OR-ed when searching) and options by type.

The JSON form (what `/api/admin/search-elements` takes and returns, and what the store keeps):

    {"id": "obsdate", "type": "date", "label": "Observation date", "keywords": ["DATE", "DATETIME",
     "DATE-OBS"], "help": "UTC calendar dates", "enabled": true, "options": {}}
    {"id": "exptime", "type": "number", "label": "Exposure", "keywords": ["EXPTIME", "EXPOSURE"],
     "options": {"min": 0, "max": 3600, "unit": "s"}}
    {"id": "object", "type": "text", "label": "Object", "keywords": ["OBJECT", "TARGNAME"],
     "options": {"match": "contains", "autocomplete": true}}
    {"id": "filter", "type": "select", "label": "Filter", "keywords": ["FILTER", "FILTNAM1"],
     "options": {"choices": ["B", "V", "R"], "from_values": false}}
    {"id": "sky", "type": "cone", "label": "Sky position", "keywords": [],
     "options": {"radius": "10arcmin", "mode": "overlaps"}}
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

from app.search.positions import parse_radius
from app.store.footprint import CONE_MODES
from app.store.query import MAX_DATE_KEYWORDS, TEXT_MODES, check_keyword
from app.store.records import ELEMENT_TYPES, SearchElement

ELEMENT_ID = re.compile(r"^[a-z][a-z0-9_]{0,31}$")
# Query parameters of the search page itself: no element may take these names.
RESERVED = frozenset({"page", "per_page", "sort", "order", "ids", "format", "csrf_token", "q"})
MAX_LABEL = 80
MAX_HELP = 300
MAX_CHOICES = 200
MAX_CHOICE = 100
OPTIONS: dict[str, tuple[str, ...]] = {"text": ("match", "autocomplete"), "number": ("min", "max", "unit"),
                                       "date": (), "select": ("choices", "from_values"),
                                       "cone": ("radius", "mode")}
TYPE_NAMES = {"text": "text", "number": "number range", "date": "date range", "select": "drop-down",
              "cone": "sky cone"}


class ElementError(ValueError):
    """A bad element definition: `field` names the form field at fault."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


def slug(label: str) -> str:
    """An element id made from its label: `Exposure time (s)` -> `exposure_time_s`."""
    text = re.sub(r"[^a-z0-9]+", "_", label.lower()).strip("_")
    if not text or not text[0].isalpha():
        text = "f_" + text
    return text[:32].rstrip("_")


def parse_keywords(value: object, *, present: Mapping[str, int] | None = None) -> list[str]:
    """Keywords from a list or a comma/space-separated string, primary first, duplicates dropped. A keyword
    typed in lower case takes the catalog's spelling when only that exists (`exptime` -> `EXPTIME`)."""
    if isinstance(value, str):
        items = [item for item in re.split(r"[,\s]+", value) if item]
    elif isinstance(value, list) and all(isinstance(item, str) for item in value):
        items = [item.strip() for item in value if item.strip()]
    else:
        raise ElementError("keywords", "keywords must be a list of header keywords")
    keywords: list[str] = []
    for item in items:
        try:
            check_keyword(item)
        except ValueError:
            raise ElementError("keywords",
                               f"{item!r} is not a header keyword (letters, digits, - _ . [ ])") from None
        if present is not None and item not in present and item.upper() in present:
            item = item.upper()
        if item not in keywords:
            keywords.append(item)
    if len(keywords) > MAX_DATE_KEYWORDS:
        raise ElementError("keywords", f"at most {MAX_DATE_KEYWORDS} keywords per element")
    return keywords


def _text(data: Mapping[str, Any], name: str, limit: int, *, required: bool = False) -> str:
    value = data.get(name, "")
    if value is None:
        value = ""
    if not isinstance(value, str):
        raise ElementError(name, f"{name} must be text")
    value = value.strip()
    if required and not value:
        raise ElementError(name, f"{name} is required")
    if len(value) > limit:
        raise ElementError(name, f"{name} is limited to {limit} characters")
    return value


def _flag(data: Mapping[str, Any], name: str, default: bool) -> bool:
    value = data.get(name, default)
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("on", "true", "1", "yes"):
        return True
    if isinstance(value, str) and value.lower() in ("", "off", "false", "0", "no"):
        return False
    raise ElementError(name, f"{name} must be true or false")


def _number(value: object, name: str) -> float | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, bool):
        raise ElementError(name, f"{name} must be a number")
    try:
        number = float(value) if isinstance(value, int | float | str) else math.nan
    except ValueError:
        raise ElementError(name, f"{name} must be a number, not {value!r}") from None
    if not math.isfinite(number):
        raise ElementError(name, f"{name} must be a finite number")
    return int(number) if number.is_integer() and abs(number) < 2**53 else number


def _options(kind: str, options: Mapping[str, Any]) -> dict[str, Any]:
    """The options of one element type, checked; unknown options are refused so typos are seen."""
    allowed = OPTIONS[kind]
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise ElementError("options", f"a {TYPE_NAMES[kind]} element has no option {unknown[0]!r}")
    if kind == "text":
        match = options.get("match", "contains")
        if match not in TEXT_MODES:
            raise ElementError("match", f"match must be one of {', '.join(TEXT_MODES)}")
        return {"match": match, "autocomplete": _flag(options, "autocomplete", True)}
    if kind == "number":
        low, high = _number(options.get("min"), "min"), _number(options.get("max"), "max")
        if low is not None and high is not None and low > high:
            raise ElementError("max", f"min ({low}) is greater than max ({high})")
        return {"min": low, "max": high, "unit": _text(options, "unit", 20)}
    if kind == "select":
        choices = options.get("choices", [])
        if isinstance(choices, str):
            choices = [line.strip() for line in choices.splitlines()]
        if not isinstance(choices, list) or not all(isinstance(item, str | int | float) and
                                                    not isinstance(item, bool) for item in choices):
            raise ElementError("choices", "choices must be a list of values")
        cleaned = list(dict.fromkeys(str(item).strip() for item in choices if str(item).strip()))
        if len(cleaned) > MAX_CHOICES or any(len(item) > MAX_CHOICE for item in cleaned):
            raise ElementError("choices", f"at most {MAX_CHOICES} choices of {MAX_CHOICE} characters")
        from_values = _flag(options, "from_values", not cleaned)
        if not cleaned and not from_values:
            raise ElementError("choices", "enter the choices, or fill them from the values present")
        return {"choices": cleaned, "from_values": from_values}
    if kind == "cone":
        radius = options.get("radius", "10arcmin")
        if not isinstance(radius, str):
            radius = str(radius)
        try:
            parse_radius(radius)
        except ValueError as error:
            raise ElementError("radius", str(error)) from None
        mode = options.get("mode", "overlaps")
        if mode not in CONE_MODES:
            raise ElementError("mode", f"mode must be one of {', '.join(CONE_MODES)}")
        return {"radius": radius.strip(), "mode": mode}
    return {}


def element_from(data: Mapping[str, Any], *, element_id: str | None = None,
                 present: Mapping[str, int] | None = None) -> SearchElement:
    """A checked element from its JSON form (or the builder's form fields, where the options sit beside
    the other fields). `element_id` keeps an existing element's id; a new one without an id gets one made
    from its label. Raises ElementError naming the field at fault."""
    kind = data.get("type")
    if kind not in ELEMENT_TYPES:
        raise ElementError("type", f"type must be one of {', '.join(ELEMENT_TYPES)}")
    label = _text(data, "label", MAX_LABEL, required=True)
    if element_id is None:
        raw_id = data.get("id") or slug(label)
        if not isinstance(raw_id, str) or not ELEMENT_ID.fullmatch(raw_id):
            raise ElementError("id", "id must start with a letter and hold only a-z, 0-9 and _ "
                               "(at most 32 characters)")
        element_id = raw_id
    if element_id in RESERVED:
        raise ElementError("id", f"{element_id!r} is reserved for the search page; choose another id")
    keywords = [] if kind == "cone" else parse_keywords(data.get("keywords", []), present=present)
    if kind != "cone" and not keywords:
        raise ElementError("keywords", "name the header keyword to search (and any alternates)")
    options = data.get("options")
    if options is None:
        # the builder's form: the type's options sit beside the other fields
        options = {name: data[name] for name in OPTIONS[str(kind)] if name in data}
    if not isinstance(options, Mapping):
        raise ElementError("options", "options must be an object")
    return SearchElement(id=element_id, type=str(kind), label=label, keywords=keywords,
                         help=_text(data, "help", MAX_HELP), enabled=_flag(data, "enabled", True),
                         options=_options(str(kind), options))


def missing_keywords(element: SearchElement, present: Mapping[str, int]) -> list[str]:
    """The element's keywords that no catalogued image has (the builder warns about them)."""
    return [keyword for keyword in element.keywords if keyword not in present]
