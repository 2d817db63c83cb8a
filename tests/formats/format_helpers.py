"""Pictures for the format tests, and the pyramids' levels read back as a viewer shows them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyvips

SAVERS = {".png": "png", ".tif": "tiff", ".tiff": "tiff", ".jpg": "jpeg", ".jpeg": "jpeg"}


def gradient_rgb(height: int = 96, width: int = 128) -> np.ndarray:
    """A smooth colour gradient (JPEG-friendly, so decoded tiles stay close to the original)."""
    yy, xx = np.mgrid[0:height, 0:width]
    return np.dstack([xx * 255 // (width - 1), yy * 255 // (height - 1),
                      (xx + yy) * 255 // (width + height - 2)]).astype(np.uint8)


def deepest_level(folder: Path) -> Path:
    """The full-resolution level folder of the Deep Zoom pyramid in `folder`."""
    levels = [p for p in (folder / "image_files").iterdir() if p.name.isdigit()]
    return max(levels, key=lambda p: int(p.name))


def full_picture(folder: Path, level: int | None = None, tile_size: int = 254,
                 overlap: int = 1) -> np.ndarray:
    """The picture of one pyramid level (default: the deepest, full resolution) as a viewer shows it:
    the level's tiles stitched, overlaps removed."""
    where = deepest_level(folder) if level is None else folder / "image_files" / str(level)
    tiles = {tuple(int(n) for n in p.stem.split("_")): p for p in where.glob("*.jpeg")}
    columns = 1 + max(c for c, _ in tiles)
    rows = 1 + max(r for _, r in tiles)
    assert len(tiles) == columns * rows, f"level {where.name}: missing tiles"
    pieces: list[list[np.ndarray]] = [[np.empty(0)] * columns for _ in range(rows)]
    for (column, row), path in tiles.items():
        decoded = pyvips.Image.new_from_file(str(path))
        tile = decoded.numpy().reshape(decoded.height, decoded.width, decoded.bands)
        if decoded.bands == 1:
            tile = tile[:, :, 0]
        top = overlap if row else 0
        left = overlap if column else 0
        pieces[row][column] = tile[top:top + tile_size, left:left + tile_size]
    return np.concatenate([np.concatenate(line, axis=1) for line in pieces], axis=0)
