"""Colormaps for dynamic tiles: 256-entry tables from grey levels to RGB.

The perceptually uniform maps (viridis, magma, inferno) are given by nine evenly spaced anchor colours of
the published (public-domain) maps and interpolated linearly between them; heat, cool and rainbow by their
usual formulas. Each map can be inverted with the suffix `_r`.
"""

from __future__ import annotations

import functools

import numpy as np

from app.names import COLORMAPS

NAMES = COLORMAPS
INVERTED = "_r"

_ANCHORS: dict[str, tuple[str, ...]] = {
    "viridis": ("440154", "472d7b", "3b528b", "2c728e", "21918c", "28ae80", "5ec962", "addc30", "fde725"),
    "magma": ("000004", "1c1044", "4f127b", "812581", "b5367a", "e55064", "fb8761", "fec287", "fcfdbf"),
    "inferno": ("000004", "1f0c48", "550f6d", "88226a", "ba3655", "e35933", "f98c0a", "f9c932", "fcffa4"),
}


def is_colormap(name: str) -> bool:
    """True for a known colormap name, inverted or not."""
    return name.removesuffix(INVERTED) in NAMES


def table(name: str) -> np.ndarray:
    """The colormap as a read-only (256, 3) uint8 array; `grey` is (256, 1). Raises ValueError for an
    unknown name."""
    if not is_colormap(name):
        raise ValueError(f"unknown colormap {name!r}; choose one of {', '.join(NAMES)} (add _r to invert)")
    return _table(name)


@functools.lru_cache(maxsize=32)
def _table(name: str) -> np.ndarray:
    base = name.removesuffix(INVERTED)
    x = np.linspace(0.0, 1.0, 256)
    if base == "grey":
        rgb = x[:, None]
    elif base in _ANCHORS:
        anchors = np.array([[int(code[i:i + 2], 16) for i in (0, 2, 4)] for code in _ANCHORS[base]],
                           dtype=np.float64) / 255.0
        where = np.linspace(0.0, 1.0, len(anchors))
        rgb = np.column_stack([np.interp(x, where, anchors[:, band]) for band in range(3)])
    elif base == "heat":
        # black through red and yellow to white (as ds9's "heat")
        rgb = np.column_stack([np.clip(3 * x, 0, 1), np.clip(3 * x - 1, 0, 1), np.clip(3 * x - 2, 0, 1)])
    elif base == "cool":
        rgb = np.column_stack([x, 1 - x, np.ones_like(x)])
    else:  # rainbow: purple-blue through green to red
        rgb = np.column_stack([np.abs(2 * x - 0.5), np.sin(np.pi * x), np.cos(np.pi * x / 2)])
    values = np.round(np.clip(rgb, 0.0, 1.0) * 255.0).astype(np.uint8)
    if name.endswith(INVERTED):
        values = values[::-1]
    values = np.ascontiguousarray(values)
    values.setflags(write=False)
    return values
