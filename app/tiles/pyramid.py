"""Deep Zoom pyramids written by libvips, built aside and moved into place only when complete."""

from __future__ import annotations

import shutil
from pathlib import Path

import pyvips

TILE_SIZE = 254
OVERLAP = 1
DZI_NAME = "image"
THUMBNAIL = "thumb.jpeg"


def build(picture: pyvips.Image, folder: Path, *, quality: int) -> dict[str, int]:
    """Write `folder/image.dzi`, `folder/image_files/` (full resolution down to one pixel) and
    `folder/thumb.jpeg`. `folder` must be a private work folder: the caller moves it into place."""
    folder.mkdir(parents=True, exist_ok=True)
    picture.dzsave(str(folder / DZI_NAME), tile_size=TILE_SIZE, overlap=OVERLAP, depth="onepixel",
                   suffix=f".jpeg[Q={quality},strip]", layout="dz")
    levels = sorted(int(p.name) for p in (folder / f"{DZI_NAME}_files").iterdir() if p.name.isdigit())
    # The deepest level that fits in one tile is the thumbnail: no second pass over the pixels.
    for level in reversed(levels):
        tiles = list((folder / f"{DZI_NAME}_files" / str(level)).iterdir())
        if len(tiles) == 1:
            shutil.copyfile(tiles[0], folder / THUMBNAIL)
            break
    return {"width": picture.width, "height": picture.height, "levels": len(levels)}


def publish(work: Path, final: Path) -> None:
    """Move a finished pyramid folder into place in one rename."""
    final.parent.mkdir(parents=True, exist_ok=True)
    work.rename(final)


def remove(folder: Path) -> None:
    shutil.rmtree(folder, ignore_errors=True)
