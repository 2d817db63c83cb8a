"""The tiles of an image drawn resampled into a mosaic's frame (see `app.sky.warp`): PNG with alpha,
rendered in the pool from the image's science pyramid through its display (any interval, stretch and
colormap) and cached beside its dynamic tiles,
`<generation>/warp/<frame key>~<spec>/image_files/<level>/<col>_<row>.png`."""

from __future__ import annotations

import math
import os
import secrets
from pathlib import Path

import numpy as np

from app.sky import warp
from app.sky.mosaic import Sheet
from app.tiles import display_cache, pyramid, render

WARP = "warp"


def tile_path(folder: Path, key: str, spec_text: str, level: int, col: int, row: int) -> Path:
    return folder / WARP / f"{key}~{spec_text}" / "image_files" / str(level) / f"{col}_{row}.png"


def render_warped(folder_text: str, science_path: str, spec_text: str, frame: Sheet, sheet: Sheet,
                  level: int, col: int, row: int, limits: display_cache.Limits | None = None) -> bytes | None:
    """In a pool process: the PNG of one tile of the image drawn in the frame (grey or RGB with alpha),
    cached on disk beside its dynamic tiles, within the same bounds (`limits`: each frame and display is
    one of the image's cached displays); None when the layer has no such tile."""
    import pyvips

    box = warp.box_in_frame(frame, sheet)
    if box is None:
        return None
    left, top, box_width, box_height = box
    tile = render.tile_box(box_width, box_height, level, col, row)
    if tile is None:
        return None
    shrink = 2 ** (pyramid.max_level(box_width, box_height) - level)
    x, y, width, height = tile
    u, v = warp.image_positions(frame, sheet, left + x * shrink, top + y * shrink, shrink, width, height)
    inside = np.isfinite(u) & np.isfinite(v) & (u >= 0) & (u < sheet.width) & (v >= 0) & (v < sheet.height)
    spec = render.parse(spec_text)
    folder = Path(folder_text)
    bands = 0
    if np.any(inside):
        # the image's pyramid level nearest above the tile's resolution: image pixels per tile pixel
        step = 1.0
        if width > 1:
            along = np.hypot(np.gradient(u, axis=1), np.gradient(v, axis=1))[inside]
            along = along[np.isfinite(along)]
            step = float(np.median(along)) if along.size else 1.0
        image_shrink = 2 ** max(0, math.floor(math.log2(max(step, 1.0))))
        deepest = pyramid.max_level(sheet.width, sheet.height)
        image_level = max(0, deepest - int(math.log2(image_shrink)))
        image_shrink = 2 ** (deepest - image_level)
        level_width, level_height = pyramid.level_size(sheet.width, sheet.height, image_level)
        # array positions at that level (pixel centres at whole numbers)
        ax, ay = u / image_shrink - 0.5, v / image_shrink - 0.5
        x0 = max(0, math.floor(float(np.min(ax[inside]))) - 1)
        y0 = max(0, math.floor(float(np.min(ay[inside]))) - 1)
        x1 = min(level_width, math.ceil(float(np.max(ax[inside]))) + 2)
        y1 = min(level_height, math.ceil(float(np.max(ay[inside]))) + 2)
        scale = render.scale_of(folder, spec, science_path)
        picture = render.render_region(science_path, scale, spec, image_level, (x0, y0, x1 - x0, y1 - y0))
        array = np.asarray(picture.numpy()).reshape(y1 - y0, x1 - x0, picture.bands)
        bands = picture.bands
        sampled = warp.sample(array, ax - x0, ay - y0)
    else:
        sampled = np.zeros((height, width, 1), dtype=np.uint8)
        bands = 1
    alpha = np.where(inside, 255, 0).astype(np.uint8)[..., None]
    pixels = np.ascontiguousarray(np.concatenate([np.where(inside[..., None], sampled, 0), alpha], axis=2))
    image = pyvips.Image.new_from_memory(pixels.data, width, height, bands + 1, "uchar")
    data: bytes = image.pngsave_buffer(compression=3)
    key = warp.frame_key(frame)
    target = tile_path(folder, key, spec.text, level, col, row)
    try:
        if limits is not None and folder.is_dir():
            display_cache.admit(folder / WARP, f"{key}~{spec.text}", limits)
        render.make_below(folder, target.parent)
        scratch = target.with_name(f".{target.name}.{secrets.token_hex(4)}")
        scratch.write_bytes(data)
        os.replace(scratch, target)
        if limits is not None:
            display_cache.wrote(limits)
    except FileNotFoundError:  # the image was deleted or its links revoked meanwhile: nothing to keep
        pass
    return data
