"""How the MongoDB catalog writes images into documents: header keywords encoded as field names, the typed
dates, footprint cells and folded texts beside them."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from app.store import mongoquery
from app.store.dates import DATES_VERSION
from app.store.footprint import CELLS_VERSION
from app.store.mongo.connection import Doc
from app.store.mongoquery import field_name, keyword_of_field
from app.store.records import ImageRecord, Indexed
from app.store.rows import from_doc, to_doc


def _encode_keys(values: dict[str, Any]) -> Doc:
    return {field_name(key): value for key, value in values.items()}


def decode_keys(values: Doc) -> dict[str, Any]:
    return {keyword_of_field(key): value for key, value in values.items()}


def dates_doc(dates: Mapping[str, float]) -> list[Doc]:
    return [{"k": keyword, "mjd": mjd} for keyword, mjd in dates.items()]


def image_doc(indexed: Indexed) -> Doc:
    """An image's document, with its typed dates and cone-search cells."""
    image = indexed.record
    return {**to_doc(image), "header": _encode_keys(image.header), "comments": _encode_keys(image.comments),
            "folded": mongoquery.folded_texts(image.header), "dates": dates_doc(indexed.dates),
            "cells": indexed.cells, "cells_version": CELLS_VERSION, "dates_version": DATES_VERSION}


def image_from_doc(doc: Doc) -> ImageRecord:
    return from_doc(ImageRecord, {**doc, "header": decode_keys(doc["header"]),
                                  "comments": decode_keys(doc.get("comments") or {})})
