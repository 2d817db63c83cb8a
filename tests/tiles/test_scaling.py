"""Intervals and stretches: science values to an 8-bit picture, checked on known pixel data."""

from __future__ import annotations

import re

import numpy as np
import pytest
import pyvips
from astropy.visualization import ZScaleInterval

from app.tiles.scaling import Scaling, display, limits, mapping, sample, stretch_lut

STRETCHES = ("linear", "sqrt", "log", "asinh", "histeq")
INTERVALS = ("zscale", "percentile", "minmax")


def vips(array: np.ndarray) -> pyvips.Image:
    return pyvips.Image.new_from_array(np.ascontiguousarray(array))


def picture(array: np.ndarray, **scaling: object) -> tuple[np.ndarray, object]:
    image, applied = display(vips(array), Scaling(**scaling))
    return image.numpy(), applied


def sky_noise(shape: tuple[int, int] = (120, 160), seed: int = 3) -> np.ndarray:
    return np.random.default_rng(seed).normal(100.0, 5.0, shape).astype(np.float32)


# --- bad pixels -------------------------------------------------------------------------------------

BAD_VALUES = [("nan", np.nan), ("+inf", np.inf), ("-inf", -np.inf)]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("interval", INTERVALS)
@pytest.mark.parametrize("stretch", STRETCHES)
def test_nan_and_infinite_pixels_render_black(stretch, interval, dtype):
    data = sky_noise().astype(dtype)
    data += 50.0  # every finite pixel well above zero, so black can only come from the bad-pixel rule
    spots = {(5, 7): np.nan, (60, 80): np.inf, (100, 150): -np.inf, (0, 0): np.nan}
    for (row, col), value in spots.items():
        data[row, col] = value
    out, applied = picture(data, interval=interval, stretch=stretch)
    assert out.dtype == np.uint8 and out.shape == data.shape
    for (row, col), value in spots.items():
        assert out[row, col] == 0, f"{value} at {(row, col)} rendered {out[row, col]}"
    # the limits come from finite values only
    finite = data[np.isfinite(data)]
    assert np.isfinite(applied.low) and np.isfinite(applied.high)
    assert finite.min() <= applied.low < applied.high <= finite.max()
    # and the rest of the picture is not black: bad pixels did not spoil the scaling
    assert np.median(out[np.isfinite(data)]) > 30


def test_an_image_of_only_nan_renders_black_without_error():
    out, applied = picture(np.full((40, 50), np.nan, dtype=np.float32), interval="zscale", stretch="asinh")
    assert out.shape == (40, 50) and not out.any()
    assert applied.low < applied.high


def test_a_picture_known_to_be_finite_is_the_one_masking_gives():
    """The ingest skips the bad-pixel mask when its sample held every pixel, all finite: the same picture."""
    data = sky_noise()
    values = sample(vips(data))
    assert values.size == data.size
    for stretch in STRETCHES:
        masked, _ = display(vips(data), Scaling(stretch=stretch), values)
        trusted, _ = display(vips(data), Scaling(stretch=stretch), values, whole=True)
        assert np.array_equal(trusted.numpy(), masked.numpy())
    # a double beyond what a float holds is masked as before, though finite
    huge = data.astype(np.float64)
    huge[3, 4] = 1e300
    shown, _ = display(vips(huge), Scaling(), sample(vips(huge)), whole=True)
    assert shown.numpy()[3, 4] == 0


def test_an_ingested_plane_with_bad_pixels_is_masked(tmp_path):
    """A plane whose sample is short of its pixels (NaN, infinities) keeps the mask: they render black."""
    from astropy.io import fits

    from app.ingest.tiling import render_file

    data = sky_noise() + 50.0
    data[10, 20], data[30, 40] = np.nan, np.inf
    path = tmp_path / "bad.fits"
    fits.PrimaryHDU(data).writeto(path)
    render_file(str(path), str(tmp_path / "work"), {}, 10**9, 95)
    [top] = sorted((tmp_path / "work" / "0" / "image_files").iterdir(), key=lambda p: -int(p.name)
                   if p.name.isdigit() else 0)[:1]
    shown = pyvips.Image.new_from_file(str(top / "0_0.jpeg")).numpy()
    # FITS keeps the bottom row first: the picture shows it last
    assert shown[data.shape[0] - 1 - 10, 20] < 40 and shown[data.shape[0] - 1 - 30, 40] < 40
    assert np.median(shown) > 60


# --- intervals --------------------------------------------------------------------------------------

@pytest.mark.parametrize(("low_percent", "high_percent"), [(0.5, 99.5), (5.0, 95.0), (0.0, 100.0), (25, 75)])
def test_percentile_limits_are_numpys_percentiles(low_percent, high_percent):
    data = np.random.default_rng(5).gamma(2.0, 30.0, (200, 150)).astype(np.float32)
    scaling = Scaling(interval="percentile", low_percent=low_percent, high_percent=high_percent)
    low, high = limits(sample(vips(data)), "percentile", scaling)
    expected = np.percentile(data.astype(np.float64), [low_percent, high_percent])
    assert low == pytest.approx(expected[0], rel=1e-5)
    assert high == pytest.approx(expected[1], rel=1e-5)
    # and display() records the same limits it applied
    _, applied = picture(data, interval="percentile", stretch="linear", low_percent=low_percent,
                         high_percent=high_percent)
    assert (applied.interval, applied.low, applied.high) == ("percentile", low, high)


def test_minmax_limits_are_the_extremes_of_the_finite_pixels():
    data = sky_noise()
    data[10, 10] = 5000.0
    data[20, 20] = -300.0
    data[30, 30] = np.nan
    _, applied = picture(data, interval="minmax", stretch="linear")
    assert (applied.low, applied.high) == (-300.0, 5000.0)


def test_zscale_limits_bracket_the_sky_and_ignore_bright_stars():
    data = sky_noise((200, 200))
    rng = np.random.default_rng(9)
    rows, cols = rng.integers(0, 200, 40), rng.integers(0, 200, 40)
    data[rows, cols] = 20_000.0  # saturated stars
    _, applied = picture(data, interval="zscale", stretch="linear")
    assert 70.0 < applied.low < 100.0 < applied.high < 130.0
    expected = ZScaleInterval().get_limits(data.astype(np.float64))
    assert (applied.low, applied.high) == pytest.approx(expected, rel=1e-3)


def test_sample_keeps_only_finite_values_and_thins_big_images():
    data = sky_noise((100, 100))
    data[:10] = np.nan
    assert sample(vips(data)).size == 90 * 100
    big = np.zeros((2100, 2100), dtype=np.uint8)
    thinned = sample(vips(big))
    assert 250_000 <= thinned.size <= 1_000_000


# --- stretches --------------------------------------------------------------------------------------

@pytest.mark.parametrize("stretch", STRETCHES)
def test_stretch_lookup_table_rises_from_black_to_white(stretch):
    skewed = np.random.default_rng(2).exponential(0.1, 20_000)
    lut = stretch_lut(stretch, skewed if stretch == "histeq" else None)
    assert lut.dtype == np.uint8 and lut.size == 65536
    assert lut[0] == 0 and lut[-1] == 255
    assert np.all(np.diff(lut.astype(int)) >= 0)


@pytest.mark.parametrize("stretch", STRETCHES)
def test_each_stretch_maps_low_to_black_high_to_white_and_never_decreases(stretch):
    ramp = np.linspace(-50.0, 150.0, 4001, dtype=np.float64)
    out, applied = picture(np.tile(ramp, (2, 1)), interval="minmax", stretch=stretch)
    assert (applied.low, applied.high) == (-50.0, 150.0)
    row = out[0].astype(int)
    assert row[0] == 0 and row[-1] == 255
    assert np.all(np.diff(row) >= 0), "a brighter pixel must never render darker"
    assert len(np.unique(row)) > 200, "the ramp should use most of the 256 grey levels"


@pytest.mark.parametrize("stretch", STRETCHES)
def test_values_at_and_beyond_the_interval_limits_saturate(stretch):
    data = sky_noise((100, 100))
    out, applied = picture(data, interval="percentile", stretch=stretch, low_percent=10, high_percent=90)
    assert np.all(out[data <= applied.low] == 0)
    assert np.all(out[data >= applied.high] == 255)
    inside = (data > applied.low) & (data < applied.high)
    order = np.argsort(data[inside])
    assert np.all(np.diff(out[inside][order].astype(int)) >= 0)


@pytest.mark.parametrize(("stretch", "brighter_than_linear"), [
    ("sqrt", True), ("log", True), ("asinh", True), ("linear", False),
])
def test_compressive_stretches_lift_faint_values(stretch, brighter_than_linear):
    data = np.linspace(0.0, 1.0, 1001, dtype=np.float32)[None, :]
    out, _ = picture(data, interval="minmax", stretch=stretch)
    linear, _ = picture(data, interval="minmax", stretch="linear")
    quarter = 250  # the value 0.25
    assert (int(out[0, quarter]) > int(linear[0, quarter]) + 20) is brighter_than_linear


@pytest.mark.parametrize("stretch", STRETCHES)
@pytest.mark.parametrize("dtype", ["float32", "int16", "uint16", "uint8"])
def test_a_constant_image_renders_one_grey_level(stretch, dtype):
    data = np.full((30, 40), 7, dtype=dtype)
    out, applied = picture(data, interval="zscale", stretch=stretch)
    assert out.shape == (30, 40)
    assert len(np.unique(out)) == 1
    assert applied.low < 7 < applied.high


# --- auto ----------------------------------------------------------------------------------------------

def test_auto_leaves_an_8_bit_raster_as_it_is():
    rgb = np.random.default_rng(1).integers(0, 256, (50, 60, 3), dtype=np.uint8)
    image = pyvips.Image.new_from_array(rgb, interpretation="srgb")
    out, applied = display(image, Scaling())
    assert applied.to_dict() == {"interval": "none", "stretch": "none", "low": None, "high": None}
    assert np.array_equal(out.numpy(), rgb)


def test_an_8_bit_raster_with_an_explicit_interval_is_rescaled():
    grey = np.random.default_rng(1).integers(50, 101, (50, 60), dtype=np.uint8)
    out, applied = picture(grey, interval="minmax", stretch="linear")
    assert (applied.interval, applied.low, applied.high) == ("minmax", 50.0, 100.0)
    assert out.min() == 0 and out.max() == 255


@pytest.mark.parametrize("dtype", ["float32", "float64", "int16", "uint16", "int32"])
def test_auto_uses_zscale_and_linear_for_science_data(dtype):
    data = sky_noise().astype(dtype)
    out, applied = picture(data)
    assert (applied.interval, applied.stretch) == ("zscale", "linear")
    expected = ZScaleInterval().get_limits(data.astype(np.float64))
    assert (applied.low, applied.high) == pytest.approx(expected, rel=1e-3)
    assert out.dtype == np.uint8 and out.min() == 0 and out.max() == 255


# --- bad names -----------------------------------------------------------------------------------------

@pytest.mark.parametrize(("values", "message"), [
    ({"interval": "bogus"}, "unknown interval 'bogus'; choose one of auto, zscale, percentile, minmax"),
    ({"stretch": "gamma"}, "unknown stretch 'gamma'; choose one of auto, linear, sqrt, log, asinh, histeq"),
    ({"interval": "ZScale"}, "unknown interval 'ZScale'"),
    ({"stretch": ""}, "unknown stretch ''"),
    ({"interval": "percentile", "low_percent": 90, "high_percent": 10}, "0 <= low < high <= 100"),
    ({"low_percent": -1}, "0 <= low < high <= 100"),
    ({"high_percent": 101}, "0 <= low < high <= 100"),
])
def test_invalid_scaling_raises_a_clear_value_error(values, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        Scaling(**values)
    with pytest.raises(ValueError, match=re.escape(message)):
        Scaling.from_dict(values)


def test_from_dict_round_trips_and_ignores_unrelated_keys():
    scaling = Scaling(interval="percentile", stretch="asinh", low_percent=1.0, high_percent=99.0)
    assert Scaling.from_dict({**scaling.to_dict(), "colormap": "viridis"}) == scaling


@pytest.mark.parametrize("stretch", STRETCHES)
@pytest.mark.parametrize("kind", ["float32", "float64", "int8", "uint8", "int16", "uint16", "int32",
                                  "uint32"])
def test_numpy_makes_the_grey_levels_libvips_makes(kind, stretch):
    """A streamed plane's picture is made by NumPy as its rows are read (`Mapping.rows`): the same grey
    levels as libvips' own scaling of the same values (`Mapping.picture`), bit for bit, values outside the
    interval, on its edges and (floats) NaN, infinities and the largest floats among them."""
    rng = np.random.default_rng(11)
    floating = kind.startswith("float")
    if floating:
        values = np.concatenate([[np.nan, np.inf, -np.inf, 3.4028235e38, -3.4028235e38, 1e-45, -0.0],
                                 [1e300, -1e300, 3.5e38] if kind == "float64" else [],
                                 rng.normal(100.0, 20.0, 200_000), rng.uniform(-1e7, 1e7, 20_000)])
    else:
        info = np.iinfo(kind)
        values = np.concatenate([[info.min, info.max, 0], rng.integers(info.min, info.max, 200_000,
                                                                        endpoint=True)])
    values = values.astype(kind)
    finite = values[np.isfinite(values)].astype(np.float64)
    sample_values = finite[::7]
    low, high = np.percentile(finite, [5.0, 95.0])
    for chosen in (Scaling(stretch=stretch), Scaling(interval="manual", stretch=stretch, low=low, high=high)):
        made = mapping(chosen, sample_values, lambda: pytest.fail("the sample was given"),
                       eight_bit=kind == "uint8")
        rows = values[:values.size // 300 * 300].reshape(-1, 300)  # the special values first
        image = pyvips.Image.new_from_array(np.ascontiguousarray(rows))
        expected = made.picture(image, mask=floating).numpy()
        np.testing.assert_array_equal(made.rows(rows, mask=floating), expected)
        # and the same as the picture `display` makes of that image
        np.testing.assert_array_equal(display(image, chosen, sample_values)[0].numpy(), expected)
