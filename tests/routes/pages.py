"""Small readers of the pages and answers route tests look at: a response's text, an element's attribute,
a Content-Security-Policy's directives, a Deep Zoom descriptor's facts."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from html import unescape
from typing import Any

from app.store.records import ImageRecord

Ingested = Callable[..., Awaitable[ImageRecord]]  # the `add_image` fixture (tests/routes/conftest.py)


def directives(policy: str) -> dict[str, str]:
    """A Content-Security-Policy as {directive: sources}."""
    parts = [part.strip().split(None, 1) for part in policy.split(";") if part.strip()]
    return {part[0]: part[1] if len(part) > 1 else "" for part in parts}


async def text_of(response: Any) -> str:
    return str(await response.get_data(as_text=True))


def attribute(html: str, element_id: str, name: str) -> str:
    """The (unescaped) value of attribute `name` on the element with id `element_id`."""
    match = re.search(rf'<[a-z]+[^>]*\bid="{re.escape(element_id)}"[^>]*>', html, re.S)
    assert match, f"no element with id {element_id!r}"
    value = re.search(rf'\b{re.escape(name)}="([^"]*)"', match.group(0))
    assert value, f"element {element_id!r} has no {name!r}"
    return unescape(value.group(1))


def dzi_facts(xml: str) -> dict[str, Any]:
    """Format, tile size, overlap and size of a Deep Zoom descriptor."""
    from xml.etree import ElementTree

    root = ElementTree.fromstring(xml)
    namespace = "{http://schemas.microsoft.com/deepzoom/2008}"
    assert root.tag == namespace + "Image"
    size = root.find(namespace + "Size")
    assert size is not None
    return {"format": root.get("Format"), "tile_size": int(root.get("TileSize", "0")),
            "overlap": int(root.get("Overlap", "0")), "width": int(size.get("Width", "0")),
            "height": int(size.get("Height", "0"))}
