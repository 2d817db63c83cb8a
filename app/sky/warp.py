"""Images drawn resampled into a mosaic's frame, for those no set of similarities places within a pixel.

OpenSeadragon draws an image only by a similarity (position, one scale, a rotation, a flip); `app.sky.mosaic`
cuts an image into up to 8x8 pieces, each with its own. That absorbs rotation, scale and mild distortion,
but not non-square pixels or axes that are not at right angles (a raw HST/ACS FLT: pixels 0.028" by 0.025",
axes 84 degrees apart), nor wide-field projections against a TAN frame far from its centre: there the
pieces stay pixels off. Such an image is drawn instead as a layer of its own in the frame's pixels, its
tiles rendered here: every tile pixel's frame position is carried through the sky (astropy, exactly at a grid
of nodes every `STEP` pixels, bilinearly between them, far below a pixel for any smooth WCS) to the image's
pixels, and the image's display picture (any interval, stretch and colormap, as its dynamic tiles) is
sampled there, transparent where the image has no pixel (`app.tiles.warped` renders the tiles).

The frame a layer is drawn in is kept as a small JSON file named by its content's hash under
`<data>/frames/` (`save_frame`), so a tile URL names it by the hash alone; the image's tile token guards its
pixels as for every other tile.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import secrets
from pathlib import Path

import numpy as np

from app.sky.mosaic import Sheet, map_to_reference, sheet_wcs

FRAMES = "frames"
STEP = 16  # tile pixels between two nodes where the mapping is computed exactly
EDGE_POINTS = 65  # points per edge of an image when its box in the frame is measured
_KEY = re.compile(r"[0-9a-f]{32}")


def frame_key(frame: Sheet) -> str:
    """The hash that names a frame: its header and size."""
    text = json.dumps({"header": frame.header, "width": frame.width, "height": frame.height},
                      sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def save_frame(data: Path, frame: Sheet) -> str:
    """Keep the frame under `<data>/frames/` (once: the name is its content's hash); its key."""
    key = frame_key(frame)
    path = data / FRAMES / f"{key}.json"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        text = json.dumps({"header": frame.header, "width": frame.width, "height": frame.height},
                          default=str)
        scratch = path.with_name(f".{key}.{secrets.token_hex(4)}")
        scratch.write_text(text)
        os.replace(scratch, path)
    return key


def load_frame(data: Path, key: str) -> Sheet | None:
    """The frame saved under `key`, or None when there is none (or the key is not one)."""
    if not _KEY.fullmatch(key):
        return None
    try:
        stored = json.loads((data / FRAMES / f"{key}.json").read_text())
    except (FileNotFoundError, ValueError):
        return None
    return Sheet(stored["header"], int(stored["width"]), int(stored["height"]), key=f"frame:{key}")


def box_in_frame(frame: Sheet, sheet: Sheet) -> tuple[int, int, int, int] | None:
    """(left, top, width, height) in whole frame display pixels of a box holding the image's edges; None
    when part of its edge has no place in the frame."""
    frame_wcs, wcs = sheet_wcs(frame), sheet_wcs(sheet)
    if frame_wcs is None or wcs is None:
        return None
    steps = np.linspace(0.0, 1.0, EDGE_POINTS)
    w, h = float(sheet.width), float(sheet.height)
    us = np.concatenate([steps * w, steps * w, np.zeros(EDGE_POINTS), np.full(EDGE_POINTS, w)])
    vs = np.concatenate([np.zeros(EDGE_POINTS), np.full(EDGE_POINTS, h), steps * h, steps * h])
    fx, fy = map_to_reference(frame_wcs, frame.height, wcs, sheet.height, us, vs)
    if not (np.all(np.isfinite(fx)) and np.all(np.isfinite(fy))):
        return None
    left, top = math.floor(float(np.min(fx))) - 1, math.floor(float(np.min(fy))) - 1
    right, bottom = math.ceil(float(np.max(fx))) + 1, math.ceil(float(np.max(fy))) + 1
    return left, top, right - left, bottom - top


def _nodes(size: int) -> np.ndarray:
    """Tile pixel positions where the mapping is computed exactly: every STEP pixels and the last."""
    return np.unique(np.concatenate([np.arange(0, size, STEP), [size - 1]])).astype(float)


def _between(nodes: np.ndarray, values: np.ndarray, size: int) -> np.ndarray:
    """Values known at `nodes` (along the last axis) linearly interpolated at 0 .. size-1."""
    positions = np.arange(size, dtype=float)
    index = np.clip(np.searchsorted(nodes, positions, side="right") - 1, 0, len(nodes) - 2)
    span = nodes[index + 1] - nodes[index]
    weight = (positions - nodes[index]) / np.where(span > 0, span, 1.0)
    return np.asarray(values[..., index] * (1 - weight) + values[..., index + 1] * weight)


def image_positions(frame: Sheet, sheet: Sheet, left: float, top: float, shrink: int, width: int,
                    height: int) -> tuple[np.ndarray, np.ndarray]:
    """For each pixel of a `width` x `height` block of frame pixels at `shrink` (its top-left pixel at
    frame display position `left`, `top` in full-resolution pixels), the image's full-resolution display
    coordinates (u, v) of its centre: exact at the nodes, bilinear between; NaN where the sky has no place
    on the image."""
    frame_wcs, wcs = sheet_wcs(frame), sheet_wcs(sheet)
    assert frame_wcs is not None and wcs is not None
    cols, rows = _nodes(width), _nodes(height)
    grid_x, grid_y = np.meshgrid(cols, rows)
    fu = left + (grid_x + 0.5) * shrink
    fv = top + (grid_y + 0.5) * shrink
    u, v = map_to_reference(wcs, sheet.height, frame_wcs, frame.height, fu.ravel(), fv.ravel())
    u, v = np.asarray(u).reshape(grid_x.shape), np.asarray(v).reshape(grid_x.shape)
    # along rows, then along columns
    u = _between(rows, _between(cols, u, width).T, height).T
    v = _between(rows, _between(cols, v, width).T, height).T
    return u, v


def sample(picture: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Bilinear samples of `picture` (rows, columns, bands) at array positions (x, y), pixel centres at
    whole numbers; positions are clipped to the picture (the caller masks what lies outside)."""
    rows, columns = picture.shape[:2]
    x = np.clip(x, 0, columns - 1)
    y = np.clip(y, 0, rows - 1)
    x0 = np.clip(np.floor(x).astype(int), 0, max(columns - 2, 0))
    y0 = np.clip(np.floor(y).astype(int), 0, max(rows - 2, 0))
    x1, y1 = np.minimum(x0 + 1, columns - 1), np.minimum(y0 + 1, rows - 1)
    fx, fy = (x - x0)[..., None], (y - y0)[..., None]
    values = picture.astype(np.float32)
    top = values[y0, x0] * (1 - fx) + values[y0, x1] * fx
    bottom = values[y1, x0] * (1 - fx) + values[y1, x1] * fx
    return np.asarray(np.clip(np.round(top * (1 - fy) + bottom * fy), 0, 255), dtype=np.uint8)
