"""Dynamic tiles: the science pyramid shown with another interval, stretch or colormap, rendered on
request with the geometry of the static Deep Zoom pyramid (254-pixel tiles, 1 pixel overlap, the same
levels), so a viewer can swap one for the other without moving.

A display is named by a spec, one URL path segment `<interval>~<stretch>~<colormap>`, e.g.
`zscale~asinh~viridis`, `p99.5~linear~grey_r`, `m-10.5:300~sqrt~heat`. Each spec has one spelling (the
canonical one, see `Spec.text`), so each display has one cache.

The interval's limits (and the equalisation curve of `histeq`) are measured once per image and spec on a
sample of the whole full-resolution image and kept in `display/<spec>/scale.json`: every tile of a view
uses the same mapping, so tiles meet without seams. `ahisteq` also keeps its cells' mappings there, in
`display/<spec>/cells.npy` (app/tiles/adaptive.py: cells fixed in image pixels, so that local contrast does
not change as one zooms). Rendered tiles are kept in
`display/<spec>/image_files/<level>/<col>_<row>.jpeg`, written under a temporary name and renamed; the
cache is bounded in displays per image and in total size (display_cache.py).
"""

from __future__ import annotations

import contextlib
import functools
import io
import json
import math
import os
import re
import secrets
import shutil
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np

from app.names import EQUALISED, INTERVAL_LABELS, STRETCH_LABELS, STRETCHES
from app.tiles import adaptive, colormaps, display_cache, science
from app.tiles.pyramid import DZI_NAME, OVERLAP, TILE_SIZE, level_size, max_level

DISPLAY = "display"
SCALE_FILE = "scale.json"
SAMPLE_FILE = "sample.npy"
GRID_FILE = "grid.npy"  # the sample with its places: every step-th pixel of every step-th row
CELLS_FILE = "cells.npy"
MAX_SPEC_CHARS = 120
_LUT_SIZE = 65536
_FLOAT_MAX = float(np.finfo(np.float32).max)
_NUMBER = r"-?(?:\d+(?:\.\d+)?|\.\d+)(?:e[-+]?\d+)?"
_INTERVAL = re.compile(rf"zscale|minmax|p(?P<percent>{_NUMBER})|m(?P<low>{_NUMBER}):(?P<high>{_NUMBER})")


class SpecError(ValueError):
    """A display spec that is not in the grammar; the message says what is wrong."""


def number_text(value: float) -> str:
    """The one spelling of a number in a spec: JavaScript's `String(number)` (shortest round trip;
    positional from 1e-6 up to 1e21, exponent notation outside), so the page builds the same text."""
    if value == 0:
        return "0"
    if value < 0:
        return "-" + number_text(-value)
    normal = Decimal(repr(float(value))).normalize()
    _, digit_tuple, exponent = normal.as_tuple()
    digits = "".join(map(str, digit_tuple))
    assert isinstance(exponent, int)
    k = len(digits)
    n = exponent + k  # value = 0.digits * 10**n
    if k <= n <= 21:
        return digits + "0" * (n - k)
    if 0 < n <= 21:
        return digits[:n] + "." + digits[n:]
    if -6 < n <= 0:
        return "0." + "0" * (-n) + digits
    power = n - 1
    mantissa = digits if k == 1 else digits[0] + "." + digits[1:]
    return f"{mantissa}e{'+' if power >= 0 else '-'}{abs(power)}"


@dataclass(frozen=True)
class Spec:
    """A parsed display spec. `interval` is zscale, minmax, percentile or manual."""

    interval: str
    stretch: str
    colormap: str
    percent: float | None = None
    low: float | None = None
    high: float | None = None

    @property
    def text(self) -> str:
        """The canonical spelling (the URL path segment)."""
        if self.interval == "percentile":
            assert self.percent is not None
            interval = "p" + number_text(self.percent)
        elif self.interval == "manual":
            assert self.low is not None and self.high is not None
            interval = f"m{number_text(self.low)}:{number_text(self.high)}"
        else:
            interval = self.interval
        return f"{interval}~{self.stretch}~{self.colormap}"


def parse(text: str) -> Spec:
    """The spec spelled `text`, which must be canonical; SpecError says what is wrong and, when only the
    spelling is, what the canonical spelling is."""
    if len(text) > MAX_SPEC_CHARS:
        raise SpecError(f"the display spec is longer than {MAX_SPEC_CHARS} characters")
    parts = text.split("~")
    if len(parts) != 3:
        raise SpecError("a display spec is <interval>~<stretch>~<colormap>, e.g. zscale~asinh~viridis")
    interval_text, stretch, colormap = parts
    match = _INTERVAL.fullmatch(interval_text)
    if not match:
        raise SpecError(f"unknown interval {interval_text[:40]!r}: use zscale, minmax, p<N> (a percentile, "
                        "50 < N < 100, e.g. p99.5) or m<low>:<high> (data values, e.g. m-10.5:300)")
    if stretch not in STRETCHES:
        raise SpecError(f"unknown stretch {stretch[:40]!r}: use one of {', '.join(STRETCHES)}")
    if not colormaps.is_colormap(colormap):
        raise SpecError(f"unknown colormap {colormap[:40]!r}: use one of {', '.join(colormaps.NAMES)}, "
                        "optionally with _r for inverted")
    if match["percent"] is not None:
        percent = float(match["percent"])
        if not 50 < percent < 100:
            raise SpecError(f"the percentile interval needs 50 < N < 100, got {match['percent']}")
        spec = Spec("percentile", stretch, colormap, percent=percent)
    elif match["low"] is not None:
        low, high = float(match["low"]), float(match["high"])
        if not (math.isfinite(low) and math.isfinite(high)):
            raise SpecError("the manual interval needs finite limits")
        if not low < high:
            raise SpecError(f"the manual interval needs low < high, got {match['low']} and {match['high']}")
        spec = Spec("manual", stretch, colormap, low=low, high=high)
    else:
        spec = Spec(interval_text, stretch, colormap)
    if spec.text != text:
        raise SpecError(f"the display spec is not written in its canonical form; write {spec.text}")
    return spec


def display_names() -> dict[str, dict[str, str]]:
    """What the image page's display controls offer: interval, stretch and colormap names with labels."""
    return {"intervals": INTERVAL_LABELS, "stretches": STRETCH_LABELS,
            "colormaps": {name: name for name in colormaps.NAMES}}


def default_spec(display: dict[str, Any]) -> Spec:
    """The spec closest to how an image's static pyramid was scaled at ingest (its `display` record):
    what the display controls show before the user changes anything."""
    interval = str(display.get("interval") or "")
    stretch = str(display.get("stretch") or "linear")
    stretch = stretch if stretch in STRETCHES else "linear"
    low, high = display.get("low"), display.get("high")
    if interval in ("zscale", "minmax"):
        return Spec(interval, stretch, "grey")
    if isinstance(low, int | float) and isinstance(high, int | float) and math.isfinite(low) \
            and math.isfinite(high) and low < high:
        return Spec("manual", stretch, "grey", low=float(low), high=float(high))
    if interval == "none":  # 8-bit pixels shown as they are
        return Spec("manual", "linear", "grey", low=0.0, high=255.0)
    return Spec("zscale", stretch, "grey")


# -- geometry ---------------------------------------------------------------------------------------------

def tile_box(width: int, height: int, level: int, col: int, row: int) -> tuple[int, int, int, int] | None:
    """(left, top, width, height) of a tile in its level's pixels, or None when there is no such tile."""
    if not 0 <= level <= max_level(width, height):
        return None
    level_width, level_height = level_size(width, height, level)
    if col < 0 or row < 0 or col * TILE_SIZE >= level_width or row * TILE_SIZE >= level_height:
        return None
    left = max(0, col * TILE_SIZE - OVERLAP)
    top = max(0, row * TILE_SIZE - OVERLAP)
    right = min(level_width, (col + 1) * TILE_SIZE + OVERLAP)
    bottom = min(level_height, (row + 1) * TILE_SIZE + OVERLAP)
    return left, top, right - left, bottom - top


# -- the scale of one spec on one image -------------------------------------------------------------------

@dataclass(frozen=True)
class Scale:
    """Measured once per image and spec: the interval's data values, for histeq and ahisteq the curve, and
    for ahisteq the mappings of its cells (`adaptive.table`)."""

    low: float
    high: float
    curve: tuple[float, ...] = ()
    cells: np.ndarray | None = field(default=None, compare=False, repr=False)


def measure(science_path: str, spec: Spec) -> Scale:
    """The limits of `spec`'s interval (and the histeq curve) from a sample of the full-resolution
    image."""
    from app.tiles.scaling import Scaling, equalisation_curve, limits

    if spec.interval == "manual":
        assert spec.low is not None and spec.high is not None
        low, high = spec.low, spec.high
        values = sample_of(science_path) if spec.stretch in EQUALISED else None
    else:
        values = sample_of(science_path)
        if spec.interval == "percentile":
            assert spec.percent is not None
            edge = (100.0 - spec.percent) / 2
            low, high = limits(values, "percentile", Scaling(low_percent=edge, high_percent=100.0 - edge))
        else:
            low, high = limits(values, spec.interval, Scaling())
    curve: tuple[float, ...] = ()
    if spec.stretch in EQUALISED and values is not None:
        curve = equalisation_curve((values - low) / (high - low))
    if spec.stretch != "ahisteq":
        return Scale(low, high, curve)
    scale = Scale(low, high, curve)
    grid, step = grid_of(science_path)
    width, height, _ = geometry(science_path)
    grey = _equalised_grey(_from_array(grid), scale)
    return Scale(low, high, curve, adaptive.table(adaptive.as_array(grey), step, width, height))


def grid_of(science_path: str) -> tuple[np.ndarray, int]:
    """Every step-th pixel of every step-th row of the full-resolution image (the pixels `sample_of`
    keeps the finite values of), NaN kept, and the step; kept in `display/grid.npy`."""
    from app.tiles.scaling import sample_step

    width, height, _ = geometry(science_path)
    step = sample_step(width, height)
    cache = Path(science_path).parent / DISPLAY / GRID_FILE
    try:
        return np.asarray(np.load(cache, allow_pickle=False), dtype=np.float32), step
    except (FileNotFoundError, ValueError, OSError):
        pass
    full = science.open_page(science_path, 0)
    picked = full.subsample(step, step) if step > 1 else full
    grid = np.ndarray(buffer=picked.write_to_memory(), dtype=np.float32, shape=(picked.height, picked.width))
    buffer = io.BytesIO()
    np.save(buffer, grid, allow_pickle=False)
    with contextlib.suppress(FileNotFoundError):  # not when the image's folder is gone (revoked, deleted)
        make_below(cache.parent.parent, cache.parent)
        _write_atomically(cache, buffer.getvalue())
    return grid, step


def _from_array(values: np.ndarray) -> Any:
    import pyvips

    data = np.ascontiguousarray(values, dtype=np.float32)
    return pyvips.Image.new_from_memory(data.data, data.shape[1], data.shape[0], 1, "float")


def sample_of(science_path: str) -> np.ndarray:
    """The finite values of an evenly spread sample of the full-resolution image (see
    `scaling.sample`), kept in `display/sample.npy` so that each further spec is measured without
    reading the image again."""
    from app.tiles.scaling import sample

    cache = Path(science_path).parent / DISPLAY / SAMPLE_FILE
    try:
        return np.asarray(np.load(cache, allow_pickle=False), dtype=np.float64)
    except (FileNotFoundError, ValueError, OSError):
        pass
    values = sample(science.open_page(science_path, 0))
    buffer = io.BytesIO()
    np.save(buffer, values.astype(np.float32), allow_pickle=False)
    with contextlib.suppress(FileNotFoundError):  # not when the image's folder is gone (revoked, deleted)
        make_below(cache.parent.parent, cache.parent)
        _write_atomically(cache, buffer.getvalue())
    return values


COMMON_SAMPLE = 20_000  # values of each image in a common interval: each image weighs the same


def common_limits(science_paths: list[str], interval: str) -> tuple[float, float]:
    """In a pool process: one interval (`zscale`, `minmax` or `percentile` 99.5) measured over the
    samples of several images together (each image's `sample_of`, thinned evenly to COMMON_SAMPLE values),
    so that a mosaic shown with it has one background and one brightness."""
    from app.tiles.scaling import Scaling, limits

    parts = []
    for path in science_paths:
        values = sample_of(path)
        step = max(1, math.ceil(values.size / COMMON_SAMPLE))
        parts.append(values[::step])
    values = np.concatenate(parts) if parts else np.zeros(0)
    if interval == "percentile":
        return limits(values, "percentile", Scaling(low_percent=0.25, high_percent=99.75))
    low, high = limits(values, interval, Scaling())
    return float(low), float(high)


def scale_of(folder: Path, spec: Spec, science_path: str) -> Scale:
    """The spec's scale, read from its cache file or measured and cached (once: a lock keeps concurrent
    first requests from measuring twice)."""
    if not folder.is_dir():  # the image was deleted: do not make its folder again
        return measure(science_path, spec)
    cache = folder / DISPLAY / spec.text / SCALE_FILE
    scale = _read_scale(cache, spec)
    if scale is not None:
        return scale
    try:
        make_below(folder, cache.parent)
    except FileNotFoundError:  # revoked or deleted meanwhile
        return measure(science_path, spec)
    with science.locked(cache.parent / ".scale.lock"):
        scale = _read_scale(cache, spec)
        if scale is None:
            if cache.exists():
                # an ahisteq scale from before its cells were fixed in image pixels: its tiles were
                # equalised with cells of each level's own pixels, and would not match new ones
                shutil.rmtree(cache.parent / f"{DZI_NAME}_files", ignore_errors=True)
            scale = measure(science_path, spec)
            if scale.cells is not None:  # first: the scale file's arrival says the display is measured
                buffer = io.BytesIO()
                np.save(buffer, scale.cells, allow_pickle=False)
                _write_atomically(cache.with_name(CELLS_FILE), buffer.getvalue())
            _write_atomically(cache, json.dumps(
                {"low": scale.low, "high": scale.high, "curve": list(scale.curve)}).encode())
    return scale


def cuts_of(folder_text: str, science_path: str, spec_text: str,
            limits: display_cache.Limits | None = None) -> tuple[float, float]:
    """In a pool process: the low and high data values of a display's interval, the very ones its tiles
    are rendered with (`scale_of`, measured and cached as its first tile would)."""
    folder = Path(folder_text)
    spec = parse(spec_text)
    if limits is not None and folder.is_dir():  # a new spec counts towards the image's cap, as in render_tile
        display_cache.admit(folder / DISPLAY, spec.text, limits)
    scale = scale_of(folder, spec, science_path)
    return scale.low, scale.high


def _read_scale(path: Path, spec: Spec) -> Scale | None:
    try:
        values = json.loads(path.read_bytes())
        cells = np.load(path.with_name(CELLS_FILE), allow_pickle=False) if spec.stretch == "ahisteq" else None
    except (FileNotFoundError, ValueError, OSError):
        return None
    return Scale(float(values["low"]), float(values["high"]), tuple(float(v) for v in values["curve"]), cells)


def _write_atomically(path: Path, data: bytes) -> None:
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(6)}")
    temporary.write_bytes(data)
    os.replace(temporary, path)


# -- rendering --------------------------------------------------------------------------------------------

@functools.lru_cache(maxsize=32)
def _lut(stretch: str, colormap: str, curve: tuple[float, ...]) -> Any:
    """The stretch and colormap as one lookup table image: 65536 normalised values to grey or RGB."""
    import pyvips

    from app.tiles.scaling import stretch_lut

    grey = stretch_lut(stretch, None, curve)
    table = colormaps.table(colormap)[grey]
    table = np.ascontiguousarray(table)
    return pyvips.Image.new_from_memory(table.data, _LUT_SIZE, 1, table.shape[1], "uchar")


def _level_region(science_path: str, width: int, height: int, pages: int, level: int,
                  box: tuple[int, int, int, int]) -> Any:
    """The science values of `box` (left, top, width, height in pixels of Deep Zoom `level`; it may
    reach past the level's edges, which repeat): read from the nearest pyramid page at or above the
    level's resolution, block-averaged down to it."""
    shrink_total = 2 ** (max_level(width, height) - level)
    page = min(int(math.log2(shrink_total)), pages - 1)
    factor = shrink_total // 2 ** page
    source = science.open_page(science_path, page)
    left, top, box_width, box_height = (v * factor for v in box)
    # what the box covers of the page (at least its nearest edge pixel), the rest filled by repeating
    # the page's edges
    x0 = min(max(0, left), source.width - 1)
    y0 = min(max(0, top), source.height - 1)
    x1 = max(min(source.width, left + box_width), x0 + 1)
    y1 = max(min(source.height, top + box_height), y0 + 1)
    region = source.crop(x0, y0, x1 - x0, y1 - y0).embed(x0 - left, y0 - top, box_width, box_height,
                                                         extend="copy")
    if factor > 1:
        region = region.shrink(factor, factor)
    return region


def geometry(science_path: str) -> tuple[int, int, int]:
    """Full-resolution width and height and the number of pages of a science pyramid (remembered per
    process while the file stays the same)."""
    stat = os.stat(science_path)
    return _geometry(science_path, stat.st_mtime_ns, stat.st_ino)


@functools.lru_cache(maxsize=256)
def _geometry(science_path: str, _mtime: int, _inode: int) -> tuple[int, int, int]:
    full = science.open_page(science_path, 0)
    return full.width, full.height, science.page_count(science_path)


def render_region(science_path: str, scale: Scale, spec: Spec, level: int,
                  box: tuple[int, int, int, int]) -> Any:
    """The 8-bit (grey or RGB) picture of `box` at `level` (a lazy libvips image)."""
    width, height, pages = geometry(science_path)
    left, top, box_width, box_height = box
    if spec.stretch == "ahisteq":
        if scale.cells is None:
            raise ValueError("an ahisteq scale needs its cells' mappings (measure it with scale_of)")
        values = _level_region(science_path, width, height, pages, level, box)
        grey = adaptive.as_array(_equalised_grey(values, scale))
        shrink = 2 ** (max_level(width, height) - level)
        equalised = adaptive.equalise(grey, scale.cells, adaptive.cell_size(width, height), shrink, left, top)
        coloured = np.ascontiguousarray(colormaps.table(spec.colormap)[equalised])
        import pyvips

        return pyvips.Image.new_from_memory(coloured.data, box_width, box_height, coloured.shape[2], "uchar")
    colour = Path(science_path).with_name(science.COLOUR_NAME)
    if spec.colormap == "grey" and colour.is_file():
        # a colour picture in the grey colormap: its red, green and blue each through the same interval and
        # stretch (the plane's own colours where the interval is its whole range), not its grey level
        values = _level_region(str(colour), width, height, 1, level, box)
    else:
        values = _level_region(science_path, width, height, pages, level, box)
    return _index(values, scale).maplut(_lut(spec.stretch, spec.colormap, scale.curve))


def _equalised_grey(values: Any, scale: Scale) -> Any:
    """The globally equalised 8-bit picture of `values` that ahisteq equalises cell by cell."""
    return _index(values, scale).maplut(_lut("histeq", "grey", scale.curve))


def _index(values: Any, scale: Scale) -> Any:
    """Values as 16-bit positions in the interval; NaN and infinities at its low end."""
    factor = (_LUT_SIZE - 1) / (scale.high - scale.low)
    # the cast to ushort clips to 0..65535: values outside the interval saturate
    index = values.linear(factor, -scale.low * factor).cast("ushort")
    return (values.abs() < _FLOAT_MAX).ifthenelse(index, 0)


def tile_path(folder: Path, spec_text: str, level: int, col: int, row: int) -> Path:
    return folder / DISPLAY / spec_text / f"{DZI_NAME}_files" / str(level) / f"{col}_{row}.jpeg"


def render_tile(folder_text: str, science_path: str, spec_text: str, level: int, col: int, row: int,
                quality: int, limits: display_cache.Limits | None = None) -> bytes | None:
    """In a pool process: the JPEG of one dynamic tile, cached on disk; None when the level has no
    such tile. `limits` bound the cache (see display_cache.py); without them it grows unbounded."""
    folder = Path(folder_text)
    spec = parse(spec_text)
    width, height, _ = geometry(science_path)
    box = tile_box(width, height, level, col, row)
    if box is None:
        return None
    if limits is not None and folder.is_dir():
        # a spec new to this image takes the place of its least recently used one beyond the cap
        display_cache.admit(folder / DISPLAY, spec.text, limits)
    scale = scale_of(folder, spec, science_path)
    picture = render_region(science_path, scale, spec, level, box)
    data: bytes = picture.jpegsave_buffer(Q=quality, strip=True)
    target = tile_path(folder, spec.text, level, col, row)
    try:
        make_below(folder, target.parent)
        _write_atomically(target, data)
        if limits is not None:
            display_cache.wrote(limits)
    except FileNotFoundError:  # the image was deleted or its links revoked meanwhile: nothing to keep
        pass
    return data


def make_below(folder: Path, target: Path) -> None:
    """Make the folders from `folder` (which must exist) down to `target`. FileNotFoundError when
    `folder` is gone: a tile generation folder that was renamed (revoked) or deleted is never made again
    by a late writer, which would bring old links back to life."""
    path = folder
    for name in target.relative_to(folder).parts:
        path = path / name
        path.mkdir(exist_ok=True)  # no parents=True: that would make `folder` again
