"""Whether an image can be shown yet: its pyramids built, still to come (shown from its original
meanwhile), not to be had (they could not be built), or its pixels not read at all (catalogued from its
header alone: app/ingest/catalogue.py). What every page, tile route and JSON answer asks of it."""

from __future__ import annotations

from app.exceptions import TilingFailed
from app.store.records import ImageRecord


def tiling_state(image: ImageRecord) -> dict[str, str] | None:
    """None once the image's pyramids are built; while a two-phase ingest has catalogued it and its
    pyramids are still to come, `{"state": "pending"}` (or `"reading"`: catalogued from its header
    alone, app/ingest/catalogue.py, its pixels not read yet), or `{"state": "failed", "error": why}`."""
    tiling = image.display.get("tiling")
    if not isinstance(tiling, dict):
        return None
    error = str(tiling.get("error") or "")
    if error:
        return {"state": "failed", "error": error}
    return {"state": "reading" if image.is_reading() else "pending", "error": ""}


def unviewable(image: ImageRecord) -> str | None:
    """Why the image cannot be shown (its pyramids could not be built, or its pixels are still being
    read), or None: it can, from its pyramids or, while they are built, from its original."""
    state = tiling_state(image)
    if state is not None and state["error"]:
        return "its pyramids could not be built"
    if state is not None and state["state"] == "reading":
        return "it was catalogued from its header a moment ago, and its pixels are still being read"
    return None


def refuse_unviewable(image: ImageRecord) -> None:
    """Refuse what needs an image's pixels when they cannot be had: 409, saying why. (While its pyramids
    are still to come, its values are read from the original: `plane_science`.)"""
    state = tiling_state(image)
    if state is not None and state["error"]:
        raise TilingFailed(f"the pyramids of image {image.id} could not be built: {state['error']}")
    if state is not None and state["state"] == "reading":
        raise TilingFailed(f"image {image.id} was catalogued from its header a moment ago and its pixels "
                           "are still being read: try again in a few seconds")
