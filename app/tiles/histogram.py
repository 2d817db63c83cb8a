"""The pixel histogram of an image: what the display controls draw, with the interval's limits (the cuts)
on it.

It is counted on the same evenly spread sample of finite values that the scaling measures its limits on
(`scaling.sample`), in `BINS` equal bins over the robust range of the values (their 0.05 to 99.95
percentiles, widened a little on each side and never past the data), with the values outside that range
counted as `below` and `above`: a few wild pixels would otherwise squeeze everything else into one bin.
Whole-number data get bins of whole-number width centred on whole numbers (so no bin catches one value
more than its neighbours), and so at most `BINS` of them.

Ingest stores it in the image's `display` record (`display["histogram"]`). Images ingested before, and the
planes of a cube other than the first, get theirs from the science pyramid on first request, kept in
`display/histogram.json` beside the plane's dynamic tiles.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import secrets
from pathlib import Path
from typing import Any

import numpy as np

BINS = 256
ROBUST_PERCENT = (0.05, 99.95)
WIDEN = 0.05  # of the robust range's width, added on each side (within the data's own range)
FILE = "histogram.json"
KEYS = ("lo", "hi", "counts", "below", "above")


def of(values: np.ndarray) -> dict[str, Any]:
    """The histogram of `values` (NaN and infinities left out): `lo` and `hi`, the first and last bin
    edges; `counts`, the counts of equal bins between them (BINS, or fewer for whole numbers; the last bin
    holds `hi`); `below` and `above`, the values outside."""
    finite = np.asarray(values, dtype=np.float64).ravel()
    finite = finite[np.isfinite(finite)]
    if finite.size == 0:
        return {"lo": 0.0, "hi": 1.0, "counts": [0] * BINS, "below": 0, "above": 0}
    low, high, bins = _bins(finite)
    counts, _ = np.histogram(finite, bins=bins, range=(low, high))
    return {"lo": low, "hi": high, "counts": [int(count) for count in counts],
            "below": int(np.count_nonzero(finite < low)), "above": int(np.count_nonzero(finite > high))}


def _bins(finite: np.ndarray) -> tuple[float, float, int]:
    """The first and last edges and the number of bins."""
    smallest, largest = float(finite.min()), float(finite.max())
    low, high = (float(v) for v in np.percentile(finite, ROBUST_PERCENT))
    margin = (high - low) * WIDEN
    low, high = max(smallest, low - margin), min(largest, high + margin)
    if np.array_equal(finite, np.round(finite)):  # whole numbers: whole-number bins centred on them
        first, last = math.floor(low), math.ceil(high)
        width = max(1, math.ceil((last - first + 1) / BINS))
        bins = math.ceil((last - first + 1) / width)
        return first - 0.5, first - 0.5 + width * bins, bins
    if not high > low:  # one value (or a spread a float cannot split): one unit around it
        return low - 0.5, low + 0.5, BINS
    return low, high, BINS


def valid(stored: object) -> bool:
    """Whether a stored histogram (from the catalog or a cache file) has the shape `of` gives."""
    if not isinstance(stored, dict) or any(key not in stored for key in KEYS):
        return False
    counts, edges = stored["counts"], (stored["lo"], stored["hi"])
    if not isinstance(counts, list) or not 1 <= len(counts) <= BINS or not all(
            isinstance(count, int) and not isinstance(count, bool) for count in counts):
        return False
    return all(isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) for v in edges) \
        and edges[0] < edges[1]

def of_plane(folder: str, science_path: str) -> dict[str, Any]:
    """In a pool process: the histogram of a plane whose dynamic tiles live in `folder` (the generation
    folder, or `planes/<k>` in it), read from `display/histogram.json` or counted on the science
    pyramid's sample (`render.sample_of`) and kept there."""
    from app.tiles.render import DISPLAY, make_below, sample_of

    cache = Path(folder) / DISPLAY / FILE
    with contextlib.suppress(FileNotFoundError, ValueError):
        stored = json.loads(cache.read_bytes())
        if valid(stored):
            return {key: stored[key] for key in KEYS}
    counted = of(sample_of(science_path))
    with contextlib.suppress(FileNotFoundError):  # not when the image was deleted or revoked meanwhile
        make_below(Path(folder), cache.parent)
        temporary = cache.with_name(f".{FILE}.{secrets.token_hex(6)}")
        temporary.write_text(json.dumps(counted))
        os.replace(temporary, cache)
    return counted
