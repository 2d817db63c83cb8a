"""Intervals and stretches that turn science pixel values into an 8-bit picture.

Limits come from a sample of the pixels (numpy, astropy); the per-pixel work is done lazily by libvips
while it writes the tiles, as one linear map to 16 bits followed by a 65536-entry lookup table that holds
the stretch. So every stretch costs the same, and scaling adds almost nothing to tiling time.

The `manual` interval takes its limits (and, for histogram equalisation, its curve) as given instead of
measuring them: `freeze()` turns the scaling chosen for one image into such a scaling, so that a whole
batch (a mosaic) can be shown with exactly the same mapping from data values to grey levels.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pyvips

from app import names
from app.names import AUTO, EQUALISED, MEASURED_INTERVALS

INTERVALS = (AUTO, *MEASURED_INTERVALS, "manual")
STRETCHES = (AUTO, *names.STRETCHES)
LUT_SIZE = 65536
SAMPLE_PIXELS = 1_000_000
CURVE_POINTS = 257  # quantiles kept of a frozen histogram equalisation
_FLOAT_MAX = float(np.finfo(np.float32).max)


@dataclass(frozen=True)
class Scaling:
    """How to map pixel values to display grey levels. `auto` keeps 8-bit rasters as they are and uses
    zscale + linear for science data. `ahisteq` is adaptive histogram equalisation (app/tiles/adaptive.py):
    `display` gives its globally equalised picture, which ingest then equalises cell by cell. `manual`
    uses the data values `low` and `high` as the limits and, for `histeq` and `ahisteq`, the equalisation
    `curve` (quantiles of the normalised values, 0..1) instead of measuring
    them on each image."""

    interval: str = "auto"
    stretch: str = "auto"
    low_percent: float = 0.5
    high_percent: float = 99.5
    low: float | None = None
    high: float | None = None
    curve: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        if self.interval not in INTERVALS:
            raise ValueError(f"unknown interval {self.interval!r}; choose one of {', '.join(INTERVALS)}")
        if self.stretch not in STRETCHES:
            raise ValueError(f"unknown stretch {self.stretch!r}; choose one of {', '.join(STRETCHES)}")
        if not 0 <= self.low_percent < self.high_percent <= 100:
            raise ValueError("percentiles must satisfy 0 <= low < high <= 100")
        if self.interval == "manual":
            _check_manual(self.low, self.high, self.curve)
        elif self.low is not None or self.high is not None or self.curve:
            raise ValueError("low, high and curve are given only with the manual interval")

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> Scaling:
        names = ("interval", "stretch", "low_percent", "high_percent", "low", "high")
        known: dict[str, Any] = {k: values[k] for k in names if k in values}
        if values.get("curve"):
            if not isinstance(values["curve"], list | tuple):
                raise ValueError("the curve must be a list of numbers")
            known["curve"] = tuple(values["curve"])
        return cls(**known)

    def to_dict(self) -> dict[str, Any]:
        values = asdict(self)
        values["curve"] = list(self.curve)
        return values


def _check_manual(low: float | None, high: float | None, curve: tuple[float, ...]) -> None:
    numbers = (int, float, np.integer, np.floating)
    if not isinstance(low, numbers) or not isinstance(high, numbers) or isinstance(low, bool) \
            or isinstance(high, bool):
        raise ValueError("the manual interval needs the data values low and high")
    if not (np.isfinite(low) and np.isfinite(high) and low < high):
        raise ValueError(f"the manual interval needs finite limits with low < high, got {low!r} and {high!r}")
    if curve:
        points = np.asarray(curve, dtype=np.float64) if all(
            isinstance(v, numbers) and not isinstance(v, bool) for v in curve) else None
        if points is None or points.size < 2 or not np.all(np.isfinite(points)) \
                or not np.all((points >= 0) & (points <= 1)) or np.any(np.diff(points) < 0):
            raise ValueError("the curve must be at least two rising numbers between 0 and 1")


@dataclass(frozen=True)
class Applied:
    """What was actually done to an image, recorded with it."""

    interval: str
    stretch: str
    low: float | None
    high: float | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def sample(image: pyvips.Image) -> np.ndarray:
    """At most a million (and at least a quarter of that) finite values spread evenly over the image."""
    step = sample_step(image.width, image.height)
    if step > 1:
        image = image.subsample(step, step)
    return finite_values(image.numpy())


def finite_values(pixels: np.ndarray) -> np.ndarray:
    """The finite values of `pixels`, as 64-bit floats in one row (the form `sample` gives)."""
    values = np.asarray(pixels, dtype=np.float64).ravel()
    return values[np.isfinite(values)]


def sample_step(width: int, height: int) -> int:
    """`sample` takes every step-th pixel of every step-th row."""
    return max(1, int(np.ceil(np.sqrt(width * height / SAMPLE_PIXELS))))


def limits(values: np.ndarray, interval: str, scaling: Scaling) -> tuple[float, float]:
    """Low and high data values of the interval; never equal, always finite."""
    from astropy.visualization import AsymmetricPercentileInterval, MinMaxInterval, ZScaleInterval

    if values.size == 0:
        return 0.0, 1.0
    if interval == "zscale":
        low, high = ZScaleInterval().get_limits(values)
    elif interval == "percentile":
        low, high = AsymmetricPercentileInterval(lower_percentile=scaling.low_percent,
                                                 upper_percentile=scaling.high_percent).get_limits(values)
    else:
        low, high = MinMaxInterval().get_limits(values)
    low, high = float(low), float(high)
    if not (np.isfinite(low) and np.isfinite(high)) or high <= low:
        centre = float(np.median(values))
        low, high = centre - 0.5, centre + 0.5
    return low, high


def equalisation_curve(normalised_sample: np.ndarray) -> tuple[float, ...]:
    """The quantiles of the values strictly inside the interval: enough to equalise other images with
    this one's histogram."""
    inside = normalised_sample[(normalised_sample > 0.0) & (normalised_sample < 1.0)]
    if inside.size == 0:
        return ()
    return tuple(float(v) for v in np.quantile(inside, np.linspace(0.0, 1.0, CURVE_POINTS)))


def stretch_lut(stretch: str, normalised_sample: np.ndarray | None = None,
                curve: tuple[float, ...] = ()) -> np.ndarray:
    """The stretch as a lookup table from 16-bit normalised values to 8-bit grey levels (read-only).
    `histeq` equalises with `curve` when given, else with the sample."""
    if stretch != "histeq":
        return _fixed_lut(stretch)
    return _lut(stretch, normalised_sample, curve)


@functools.lru_cache(maxsize=8)
def _fixed_lut(stretch: str) -> np.ndarray:
    # the same for every image: computing it takes about as long as the rest of the scaling of a small one
    lut = _lut(stretch, None, ())
    lut.setflags(write=False)
    return lut


def _lut(stretch: str, normalised_sample: np.ndarray | None, curve: tuple[float, ...]) -> np.ndarray:
    from astropy.visualization import AsinhStretch, HistEqStretch, LinearStretch, LogStretch, SqrtStretch

    x = np.linspace(0.0, 1.0, LUT_SIZE)
    if stretch == "histeq":
        data = normalised_sample if normalised_sample is not None and normalised_sample.size else x
        # Values clipped to the interval's ends would lift its low end off black (and NaN, drawn with
        # entry 0, with it): equalise the values inside and pin the ends to black and white.
        inside = np.asarray(curve, dtype=np.float64) if curve else data[(data > 0.0) & (data < 1.0)]
        function: Any = HistEqStretch(np.concatenate(([0.0, 1.0], inside)))
    else:
        function = {"linear": LinearStretch(), "sqrt": SqrtStretch(), "log": LogStretch(),
                    "asinh": AsinhStretch()}[stretch]
    y = np.nan_to_num(np.clip(function(x, clip=True), 0.0, 1.0))
    lut: np.ndarray = np.round(y * 255.0).astype(np.uint8)
    return lut


def freeze(image: pyvips.Image, scaling: Scaling) -> tuple[Scaling, str]:
    """The `manual` scaling that shows `image` as `scaling` would, with its limits (and equalisation
    curve) measured now, so that other images can be shown exactly alike; and the interval that measured
    them. An 8-bit raster left as it is becomes 0..255 linear (which leaves it as it is), measured by
    "none"."""
    if scaling.interval == "manual":
        return scaling, "manual"
    return freeze_sample(sample(image), str(image.format) == "uchar", scaling)


def freeze_sample(values: np.ndarray, eight_bit: bool, scaling: Scaling) -> tuple[Scaling, str]:
    """`freeze` of an image of which `values` is the `sample` (a streamed plane's, read row by row)."""
    if scaling.interval == "manual":
        return scaling, "manual"
    interval = scaling.interval
    stretch = "linear" if scaling.stretch == "auto" else scaling.stretch
    if eight_bit and interval == "auto" and stretch == "linear":
        return Scaling(interval="manual", stretch="linear", low=0.0, high=255.0), "none"
    if interval == "auto":
        interval = "minmax" if eight_bit else "zscale"
    low, high = limits(values, interval, scaling)
    curve = equalisation_curve((values - low) / (high - low)) if stretch in EQUALISED else ()
    return Scaling(interval="manual", stretch=stretch, low=low, high=high, curve=curve), interval


def _all_shown(image: pyvips.Image, values: np.ndarray | None, whole: bool) -> bool:
    """Whether no pixel of a single-band `image` needs the bad-pixel mask: `values`, the sample of every
    pixel of it (`whole`), kept them all (`sample` leaves out NaN and infinities) and all within what
    the mask lets through."""
    if not whole or values is None or image.bands != 1 or values.size != image.width * image.height:
        return False
    return values.size == 0 or float(np.abs(values).max()) < _FLOAT_MAX


def display(image: pyvips.Image, scaling: Scaling, values: np.ndarray | None = None, *,
            whole: bool = False) -> tuple[pyvips.Image, Applied]:
    """The 8-bit picture of `image` (lazy). NaN and infinities render black. `values`: the image's
    `sample`, when it was taken already. For `ahisteq` it is the globally equalised picture, equalised with
    `curve` as dynamic tiles are (the cells are the caller's: `adaptive.equalised_picture`). `whole`: that
    sample is of every pixel of `image` (a small one's): when it holds them all, none is masked."""
    eight_bit = str(image.format) == "uchar"
    if shown_as_is(eight_bit, scaling):
        return image, Applied("none", "none", None, None)
    taken: list[np.ndarray] = []

    def measured() -> np.ndarray:
        taken.append(sample(image))
        return taken[0]

    chosen = mapping(scaling, values, measured, eight_bit=eight_bit)
    values = values if values is not None else (taken[0] if taken else None)
    floating = str(image.format) in ("float", "double", "complex", "dpcomplex")
    return chosen.picture(image, floating and not _all_shown(image, values, whole)), chosen.applied


def shown_as_is(eight_bit: bool, scaling: Scaling) -> bool:
    """Whether `display` leaves an image as it is: an 8-bit raster with the automatic interval, linear."""
    return eight_bit and scaling.interval == "auto" and scaling.stretch in ("auto", "linear")


@dataclass(frozen=True)
class Mapping:
    """What `display` does to each pixel: a linear map to 16 bits (`factor`, `offset`), clipped, then the
    stretch's lookup table (`lut`); and what was applied."""

    factor: float
    offset: float
    lut: np.ndarray
    applied: Applied

    def picture(self, image: pyvips.Image, mask: bool) -> pyvips.Image:
        """The 8-bit picture of `image` (lazy); `mask`: NaN and infinities render black."""
        lut_image = pyvips.Image.new_from_memory(self.lut.data, LUT_SIZE, 1, 1, "uchar")
        # the cast to ushort clips to 0..65535, so values outside the interval saturate
        index = image.linear(self.factor, self.offset).cast("ushort")
        if mask:
            defined = image.abs() < _FLOAT_MAX
            index = defined.ifthenelse(index, 0)
        return index.maplut(lut_image)

    def rows(self, values: np.ndarray, mask: bool) -> np.ndarray:
        """`picture` of a one-band image's values (rows of any real type libvips takes) in NumPy, the same
        grey levels bit for bit: libvips computes the linear map in float32 on values converted to float32
        (in double on doubles), and its cast to ushort clips, then truncates."""
        kind = np.float64 if values.dtype == np.float64 else np.float32
        with np.errstate(over="ignore", invalid="ignore"):
            index = np.multiply(values, kind(self.factor), dtype=kind)
            index += kind(self.offset)
            np.clip(index, 0, LUT_SIZE - 1, out=index)
            levels = index.astype(np.uint16)
        if mask:
            levels[~(np.abs(values) < _FLOAT_MAX)] = 0
        picture: np.ndarray = np.take(self.lut, levels)  # as fast again as `self.lut[levels]`
        return picture


RowScaling = Callable[[np.ndarray], np.ndarray]


def row_scaling(kind: np.dtype[Any], scaling: Scaling, values: np.ndarray | None,
                measure: Callable[[], np.ndarray]) -> tuple[RowScaling | None, Applied]:
    """`display` for rows of values of type `kind` in NumPy (`Mapping.rows`): the function that makes their
    8-bit picture (None when they are shown as they are: `shown_as_is`) and what was applied. `values` and
    `measure` as `mapping` takes them."""
    eight_bit = kind == np.dtype(np.uint8)
    if shown_as_is(eight_bit, scaling):
        return None, Applied("none", "none", None, None)
    chosen = mapping(scaling, values, measure, eight_bit=eight_bit)
    return functools.partial(chosen.rows, mask=kind.kind == "f"), chosen.applied


def mapping(scaling: Scaling, values: np.ndarray | None, measure: Callable[[], np.ndarray], *,
            eight_bit: bool = False) -> Mapping:
    """The `Mapping` that `display` applies for `scaling`: `values`, the image's `sample` when it was taken
    already, else `measure()` takes it when the interval or equalisation needs it; `eight_bit`: the image
    is an 8-bit raster (its `auto` interval is its minimum and maximum)."""
    interval = scaling.interval
    stretch = scaling.stretch
    if interval == "auto":
        interval = "minmax" if eight_bit else "zscale"
    if stretch == "auto":
        stretch = "linear"
    normalised = None
    if interval == "manual" and scaling.low is not None and scaling.high is not None:
        low, high = float(scaling.low), float(scaling.high)
        if stretch in EQUALISED and not scaling.curve:
            values = measure() if values is None else values
            normalised = (values - low) / (high - low)
    else:
        values = measure() if values is None else values
        low, high = limits(values, interval, scaling)
        if stretch in EQUALISED:
            normalised = (values - low) / (high - low)
    factor = (LUT_SIZE - 1) / (high - low)
    if stretch == "ahisteq":
        # through the curve's quantiles, as the dynamic tiles' histeq table is (app/tiles/render.py)
        curve = scaling.curve or (equalisation_curve(normalised) if normalised is not None else ())
        lut = stretch_lut("histeq", None, curve)
    else:
        lut = stretch_lut(stretch, normalised, scaling.curve)
    return Mapping(factor, -low * factor, lut, Applied(interval, stretch, low, high))
