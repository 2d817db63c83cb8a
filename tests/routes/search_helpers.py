"""The search elements the search page tests configure: a date, a number, text, a drop-down and a cone."""

from __future__ import annotations

ELEMENTS = [
    {"id": "obsdate", "type": "date", "label": "Observation date",
     "keywords": ["DATE", "DATETIME", "DATE-OBS", "MJD-OBS"]},
    {"id": "exptime", "type": "number", "label": "Exposure", "keywords": ["EXPTIME", "EXPOSURE"],
     "options": {"unit": "s"}},
    {"id": "object", "type": "text", "label": "Object", "keywords": ["OBJECT", "TARGNAME"]},
    {"id": "filter", "type": "select", "label": "Filter", "keywords": ["FILTER"],
     "options": {"choices": ["B", "V", "R"]}},
    {"id": "sky", "type": "cone", "label": "Sky position", "options": {"radius": "10arcmin"}},
]
