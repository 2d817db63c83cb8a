"""Intervals and stretches that turn science pixel values into an 8-bit picture.

Limits come from a sample of the pixels (numpy, astropy); the per-pixel work is done lazily by libvips
while it writes the tiles, as one linear map to 16 bits followed by a 65536-entry lookup table that holds
the stretch. So every stretch costs the same, and scaling adds almost nothing to tiling time.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pyvips

INTERVALS = ("auto", "zscale", "percentile", "minmax")
STRETCHES = ("auto", "linear", "sqrt", "log", "asinh", "histeq")
LUT_SIZE = 65536
SAMPLE_PIXELS = 1_000_000
_FLOAT_MAX = float(np.finfo(np.float32).max)


@dataclass(frozen=True)
class Scaling:
    """How to map pixel values to display grey levels. `auto` keeps 8-bit rasters as they are and uses
    zscale + linear for science data."""

    interval: str = "auto"
    stretch: str = "auto"
    low_percent: float = 0.5
    high_percent: float = 99.5

    def __post_init__(self) -> None:
        if self.interval not in INTERVALS:
            raise ValueError(f"unknown interval {self.interval!r}; choose one of {', '.join(INTERVALS)}")
        if self.stretch not in STRETCHES:
            raise ValueError(f"unknown stretch {self.stretch!r}; choose one of {', '.join(STRETCHES)}")
        if not 0 <= self.low_percent < self.high_percent <= 100:
            raise ValueError("percentiles must satisfy 0 <= low < high <= 100")

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> Scaling:
        known = {k: values[k] for k in ("interval", "stretch", "low_percent", "high_percent") if k in values}
        return cls(**known)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


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
    step = max(1, int(np.ceil(np.sqrt(image.width * image.height / SAMPLE_PIXELS))))
    if step > 1:
        image = image.subsample(step, step)
    values = np.asarray(image.numpy(), dtype=np.float64).ravel()
    return values[np.isfinite(values)]


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


def stretch_lut(stretch: str, normalised_sample: np.ndarray | None = None) -> np.ndarray:
    """The stretch as a lookup table from 16-bit normalised values to 8-bit grey levels."""
    from astropy.visualization import AsinhStretch, HistEqStretch, LinearStretch, LogStretch, SqrtStretch

    x = np.linspace(0.0, 1.0, LUT_SIZE)
    if stretch == "histeq":
        data = normalised_sample if normalised_sample is not None and normalised_sample.size else x
        # Values clipped to the interval's ends would lift its low end off black (and NaN, drawn with
        # entry 0, with it): equalise the values inside and pin the ends to black and white.
        inside = data[(data > 0.0) & (data < 1.0)]
        function: Any = HistEqStretch(np.concatenate(([0.0, 1.0], inside)))
    else:
        function = {"linear": LinearStretch(), "sqrt": SqrtStretch(), "log": LogStretch(),
                    "asinh": AsinhStretch()}[stretch]
    y = np.nan_to_num(np.clip(function(x, clip=True), 0.0, 1.0))
    lut: np.ndarray = np.round(y * 255.0).astype(np.uint8)
    return lut


def display(image: pyvips.Image, scaling: Scaling) -> tuple[pyvips.Image, Applied]:
    """The 8-bit picture of `image` (lazy). NaN and infinities render black."""
    eight_bit = str(image.format) == "uchar"
    interval = scaling.interval
    stretch = scaling.stretch
    if eight_bit and interval == "auto" and stretch in ("auto", "linear"):
        return image, Applied("none", "none", None, None)
    if interval == "auto":
        interval = "minmax" if eight_bit else "zscale"
    if stretch == "auto":
        stretch = "linear"
    values = sample(image)
    low, high = limits(values, interval, scaling)
    factor = (LUT_SIZE - 1) / (high - low)
    normalised = None
    if stretch == "histeq":
        normalised = (values - low) / (high - low)
    lut = stretch_lut(stretch, normalised)
    lut_image = pyvips.Image.new_from_memory(lut.data, LUT_SIZE, 1, 1, "uchar")
    # the cast to ushort clips to 0..65535, so values outside the interval saturate
    index = image.linear(factor, -low * factor).cast("ushort")
    if str(image.format) in ("float", "double", "complex", "dpcomplex"):
        finite = image.abs() < _FLOAT_MAX
        index = finite.ifthenelse(index, 0)
    return index.maplut(lut_image), Applied(interval, stretch, low, high)
