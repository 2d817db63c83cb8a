"""The readout's sky description against astropy: the browser's own code (app/static/sky.js, run under
node) gives every pixel's position within 0.1 arcsec of `pixel_to_world` for TAN, TAN-SIP, ZEA and CAR,
near a pole and across RA 0/360; plus Galactic, formatting, physical pixel sizes and go-to positions."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from astropy.coordinates import SkyCoord
from astropy.wcs import WCS, Sip

from app.formats.fits_header import harvest
from app.samples import celestial_wcs
from app.sky import readout
from app.sky.grid import MAX_CELLS
from app.sky.readout import OffImage, locate, physical_scale, sky_readout
from app.store.records import HeaderValue

SKY_JS = Path(__file__).resolve().parents[2] / "app" / "static" / "sky.js"
NODE = shutil.which("node")
ACCURACY_ARCSEC = 0.1
# Runs sky.js as the browser does: one Grid from the description, positions for every asked pixel.
RUN_SKY_JS = """
const sky = require(process.argv[1]);
let input = "";
process.stdin.on("data", (chunk) => { input += chunk; });
process.stdin.on("end", () => {
  const job = JSON.parse(input);
  const grid = new sky.Grid(job.description);
  const out = {
    icrs: job.points.map(([x, y]) => grid.sky(x, y)),
    galactic: job.points.map(([x, y]) => grid.galactic(x, y)),
    local: job.local.map(([x, y]) => grid.local(x, y)),
    rough: job.points.map(([x, y]) => grid.isRough(x, y)),
    ra: job.ra.map(sky.formatRa),
    dec: job.dec.map(sky.formatDec),
    nice: job.nice.map(([most, kind]) =>
      sky.niceLength(most, kind === "angle" ? sky.ANGLE_UNITS : sky.LENGTH_UNITS)),
  };
  process.stdout.write(JSON.stringify(out));
});
"""


def run_sky_js(description: dict[str, Any] | None, points: np.ndarray, *, local: Any = (), ra: Any = (),
               dec: Any = (), nice: Any = ()) -> dict[str, Any]:
    assert NODE is not None, "node is needed (it is installed with npm)"
    job = {"description": description or {"width": 1, "height": 1, "nx": 1, "ny": 1, "nodes": [],
                                          "galactic": []},
           "points": points.tolist(), "local": list(local), "ra": list(ra), "dec": list(dec),
           "nice": list(nice)}
    done = subprocess.run([NODE, "-e", RUN_SKY_JS, str(SKY_JS)], input=json.dumps(job), capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return dict(json.loads(done.stdout))


def stored_header(wcs: WCS, width: int, height: int, **cards: Any) -> dict[str, HeaderValue]:
    """The header as ingest stores it: astropy's cards, harvested into typed values."""
    header = wcs.to_header(relax=True)
    header["NAXIS"] = 2
    header["NAXIS1"] = width
    header["NAXIS2"] = height
    for keyword, value in cards.items():
        header[keyword] = value
    values, _ = harvest(header)
    return values


def sip_wcs(ra: float, dec: float, size: int) -> WCS:
    """TAN-SIP with real third-order distortion: pixels at the corners of a 2048 image."""
    wcs = celestial_wcs(ra, dec, size, size, scale_arcsec=1.5, rotation_deg=12)
    wcs.wcs.ctype = ["RA---TAN-SIP", "DEC--TAN-SIP"]
    a, b = np.zeros((4, 4)), np.zeros((4, 4))
    a[2, 0], a[0, 2], a[1, 1], a[3, 0], a[1, 2] = 6e-6, -4.5e-6, 9e-6, 3e-9, 1.2e-9
    b[0, 2], b[2, 0], b[1, 1], b[0, 3], b[2, 1] = 7.5e-6, -3e-6, -6e-6, -6e-9, 1.8e-9
    wcs.sip = Sip(a, b, None, None, wcs.wcs.crpix)
    return wcs


def zea_wcs() -> WCS:
    return celestial_wcs(210.0, -35.0, 2000, 1500, scale_arcsec=36.0, rotation_deg=-25, projection="ZEA")


def car_wcs() -> WCS:
    return celestial_wcs(0.4, -20.0, 1200, 800, scale_arcsec=30.0, projection="CAR")


def plain_wcs(ctype: list[str], crval: list[float], crpix: list[float], cdelt: list[float]) -> WCS:
    """A WCS of one projection with no rotation: for all-sky and other wide maps."""
    wcs = WCS(naxis=2)
    wcs.wcs.ctype, wcs.wcs.crval, wcs.wcs.crpix, wcs.wcs.cdelt = ctype, crval, crpix, cdelt
    return wcs


def pole_wcs() -> WCS:
    # the north celestial pole itself lies inside the image
    return celestial_wcs(40.0, 89.9, 1000, 1000, scale_arcsec=2.0, rotation_deg=30)


CASES = {
    # name: (wcs, width, height)
    "tan": (celestial_wcs(150.1, 2.2, 600, 600), 600, 600),
    "tan-sip": (sip_wcs(150.1, 2.2, 2048), 2048, 2048),
    "tan-sip-ra0": (sip_wcs(359.95, 10.0, 2048), 2048, 2048),
    "zea-wide": (zea_wcs(), 2000, 1500),
    "car-ra0": (car_wcs(), 1200, 800),
    "tan-pole": (pole_wcs(), 1000, 1000),
    "zea-south-pole": (celestial_wcs(300.0, -89.5, 900, 700, scale_arcsec=8.0, projection="ZEA"), 900, 700),
}


def probe_points(width: int, height: int, count: int = 4000, seed: int = 3) -> np.ndarray:
    """Corners, edges (pixel edges and centres), the centre and random positions, 0-based pixels."""
    rng = np.random.default_rng(seed)
    edges_x = np.linspace(-0.5, width - 0.5, 41)
    edges_y = np.linspace(-0.5, height - 0.5, 41)
    points = [(-0.5, -0.5), (width - 0.5, -0.5), (-0.5, height - 0.5), (width - 0.5, height - 0.5),
              (0.0, 0.0), (width - 1.0, height - 1.0), ((width - 1) / 2, (height - 1) / 2)]
    points += [(x, y) for x in edges_x for y in (-0.5, 0.0, height - 1.0, height - 0.5)]
    points += [(x, y) for y in edges_y for x in (-0.5, 0.0, width - 1.0, width - 0.5)]
    random = np.column_stack([rng.uniform(-0.5, width - 0.5, count), rng.uniform(-0.5, height - 0.5, count)])
    return np.vstack([np.array(points), random])


def separations_arcsec(found: list[Any], expected: SkyCoord) -> np.ndarray:
    assert all(item is not None for item in found), "sky.js gave no position for a pixel of the image"
    values = np.array(found, dtype=float)
    return np.asarray(SkyCoord(values[:, 0], values[:, 1], unit="deg", frame=expected.frame.name)
                      .separation(expected).arcsec)


@pytest.mark.parametrize("name", list(CASES))
def test_browser_code_agrees_with_astropy_everywhere(name):
    wcs, width, height = CASES[name]
    description = sky_readout(stored_header(wcs, width, height), width, height)
    celestial = description["celestial"]
    assert celestial is not None
    assert celestial["nx"] <= MAX_CELLS and celestial["ny"] <= MAX_CELLS
    assert celestial["max_error_arcsec"] < ACCURACY_ARCSEC
    points = probe_points(width, height)
    out = run_sky_js(celestial, points)
    expected = wcs.pixel_to_world(points[:, 0], points[:, 1]).icrs
    errors = separations_arcsec(out["icrs"], expected)
    assert errors.max() < ACCURACY_ARCSEC, f"{name}: worst {errors.max():.4f} arcsec"
    galactic_errors = separations_arcsec(out["galactic"], expected.galactic)
    assert galactic_errors.max() < ACCURACY_ARCSEC, f"{name}: worst Galactic {galactic_errors.max():.4f}"


def test_ra_zero_image_really_straddles_ra_zero_and_pole_image_holds_the_pole():
    wcs, width, height = CASES["car-ra0"]
    ras = wcs.pixel_to_world(np.array([0, width - 1]), np.array([height / 2, height / 2])).icrs.ra.deg
    assert ras.max() > 350 and ras.min() < 10
    wcs, width, height = CASES["tan-pole"]
    x, y = wcs.world_to_pixel(SkyCoord(0, 90, unit="deg"))
    assert 0 < x < width - 1 and 0 < y < height - 1


def test_sip_distortion_is_real_and_the_grid_follows_it():
    wcs, width, height = CASES["tan-sip"]
    linear = celestial_wcs(150.1, 2.2, width, height, scale_arcsec=1.5, rotation_deg=12)
    corner = (np.array([0.0]), np.array([0.0]))
    shift = wcs.pixel_to_world(*corner).separation(linear.pixel_to_world(*corner)).arcsec[0]
    assert shift > 8, f"the SIP terms move a corner only {shift:.2f} arcsec"
    # the grid had to be refined beyond its first guess to follow the distortion
    description = sky_readout(stored_header(wcs, width, height), width, height)
    assert description["celestial"]["nx"] > 4


def test_local_scale_and_compass_follow_the_wcs():
    # rotated by 30 degrees with 2 arcsec pixels: north is 30 degrees from +y, east 90 degrees from north
    wcs = celestial_wcs(150.1, 2.2, 500, 500, scale_arcsec=2.0, rotation_deg=30)
    description = sky_readout(stored_header(wcs, 500, 500), 500, 500)
    out = run_sky_js(description["celestial"], np.zeros((0, 2)), local=[[249.5, 249.5], [10, 480]])
    for local in out["local"]:
        assert local["arcsecPerPixel"] == pytest.approx(2.0, rel=1e-3)
        north, east = np.array(local["north"]), np.array(local["east"])
        # what astropy says: step a little north/east of the centre and see where it lands
        centre = wcs.pixel_to_world(249.5, 249.5)
        for vector, offset in ((north, centre.directional_offset_by(0, 1 / 3600)),
                               (east, centre.directional_offset_by(np.pi / 2, 1 / 3600))):
            x, y = wcs.world_to_pixel(offset)
            expected = np.array([x - 249.5, y - 249.5])
            expected /= np.linalg.norm(expected)
            assert np.degrees(np.arccos(np.clip(vector @ expected, -1, 1))) < 0.5
    # east is to the left of north (the sky seen from inside), as the WCS says (cd[0][0] < 0)
    north, east = np.array(out["local"][0]["north"]), np.array(out["local"][0]["east"])
    assert north[0] * east[1] - north[1] * east[0] > 0


@pytest.mark.parametrize(("degrees", "ra"), [
    (0.0, "00:00:00.000"),
    (150.1, "10:00:24.000"),
    (359.99999999, "00:00:00.000"),  # rounds up to 24h, which is 0h
    (-0.5, "23:58:00.000"),
    (89.9999, "05:59:59.976"),
    (14.99999999, "01:00:00.000"),  # 59.99999 seconds carry into the hours
])
def test_ra_formatting_rounds_and_carries(degrees, ra):
    assert run_sky_js(None, np.zeros((0, 2)), ra=[degrees])["ra"] == [ra]


@pytest.mark.parametrize(("degrees", "dec"), [
    (0.0, "+00:00:00.00"),
    (-0.5, "-00:30:00.00"),
    (2.2, "+02:12:00.00"),
    (89.999999999, "+90:00:00.00"),
    (-59.68444444, "-59:41:04.00"),
    (-0.99999999, "-01:00:00.00"),  # 59.99996 seconds carry into the degrees
])
def test_dec_formatting_rounds_and_carries(degrees, dec):
    assert run_sky_js(None, np.zeros((0, 2)), dec=[degrees])["dec"] == [dec]


@pytest.mark.parametrize(("most", "kind", "value", "unit"), [
    (150.0, "angle", 2, "\u2032"),
    (45.0, "angle", 20, "\u2033"),
    (0.8, "angle", 0.5, "\u2033"),
    (9000.0, "angle", 2, "\u00b0"),
    (3.2e-6, "length", 2, "\u00b5m"),
    (0.07, "length", 50, "mm"),
])
def test_scale_bar_lengths_are_round(most, kind, value, unit):
    [nice] = run_sky_js(None, np.zeros((0, 2)), nice=[[most, kind]])["nice"]
    assert nice["value"] == pytest.approx(value) and nice["unit"] == unit
    assert nice["size"] <= most


def test_image_without_celestial_wcs_has_no_sky_description():
    header: dict[str, HeaderValue] = {"NAXIS": 2, "NAXIS1": 100, "NAXIS2": 80, "CTYPE1": "LINEAR",
                                      "CTYPE2": "LINEAR", "CDELT1": 0.5, "CUNIT1": "um", "CDELT2": 0.25,
                                      "CUNIT2": "um"}
    description = sky_readout(header, 100, 80)
    assert description["celestial"] is None
    assert description["physical"] == {"x": pytest.approx(0.5e-6), "y": pytest.approx(0.25e-6),
                                       "source": "CDELT1/CUNIT1"}
    assert sky_readout({"NAXIS": 2}, 10, 10) == {"celestial": None, "geographic": None, "physical": None}


@pytest.mark.parametrize(("cards", "expected"), [
    ({"CDELT1": 2.0, "CUNIT1": "nm"}, (2e-9, 2e-9)),
    ({"CDELT1": -0.001, "CUNIT1": "mm", "CDELT2": 0.002, "CUNIT2": "mm"}, (1e-6, 2e-6)),
    ({"CDELT1": 3.0, "CUNIT1": "m"}, (3.0, 3.0)),
    ({"CDELT1": 0.5, "CUNIT1": "\u00b5m"}, (0.5e-6, 0.5e-6)),
    ({"XPIXSIZE": 6.5, "YPIXSIZE": 6.5}, (6.5e-6, 6.5e-6)),
    ({"PIXSIZE": 0.16}, (0.16e-6, 0.16e-6)),
    ({"XPIXSZ": 3.76}, (3.76e-6, 3.76e-6)),
    ({"CDELT1": 0.001, "CUNIT1": "deg"}, None),  # an angle, not a length
    ({"CDELT1": 2.0, "CUNIT1": "<script>"}, None),
    ({"CDELT1": "2", "CUNIT1": "um"}, None),
    ({"XPIXSIZE": -0.0}, None),
    ({"XPIXSIZE": True}, None),
    # OME (and the DM and ImageJ readers, which record their calibration under OME's names); default um
    ({"PhysicalSizeX": 0.25, "PhysicalSizeY": 0.5}, (0.25e-6, 0.5e-6)),
    ({"PhysicalSizeX": 2.5, "PhysicalSizeXUnit": "nm"}, (2.5e-9, 2.5e-9)),
    ({"PhysicalSizeX": 1.5, "PhysicalSizeXUnit": "Å", "PhysicalSizeY": 1.5, "PhysicalSizeYUnit": "Å"},
     (1.5e-10, 1.5e-10)),
    ({"PhysicalSizeX": 1.0, "PhysicalSizeXUnit": "s"}, None),  # a time, not a length
    # DICOM: row spacing (a pixel's height) first, in mm
    ({"PixelSpacing": "0.5\\0.25"}, (0.25e-3, 0.5e-3)),
    ({"ImagerPixelSpacing": "0.139\\0.139"}, (0.139e-3, 0.139e-3)),
    ({"PixelSpacing": "0.5"}, None),
    ({"PixelSpacing": "a\\b"}, None),
    ({"PIXSIZE": "inf"}, None),
])
def test_physical_pixel_size_from_the_header(cards, expected):
    scale = physical_scale(cards)
    if expected is None:
        assert scale is None
    else:
        assert scale is not None
        assert (scale["x"], scale["y"]) == (pytest.approx(expected[0]), pytest.approx(expected[1]))


def test_locate_gives_astropy_pixels_and_refuses_positions_off_the_image():
    wcs, width, height = CASES["tan-sip-ra0"]
    header = stored_header(wcs, width, height)
    target = wcs.pixel_to_world(100.25, 1900.75).icrs
    x, y = locate(header, width, height, float(target.ra.deg), float(target.dec.deg))
    assert (x, y) == (pytest.approx(100.25, abs=1e-3), pytest.approx(1900.75, abs=1e-3))
    with pytest.raises(OffImage, match=r"off this image: it would be at FITS pixel x .*spans x 1 to 2048"):
        locate(header, width, height, 1.0, 10.0)
    # the opposite side of the sky: TAN cannot project it at all
    with pytest.raises(OffImage, match="projection does not reach"):
        locate(header, width, height, 180.0, -10.0)
    with pytest.raises(ValueError, match="no celestial WCS"):
        locate({"NAXIS": 2}, 10, 10, 1.0, 1.0)


def test_locate_on_a_csc_map_accepts_what_lands_within_a_fraction_of_a_pixel():
    # COBE quadrilateralized spherical cube: wcslib's inverse is approximate (tens of arcsec), yet
    # astropy's pixel for a position is right to a fraction of a pixel; a strict 1" round trip refused all
    wcs = plain_wcs(["RA---CSC", "DEC--CSC"], [150.0, 2.0], [256.5, 256.5], [-0.05, 0.05])
    width = height = 512
    header = stored_header(wcs, width, height)
    points = np.random.default_rng(8).uniform(1.0, width - 2.0, size=(50, 2))  # inside, off the rim
    located = 0
    for px, py in points:
        target = wcs.pixel_to_world(px, py).icrs
        x, y = locate(header, width, height, float(target.ra.deg), float(target.dec.deg))
        expected_x, expected_y = (float(v) for v in wcs.world_to_pixel(target))
        assert abs(x - expected_x) < 1e-6 and abs(y - expected_y) < 1e-6
        assert abs(x - px) < 0.5 and abs(y - py) < 0.5
        located += 1
    assert located == 50
    with pytest.raises(OffImage):
        locate(header, width, height, 330.0, -2.0)  # the far side of the sky


def test_header_as_stored_rebuilds_the_same_wcs():
    wcs, width, height = CASES["tan-sip"]
    rebuilt = readout.celestial_wcs(stored_header(wcs, width, height, OBJECT="<b>x</b>", HISTORY="made"))
    assert rebuilt is not None and rebuilt.sip is not None
    xs, ys = np.array([0.0, 2047.0]), np.array([0.0, 1000.0])
    assert wcs.pixel_to_world(xs, ys).separation(rebuilt.pixel_to_world(xs, ys)).arcsec.max() < 1e-6
    assert not math.isnan(rebuilt.wcs.crval[0])


ALL_SKY = {
    # name: (wcs, width, height): whole-sky maps, whose rims no grid of at most MAX_CELLS cells follows
    "ait-galactic": (plain_wcs(["GLON-AIT", "GLAT-AIT"], [0.0, 0.0], [180.5, 90.5], [-1.0, 1.0]), 360, 180),
    "mol": (plain_wcs(["RA---MOL", "DEC--MOL"], [180.0, 0.0], [200.5, 100.5], [-0.9, 0.9]), 400, 200),
    "car": (plain_wcs(["RA---CAR", "DEC--CAR"], [0.0, 0.0], [180.5, 90.5], [-1.0, 1.0]), 360, 180),
    "sin-hemisphere": (plain_wcs(["RA---SIN", "DEC--SIN"], [30.0, 60.0], [150.5, 150.5], [-0.4, 0.4]),
                       300, 300),
}


@pytest.mark.parametrize("name", list(ALL_SKY))
def test_all_sky_map_reads_out_within_a_tenth_of_an_arcsec_wherever_there_is_sky(name):
    # Where the grid is smooth, sky.js's own position; in its rough cells (the rim), the exact position the
    # page asks the server for. Either way within 0.1" of astropy, and no position where there is no sky.
    wcs, width, height = ALL_SKY[name]
    header = stored_header(wcs, width, height)
    celestial = sky_readout(header, width, height)["celestial"]
    assert celestial is not None and celestial["rough"], "a whole-sky map always has rough cells"
    assert celestial["max_error_arcsec"] <= readout.TOLERANCE_ARCSEC
    points = probe_points(width, height, count=1500)
    out = run_sky_js(celestial, points)
    expected = wcs.pixel_to_world(points[:, 0], points[:, 1]).icrs
    defined = np.isfinite(expected.ra.deg)
    assert 0.3 < defined.mean() <= 1.0
    rough = np.array(out["rough"])
    answers: list[Any] = []
    for (x, y), from_grid, is_rough in zip(points, out["icrs"], rough, strict=True):
        if is_rough:
            exact = readout.position_at(header, width, height, float(x), float(y))
            answers.append(None if exact is None else [exact["ra"], exact["dec"]])
        else:
            answers.append(from_grid)
    found = np.array([answer is not None for answer in answers])
    assert not (found & ~defined).any(), "a position was given off the sky"
    assert found[defined].all(), "a pixel with sky got no position"
    errors = separations_arcsec([answer for answer in answers if answer is not None], expected[found])
    assert errors.max() < ACCURACY_ARCSEC, f"{name}: worst {errors.max():.4f} arcsec"
    assert rough[defined].any(), "the rim is computed exactly"


def test_exact_position_is_astropys_in_both_frames_and_refuses_pixels_off_the_image():
    wcs, width, height = ALL_SKY["ait-galactic"]
    header = stored_header(wcs, width, height)
    expected = wcs.pixel_to_world(30.0, 90.0)
    exact = readout.position_at(header, width, height, 30.0, 90.0)
    assert exact is not None
    assert SkyCoord(exact["l"], exact["b"], unit="deg", frame="galactic").separation(expected).arcsec < 1e-3
    icrs = SkyCoord(exact["ra"], exact["dec"], unit="deg", frame="icrs")
    assert icrs.separation(expected.icrs).arcsec < 1e-3
    assert readout.position_at(header, width, height, 0.0, 0.0) is None  # a corner outside the ellipse
    with pytest.raises(OffImage, match=r"FITS pixel x 361, y 1 is off this image, which spans x 1 to 360"):
        readout.position_at(header, width, height, 360.0, 0.0)
    with pytest.raises(ValueError, match="no celestial WCS"):
        readout.position_at({"NAXIS": 2}, width, height, 1.0, 1.0)
