"""Adaptive histogram equalisation (CLAHE) with its cells fixed in the image's own pixels, so that a region's
local contrast is the same at every zoom level, in dynamic tiles and in a static pyramid built at ingest.

The full-resolution image is cut into square cells of `cell_size` pixels: a grid of `CELLS` cells across
its longer side, the grid that CLAHE implementations default to (scikit-image's kernel of 1/8 of the image,
OpenCV's 8x8 tiles). A fixed number of cells gives the whole image (a paper's figure) the same look
whatever its resolution, keeps the table of mappings small (at most 8 x 8 x 256 numbers) and lets it be
counted on a sample: cells of a fixed pixel size would number 16,000 on a 16k x 16k image, too many to
count from anything but every pixel. `MIN_CELL` keeps cells of small images from holding a handful of
pixels.

Each cell's clipped histogram of the globally equalised grey levels (so that faint structure spans many
grey levels before it is equalised locally) gives it a mapping. The table of mappings is counted once per
image and display on an evenly spread sample of the full-resolution pixels (every `step`-th pixel of
every `step`-th row, the sample the interval's limits come from), never on the whole image. A pixel of any
Deep Zoom level is mapped by blending the mappings of the four cells whose centres surround its centre,
placed in image pixels: a level shrunk by s applies the very table full resolution does, with cells of
cell/s level pixels however few that is (the histograms are never counted on the level). So a region
keeps its equalised brightness as one zooms, and a shrunk level comes close to the full-resolution
equalised picture shrunk (exactly what the static pyramid's levels are): they differ only where the
block-averaged values of fine noise map otherwise than the average of its mapped values.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pyvips

CELLS = 8  # cells across the image's longer side
MIN_CELL = 32  # full-resolution pixels
CLIP = 3.0  # a histogram bin holds at most this many times the mean count; the rest is spread out
_STRIP_PIXELS = 1 << 20  # pixels equalised at once at ingest (about 25 MB of intermediate arrays)


def cell_size(width: int, height: int) -> int:
    """The side of a cell in full-resolution pixels."""
    return max(MIN_CELL, math.ceil(max(width, height) / CELLS))


def table(grey_sample: np.ndarray, step: int, width: int, height: int) -> np.ndarray:
    """The cells' mappings, (rows, columns, 256) float32 grey levels, from `grey_sample`: the 8-bit
    globally equalised picture of every `step`-th pixel of every `step`-th row of a `width` x `height`
    image (sample pixel (i, j) is image pixel (i step, j step))."""
    cell = cell_size(width, height)
    rows, cols = -(-height // cell), -(-width // cell)
    ys = (np.arange(grey_sample.shape[0]) * step) // cell
    xs = (np.arange(grey_sample.shape[1]) * step) // cell
    index = (ys[:, None] * cols + xs[None, :]) * 256 + grey_sample.astype(np.intp)
    counts = np.bincount(index.ravel(), minlength=rows * cols * 256).astype(np.float64)
    counts = counts.reshape(rows, cols, 256)
    total = counts.sum(axis=2, keepdims=True)
    limit = np.maximum(1.0, CLIP * total / 256)
    excess = np.maximum(counts - limit, 0.0).sum(axis=2, keepdims=True)
    clipped = np.minimum(counts, limit) + excess / 256
    cdf = np.cumsum(clipped, axis=2)
    mapped = 255.0 * cdf / np.maximum(cdf[..., -1:], 1e-12)
    # a cell no sample fell in (cannot happen while cells are larger than the step) is left as it is
    mapped = np.where(total > 0, mapped, np.arange(256, dtype=np.float64))
    result: np.ndarray = mapped.astype(np.float32)
    return result


def equalise(grey: np.ndarray, maps: np.ndarray, cell: int, shrink: int, left: int, top: int) -> np.ndarray:
    """The equalised grey levels of `grey`, the 8-bit globally equalised picture of a region of a level
    shrunk `shrink` times whose top left pixel is (`left`, `top`) in level pixels. `maps`: the `table`;
    `cell`: its cells' side in full-resolution pixels. Each pixel depends on its value and place only, so
    any two regions agree where they overlap."""
    rows, cols = maps.shape[:2]
    height, width = grey.shape

    def neighbours(start: int, count: int, cells: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        # the pixel centres in image pixels, as positions between the centres of the cells on either side
        where = (np.arange(start, start + count) + 0.5) * shrink / cell - 0.5
        low = np.floor(where)
        weight = (where - low).astype(np.float32)
        before = np.clip(low, 0, cells - 1).astype(np.intp)
        after = np.clip(low + 1, 0, cells - 1).astype(np.intp)
        return before, after, weight

    x_before, x_after, x_weight = neighbours(left, width, cols)
    y_before, y_after, y_weight = neighbours(top, height, rows)
    yb, ya, xb, xa = y_before[:, None], y_after[:, None], x_before[None, :], x_after[None, :]
    upper = maps[yb, xb, grey] * (1 - x_weight) + maps[yb, xa, grey] * x_weight
    lower = maps[ya, xb, grey] * (1 - x_weight) + maps[ya, xa, grey] * x_weight
    blended = upper * (1 - y_weight[:, None]) + lower * y_weight[:, None]
    result: np.ndarray = np.round(blended).astype(np.uint8)
    return result


def as_array(picture: pyvips.Image) -> np.ndarray:
    """A one-band 8-bit libvips image as a (rows, columns) array."""
    return np.ndarray(buffer=picture.write_to_memory(), dtype=np.uint8, shape=(picture.height, picture.width))


def equalised_picture(grey: pyvips.Image, step: int, scratch: Path) -> pyvips.Image:
    """At ingest: the full-resolution picture `grey` (8-bit, one band, globally equalised; lazy)
    equalised as dynamic tiles of the same display are, its table counted on every `step`-th pixel.
    Equalised strip by strip into `scratch`, a raw file of a byte a pixel that the returned image reads
    from (lazily, memory-mapped): memory stays bounded whatever the image's size. The caller removes
    `scratch` once the picture is written."""
    width, height = grey.width, grey.height
    maps = table(as_array(grey.subsample(step, step) if step > 1 else grey), step, width, height)
    cell = cell_size(width, height)
    out = np.memmap(scratch, dtype=np.uint8, mode="w+", shape=(height, width))
    try:
        rows = max(1, _STRIP_PIXELS // width)
        for top in range(0, height, rows):
            strip = as_array(grey.crop(0, top, width, min(rows, height - top)))
            out[top:top + strip.shape[0]] = equalise(strip, maps, cell, 1, 0, top)
        out.flush()
    finally:
        del out
    return pyvips.Image.rawload(str(scratch), width, height, 1)
