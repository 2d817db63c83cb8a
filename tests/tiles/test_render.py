"""Dynamic tiles from the science pyramid: the spec grammar, interval limits against numpy, stretches,
colormaps, tiles that agree with a render of the whole level, NaN, the disk caches and the lazy build."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np
import pytest
import pyvips
from astropy.io import fits
from astropy.visualization import ZScaleInterval

from app.exceptions import ImageXError
from app.tiles import colormaps, pyramid, render, science
from app.tiles.pyramid import OVERLAP, TILE_SIZE
from tests.tiles.render_helpers import pixels, science_of, sky

# --- the spec grammar -------------------------------------------------------------------------------------

GOOD = [
    ("zscale~asinh~viridis", render.Spec("zscale", "asinh", "viridis")),
    ("minmax~linear~grey", render.Spec("minmax", "linear", "grey")),
    ("p99.5~linear~grey_r", render.Spec("percentile", "linear", "grey_r", percent=99.5)),
    ("p90~histeq~magma", render.Spec("percentile", "histeq", "magma", percent=90.0)),
    ("m-10.5:300~sqrt~heat", render.Spec("manual", "sqrt", "heat", low=-10.5, high=300.0)),
    ("m0:255~log~cool_r", render.Spec("manual", "log", "cool_r", low=0.0, high=255.0)),
    ("m1e-7:2e+21~ahisteq~rainbow", render.Spec("manual", "ahisteq", "rainbow", low=1e-7, high=2e21)),
    ("m0.000001:0.5~linear~inferno", render.Spec("manual", "linear", "inferno", low=1e-6, high=0.5)),
]


@pytest.mark.parametrize(("text", "expected"), GOOD)
def test_good_specs_parse_and_spell_themselves_back(text, expected):
    spec = render.parse(text)
    assert spec == expected
    assert spec.text == text


BAD = [
    ("", "<interval>~<stretch>~<colormap>"),
    ("zscale", "<interval>~<stretch>~<colormap>"),
    ("zscale~asinh", "<interval>~<stretch>~<colormap>"),
    ("zscale~asinh~grey~x", "<interval>~<stretch>~<colormap>"),
    ("zscale~~grey", "unknown stretch"),
    ("zscale~bogus~grey", "unknown stretch 'bogus'"),
    ("zscale~Linear~grey", "unknown stretch"),
    ("zscale~linear~jet", "unknown colormap 'jet'"),
    ("zscale~linear~grey_r_r", "unknown colormap"),
    ("zscale~linear~_r", "unknown colormap"),
    ("ZSCALE~linear~grey", "unknown interval"),
    ("sigma~linear~grey", "unknown interval"),
    ("p~linear~grey", "unknown interval"),
    ("p50~linear~grey", "50 < N < 100"),
    ("p100~linear~grey", "50 < N < 100"),
    ("p-99~linear~grey", "50 < N < 100"),
    ("p1e400~linear~grey", "50 < N < 100"),
    ("p99.50~linear~grey", "write p99.5~linear~grey"),
    ("p099.5~linear~grey", "write p99.5~linear~grey"),
    ("p+99~linear~grey", "unknown interval"),
    ("m300:-10.5~linear~grey", "low < high"),
    ("m1:1~linear~grey", "low < high"),
    ("m1:~linear~grey", "unknown interval"),
    ("m:1~linear~grey", "unknown interval"),
    ("mnan:1~linear~grey", "unknown interval"),
    ("minf:1~linear~grey", "unknown interval"),
    ("m1:1e999~linear~grey", "finite"),
    ("m-1e999:1~linear~grey", "finite"),
    ("m1.0:2~linear~grey", "write m1:2~linear~grey"),
    ("m-0:1~linear~grey", "write m0:1~linear~grey"),
    ("m1e2:1000~linear~grey", "write m100:1000~linear~grey"),
    ("m0.0000001:1~linear~grey", "write m1e-7:1~linear~grey"),
    ("m1:2e21~linear~grey", "write m1:2e+21~linear~grey"),
    ("m1,2~linear~grey", "unknown interval"),
    ("..~linear~grey", "unknown interval"),
    ("zscale~linear~grey\x00", "unknown colormap"),
    ("zscale~linear~grey ", "unknown colormap"),
    ("zscale~" + "linear" * 30 + "~grey", "longer than"),
    ("m" + "1" * 60 + ":" + "2" * 60 + "~linear~grey", "longer than"),
]


@pytest.mark.parametrize(("text", "message"), BAD)
def test_bad_specs_are_refused_with_a_precise_message(text, message):
    with pytest.raises(render.SpecError) as caught:
        render.parse(text)
    assert message in str(caught.value)


# what JavaScript's String(number) gives: display.js writes numbers that way
NUMBERS = [(0.0, "0"), (-0.0, "0"), (300.0, "300"), (-10.5, "-10.5"), (99.5, "99.5"), (0.1 + 0.2,
           "0.30000000000000004"), (1e-6, "0.000001"), (1e-7, "1e-7"), (1.5e-10, "1.5e-10"),
           (1e21, "1e+21"), (1e20, "100000000000000000000"), (123456.789, "123456.789"),
           (-2.5e-8, "-2.5e-8"), (6.02214076e23, "6.02214076e+23")]


@pytest.mark.parametrize(("value", "text"), NUMBERS)
def test_numbers_are_spelled_as_javascript_does(value, text):
    assert render.number_text(value) == text
    assert float(text) == value


@pytest.mark.parametrize(("display", "expected"), [
    ({"interval": "zscale", "stretch": "linear", "low": 90.0, "high": 120.0}, "zscale~linear~grey"),
    ({"interval": "minmax", "stretch": "asinh", "low": 0.0, "high": 9.0}, "minmax~asinh~grey"),
    ({"interval": "percentile", "stretch": "sqrt", "low": -1.5, "high": 250.0}, "m-1.5:250~sqrt~grey"),
    ({"interval": "none", "stretch": "none", "low": None, "high": None}, "m0:255~linear~grey"),
    ({}, "zscale~linear~grey"),
])
def test_the_default_spec_follows_how_the_image_was_ingested(display, expected):
    assert render.default_spec(display).text == expected


# --- geometry ---------------------------------------------------------------------------------------------

def test_tile_boxes_follow_deep_zoom_geometry():
    # 300x200: levels 0-9; the deepest has 2x1 tiles of 255 and 47 pixels (overlap 1)
    assert pyramid.max_level(300, 200) == 9
    assert pyramid.level_size(300, 200, 9) == (300, 200)
    assert pyramid.level_size(300, 200, 8) == (150, 100)
    assert pyramid.level_size(300, 200, 0) == (1, 1)
    assert render.tile_box(300, 200, 9, 0, 0) == (0, 0, TILE_SIZE + OVERLAP, 200)
    assert render.tile_box(300, 200, 9, 1, 0) == (TILE_SIZE - OVERLAP, 0, 300 - TILE_SIZE + OVERLAP, 200)
    for level, col, row in [(9, 2, 0), (9, 0, 1), (10, 0, 0), (-1, 0, 0), (9, -1, 0), (0, 1, 0)]:
        assert render.tile_box(300, 200, level, col, row) is None


# --- limits -----------------------------------------------------------------------------------------------

def finite(data: np.ndarray) -> np.ndarray:
    values = data.astype(np.float64).ravel()
    return values[np.isfinite(values)]


@pytest.fixture
def sky_science(tmp_path: Path) -> tuple[str, np.ndarray]:
    data = sky((200, 300))
    data[50:60, 70:90] = np.nan  # a blank patch: left out of every interval
    return science_of(tmp_path, data), data


def test_minmax_limits_are_numpys(sky_science):
    path, data = sky_science
    scale = render.measure(path, render.parse("minmax~linear~grey"))
    assert (scale.low, scale.high) == pytest.approx((np.nanmin(data), np.nanmax(data)))


@pytest.mark.parametrize("percent", [99.5, 90.0, 75.0])
def test_percentile_limits_keep_the_central_percentage(sky_science, percent):
    path, data = sky_science
    spec = render.Spec("percentile", "linear", "grey", percent=percent)
    scale = render.measure(path, spec)
    edge = (100 - percent) / 2
    expected = np.percentile(finite(data), [edge, 100 - edge])
    assert (scale.low, scale.high) == pytest.approx(tuple(expected), rel=1e-6)


def test_zscale_limits_are_astropys_on_the_same_values(sky_science):
    path, data = sky_science
    scale = render.measure(path, render.parse("zscale~linear~grey"))
    low, high = ZScaleInterval().get_limits(finite(data))
    assert (scale.low, scale.high) == pytest.approx((low, high), rel=1e-6)
    assert 80 < scale.low < 100 < scale.high < 150  # around the sky (sigma 5), not the stars (200+)


def test_manual_limits_are_taken_as_given(sky_science):
    path, _ = sky_science
    scale = render.measure(path, render.parse("m-10.5:300~linear~grey"))
    assert (scale.low, scale.high, scale.curve) == (-10.5, 300.0, ())


def test_histeq_keeps_a_curve_of_the_values_inside_the_interval(sky_science):
    path, data = sky_science
    scale = render.measure(path, render.parse("minmax~histeq~grey"))
    curve = np.array(scale.curve)
    assert len(curve) == 257 and np.all(np.diff(curve) >= 0) and 0 <= curve[0] and curve[-1] <= 1
    normalised = (finite(data) - scale.low) / (scale.high - scale.low)
    inside = normalised[(normalised > 0) & (normalised < 1)]
    assert curve[128] == pytest.approx(np.median(inside), rel=1e-6)


def test_limits_are_measured_once_and_cached_on_disk(sky_science):
    path, _ = sky_science
    folder = Path(path).parent
    spec = render.parse("p99.5~linear~grey")
    first = render.scale_of(folder, spec, path)
    cache = folder / "display" / spec.text / "scale.json"
    assert json.loads(cache.read_text())["low"] == first.low
    # a scale file that says otherwise wins: tiles of one view always use the one stored scale
    cache.write_text(json.dumps({"low": 1.0, "high": 2.0, "curve": []}))
    assert render.scale_of(folder, spec, path) == render.Scale(1.0, 2.0, ())


# --- stretches --------------------------------------------------------------------------------------------

def ramp_picture(tmp_path: Path, stretch: str) -> np.ndarray:
    """A left-to-right ramp 0..1 over 512 columns, rendered with the interval 0..1 at full resolution."""
    data = np.tile(np.linspace(0.0, 1.0, 512, dtype=np.float32), (4, 1))
    path = science_of(tmp_path, data)
    spec = render.parse(f"m0:1~{stretch}~grey")
    scale = render.scale_of(Path(path).parent, spec, path)
    level = pyramid.max_level(512, 4)
    return pixels(render.render_region(path, scale, spec, level, (0, 0, 512, 4)))[1, :, 0].astype(int)


@pytest.mark.parametrize("stretch", ["linear", "sqrt", "log", "asinh", "histeq"])
def test_each_stretch_rises_from_black_to_white(tmp_path, stretch):
    row = ramp_picture(tmp_path, stretch)
    assert row[0] == 0 and row[-1] == 255
    assert np.all(np.diff(row) >= 0), "the stretch must never turn a brighter value darker"
    assert len(np.unique(row)) > 100


@pytest.mark.parametrize(("stretch", "middle"), [("linear", (126, 129)), ("sqrt", (175, 190)),
                                                 ("log", (200, 245)), ("asinh", (150, 215)),
                                                 ("histeq", (120, 135))])
def test_each_stretch_has_its_shape(tmp_path, stretch, middle):
    """Half way up the ramp: linear stays half way, sqrt, log and asinh lift faint values, histeq of a
    uniform ramp is linear."""
    row = ramp_picture(tmp_path, stretch)
    assert middle[0] <= row[256] <= middle[1]


def test_adaptive_equalisation_brings_out_faint_and_bright_regions_alike(tmp_path):
    rng = np.random.default_rng(2)
    data = rng.normal(0.0, 1.0, (256, 512)).astype(np.float32)
    data[:, 256:] += 100.0  # a bright half: with one global mapping the faint half's noise is lost
    path = science_of(tmp_path, data)
    level = pyramid.max_level(512, 256)
    stds = {}
    for stretch in ("linear", "ahisteq"):
        spec = render.parse(f"minmax~{stretch}~grey")
        scale = render.scale_of(Path(path).parent, spec, path)
        picture = pixels(render.render_region(path, scale, spec, level, (0, 0, 512, 256)))[..., 0]
        stds[stretch] = (picture[64:192, 64:192].std(), picture[64:192, 320:448].std())
    faint_linear, bright_linear = stds["linear"]
    faint_adaptive, bright_adaptive = stds["ahisteq"]
    assert faint_linear < 3 and bright_linear < 3
    assert faint_adaptive > 5 * faint_linear and bright_adaptive > 5 * bright_linear
    assert faint_adaptive == pytest.approx(bright_adaptive, rel=0.3)


# --- colormaps --------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("name", "first", "last"), [
    ("grey", (0,), (255,)), ("viridis", (0x44, 0x01, 0x54), (0xfd, 0xe7, 0x25)),
    ("magma", (0, 0, 4), (0xfc, 0xfd, 0xbf)), ("inferno", (0, 0, 4), (0xfc, 0xff, 0xa4)),
    ("heat", (0, 0, 0), (255, 255, 255)), ("cool", (0, 255, 255), (255, 0, 255)),
    ("rainbow", (128, 0, 255), (255, 0, 0)),
])
def test_colormap_endpoints(name, first, last):
    table = colormaps.table(name)
    assert table.shape == (256, len(first)) and table.dtype == np.uint8
    assert tuple(table[0]) == first and tuple(table[-1]) == last


@pytest.mark.parametrize("name", colormaps.NAMES)
def test_inverted_colormaps_are_reversed(name):
    assert np.array_equal(colormaps.table(name + "_r"), colormaps.table(name)[::-1])
    assert not np.array_equal(colormaps.table(name + "_r"), colormaps.table(name))


@pytest.mark.parametrize("name", ["viridis", "magma", "inferno", "grey", "heat"])
def test_sequential_colormaps_grow_brighter(name):
    table = colormaps.table(name).astype(float)
    luminance = table @ ([0.299, 0.587, 0.114] if table.shape[1] == 3 else [1.0])
    assert np.all(np.diff(luminance) >= -0.5)


def test_an_unknown_colormap_is_refused():
    with pytest.raises(ValueError, match="unknown colormap 'jet'"):
        colormaps.table("jet")


# --- tiles against a render of the whole level ------------------------------------------------------------

SPECS = ["zscale~linear~grey", "p99.5~histeq~viridis", "m90:110~ahisteq~magma_r", "minmax~asinh~heat",
         "zscale~log~cool"]


@pytest.mark.parametrize("spec_text", SPECS)
def test_every_tile_equals_the_same_region_of_a_whole_level_render(tmp_path, spec_text):
    """So neighbouring tiles meet without seams, at full resolution and at shrunk levels, including
    levels below the science pyramid's smallest page."""
    width, height = 1001, 700
    data = sky((height, width))
    data[10, 10] = np.nan
    path = science_of(tmp_path, data)
    assert science.page_count(path) == 3  # 1001, 500, 250 pixels wide
    spec = render.parse(spec_text)
    scale = render.scale_of(Path(path).parent, spec, path)
    for level in (10, 9, 8, 6, 2, 0):
        level_width, level_height = pyramid.level_size(width, height, level)
        whole = pixels(render.render_region(path, scale, spec, level, (0, 0, level_width, level_height)))
        assert whole.shape[:2] == (level_height, level_width)
        for col in range(math.ceil(level_width / TILE_SIZE)):
            for row in range(math.ceil(level_height / TILE_SIZE)):
                box = render.tile_box(width, height, level, col, row)
                assert box is not None
                left, top, box_width, box_height = box
                tile = pixels(render.render_region(path, scale, spec, level, box))
                assert np.array_equal(tile, whole[top:top + box_height, left:left + box_width]), \
                    (level, col, row)


def test_full_resolution_tiles_show_the_values_as_the_interval_maps_them(tmp_path):
    data = sky((300, 400))
    path = science_of(tmp_path, data)
    spec = render.parse("m90:110~linear~grey")
    scale = render.scale_of(Path(path).parent, spec, path)
    box = render.tile_box(400, 300, pyramid.max_level(400, 300), 1, 1)
    assert box is not None
    left, top, box_width, box_height = box
    tile = pixels(render.render_region(path, scale, spec, pyramid.max_level(400, 300), box))[..., 0]
    expected = np.clip((data[top:top + box_height, left:left + box_width] - 90.0) / 20.0, 0, 1) * 255
    assert np.abs(tile.astype(float) - expected).max() <= 1.0


def test_nan_renders_as_the_low_end_of_the_colormap_and_stays_nan_in_the_pyramid(tmp_path):
    data = sky((300, 300))
    data[:40, :] = np.nan
    path = science_of(tmp_path, data)
    full = pixels(science.open_page(path, 0))[..., 0]
    assert np.isnan(full[:40]).all() and np.isfinite(full[40:]).all()
    for colormap, black in [("viridis", (0x44, 0x01, 0x54)), ("viridis_r", (0xfd, 0xe7, 0x25))]:
        spec = render.parse(f"zscale~asinh~{colormap}")
        scale = render.scale_of(Path(path).parent, spec, path)
        assert math.isfinite(scale.low) and math.isfinite(scale.high)
        tile = pixels(render.render_region(path, scale, spec, pyramid.max_level(300, 300), (0, 0, 255, 255)))
        assert np.all(tile[:40] == black)
        assert tile[60:].std() > 5


def test_a_rendered_tile_is_cached_and_served_identically(tmp_path):
    path = science_of(tmp_path, sky((300, 300)))
    folder = Path(path).parent
    (folder / "image.dzi").write_text("<Image/>")
    level = pyramid.max_level(300, 300)
    first = render.render_tile(str(folder), path, "zscale~sqrt~inferno", level, 1, 0, 85)
    assert first is not None and first.startswith(b"\xff\xd8")
    cached = render.tile_path(folder, "zscale~sqrt~inferno", level, 1, 0)
    assert cached.read_bytes() == first
    decoded = pyvips.Image.new_from_buffer(first, "")
    assert (decoded.width, decoded.height, decoded.bands) == (300 - TILE_SIZE + OVERLAP, TILE_SIZE + 1, 3)
    assert not [p for p in cached.parent.iterdir() if p.name.startswith(".")]  # no temporary files left
    assert render.render_tile(str(folder), path, "zscale~sqrt~inferno", level, 2, 0, 85) is None


def test_a_tile_of_a_deleted_image_does_not_make_its_folder_again(tmp_path):
    path = science_of(tmp_path, sky((64, 64)))
    kept = tmp_path / "elsewhere" / "science.tif"
    kept.parent.mkdir()
    os.replace(path, kept)
    Path(path).parent.rmdir()
    assert render.render_tile(str(Path(path).parent), str(kept), "zscale~linear~grey", 6, 0, 0, 85)
    assert not Path(path).parent.exists()


# --- the science pyramid ----------------------------------------------------------------------------------

def test_the_science_pyramid_keeps_float32_values_and_halves_each_page(tmp_path):
    data = sky((1001, 700))
    path = science_of(tmp_path, data)
    sizes = [(science.open_page(path, page).width, science.open_page(path, page).height)
             for page in range(science.page_count(path))]
    assert sizes == [(700, 1001), (350, 500), (175, 250)]
    full = science.open_page(path, 0)
    assert str(full.format) == "float" and full.bands == 1
    assert np.array_equal(pixels(full)[..., 0], data)
    assert science.pixel(path, 699, 1000) == (700, 1001, pytest.approx(float(data[1000, 699])))
    with pytest.raises(IndexError, match="outside the image"):
        science.pixel(path, 700, 0)


def test_a_colour_raster_keeps_its_grey_level(tmp_path):
    rgb = np.zeros((20, 30, 3), dtype=np.uint8)
    rgb[..., 0] = 200
    path = science_of(tmp_path, rgb)
    [[grey]] = pixels(science.open_page(path, 0))[:1, :1, 0]
    assert grey == pytest.approx(pixels(pyvips.Image.new_from_array(rgb).colourspace("b-w"))[0, 0, 0], abs=1)


def test_ensure_builds_a_missing_science_pyramid_from_the_original(tmp_path):
    data = sky((80, 120))
    original = tmp_path / "old.fits"
    fits.HDUList([fits.PrimaryHDU(), fits.ImageHDU(data, name="SCI")]).writeto(original)
    folder = tmp_path / "tiles"
    folder.mkdir()
    built = science.ensure(str(folder), str(original), 1, 10**8)
    assert built == str(folder / science.NAME)
    # FITS stores the bottom row first; the science pyramid is in display orientation, top row first
    assert np.array_equal(pixels(science.open_page(built, 0))[..., 0], data[::-1])
    assert sorted(p.name for p in folder.iterdir()) == [science.LOCK, science.NAME]
    stamp = os.stat(built).st_mtime_ns
    assert science.ensure(str(folder), "/nonexistent/file.fits", 1, 10**8) == built
    assert os.stat(built).st_mtime_ns == stamp


def test_ensure_says_when_the_original_is_gone(tmp_path):
    folder = tmp_path / "tiles"
    folder.mkdir()
    with pytest.raises(science.MissingOriginal, match=r"no longer at /gone/away\.fits"):
        science.ensure(str(folder), "/gone/away.fits", 0, 10**8)
    with pytest.raises(ImageXError, match="has no tiles"):
        science.ensure(str(tmp_path / "deleted"), "/gone/away.fits", 0, 10**8)


def test_the_sample_is_read_once_per_image_and_shared_by_every_spec(sky_science):
    path, data = sky_science
    folder = Path(path).parent
    render.scale_of(folder, render.parse("zscale~linear~grey"), path)
    cached = folder / "display" / render.SAMPLE_FILE
    assert np.array_equal(np.sort(np.load(cached)), np.sort(finite(data)).astype(np.float32))
    np.save(cached, np.array([3.0, 5.0, 11.0], dtype=np.float32))
    assert render.scale_of(folder, render.parse("minmax~linear~grey"), path) == render.Scale(3.0, 11.0, ())
