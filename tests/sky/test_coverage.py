"""Footprints from the real pixel coverage: the catalog's cone search (a real SQLite store, the MOC index and
the exact test) against a brute force over every pixel of images of every projection, written by astropy
as FITS files and read by the ingest's FITS reader.

The brute force's rule (pixels are areas, the search sees them through their centres): with d the angle
from the cone's centre to a pixel centre and h that pixel's half size (half the largest angle to a
neighbouring pixel centre, i.e. half its diagonal),
- an `overlaps` cone of radius r must match an image with a pixel centre within r (d <= r), and must not
  match one whose every pixel centre lies beyond r plus half a pixel (d > r + h for all);
- a `contains` cone must match when its centre lies well inside a pixel (d <= 0.8 of the radius of the
  circle inscribed in the pixel), and must not when every pixel centre lies beyond half a pixel (d > h).
A pixel on the rim of the projection (next to undefined ones: an AIT ellipse's edge, a SIN horizon) counts
as far as its defined part reaches (sampled 9 x 9), as it may be stretched across degrees there; so does
the defined part of a pixel whose centre is off the projection (for "must not" only).
"""

from __future__ import annotations

import json
import math
import sqlite3
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from astropy.io import fits
from astropy.wcs import WCS

from app.formats.fits import FitsReader
from app.sky.coverage import MOST_MOC_TEXT, with_coverage
from app.sky.readout import sky_vectors
from app.store.footprint import footprint_cells
from app.store.query import Cone
from app.store.records import ImageRecord, new_id
from app.store.sqlite import SQLiteStore


def header_of(ctype: tuple[str, str], crval: tuple[float, float], cdelt: float, size: tuple[int, int],
              extra: dict[str, Any] | None = None, *, aspect: float = 1.0) -> fits.Header:
    header = fits.Header()
    header["CTYPE1"], header["CTYPE2"] = ctype
    header["CRVAL1"], header["CRVAL2"] = crval
    header["CRPIX1"], header["CRPIX2"] = (size[0] + 1) / 2, (size[1] + 1) / 2
    header["CDELT1"], header["CDELT2"] = -cdelt, cdelt * aspect
    header["CUNIT1"], header["CUNIT2"] = "deg", "deg"
    for keyword, value in (extra or {}).items():
        header[keyword] = value
    return header


SIP = {"A_ORDER": 2, "A_2_0": 4e-4, "A_1_1": -2e-4, "A_0_2": 3e-4,
       "B_ORDER": 2, "B_2_0": -3e-4, "B_1_1": 5e-4, "B_0_2": 1e-4}
TPV = {"PV1_0": 0.0, "PV1_1": 1.0, "PV1_2": 0.0, "PV1_4": 2e-4, "PV1_7": 1e-4,
       "PV2_0": 0.0, "PV2_1": 1.0, "PV2_2": 0.0, "PV2_4": -2e-4, "PV2_9": 1e-4}

# name -> (header, (width, height)): wide fields and all-sky maps, near the poles and across RA 0/360
IMAGES: dict[str, tuple[fits.Header, tuple[int, int]]] = {
    "TAN across RA 0": (header_of(("RA---TAN", "DEC--TAN"), (0.02, 30.0), 20 / 3600, (96, 64),
                                  {"CROTA2": 30.0}), (96, 64)),
    "TAN round the pole": (header_of(("RA---TAN", "DEC--TAN"), (45.0, 89.9), 60 / 3600, (64, 64)), (64, 64)),
    "SIN hemisphere": (header_of(("RA---SIN", "DEC--SIN"), (0.0, 60.0), 1.0, (128, 128)), (128, 128)),
    "ZEA wide": (header_of(("RA---ZEA", "DEC--ZEA"), (180.0, -70.0), 1.2, (128, 128)), (128, 128)),
    "ARC wide": (header_of(("RA---ARC", "DEC--ARC"), (359.0, 85.0), 0.5, (96, 96)), (96, 96)),
    "ZPN wide": (header_of(("RA---ZPN", "DEC--ZPN"), (90.0, 10.0), 0.8, (96, 96),
                           {"PV2_0": 0.0, "PV2_1": 1.0, "PV2_2": 0.0, "PV2_3": -0.1}), (96, 96)),
    "CAR all-sky (Galactic)": (header_of(("GLON-CAR", "GLAT-CAR"), (0.0, 0.0), 360 / 128, (128, 64)),
                               (128, 64)),
    "CAR across RA 0": (header_of(("RA---CAR", "DEC--CAR"), (0.0, -45.0), 0.1, (64, 64)), (64, 64)),
    "AIT all-sky": (header_of(("RA---AIT", "DEC--AIT"), (0.0, 0.0), 2.7, (128, 64)), (128, 64)),
    "MOL all-sky": (header_of(("RA---MOL", "DEC--MOL"), (180.0, 0.0), 2.7, (128, 64)), (128, 64)),
    "CSC near the pole": (header_of(("RA---CSC", "DEC--CSC"), (10.0, 89.0), 0.5, (96, 96)), (96, 96)),
    "SIP across RA 0": (header_of(("RA---TAN-SIP", "DEC--TAN-SIP"), (359.99, -20.0), 2 / 3600, (128, 128),
                                  SIP), (128, 128)),
    "TPV": (header_of(("RA---TPV", "DEC--TPV"), (120.0, 45.0), 10 / 3600, (128, 128), TPV), (128, 128)),
}


def write_fits(path: Path, header: fits.Header, size: tuple[int, int]) -> Path:
    fits.PrimaryHDU(np.zeros((size[1], size[0]), dtype=np.float32), header=header).writeto(path)
    return path


def catalogued(path: Path, *, coverage: bool = True) -> ImageRecord:
    """The record ingest makes of the file: the FITS reader's header and sky, the coverage as the
    pipeline adds it (`coverage=False`: as records were before coverages)."""
    reader = FitsReader(path, max_pixels=10**8)
    try:
        plane = reader.planes()[0]
    finally:
        reader.close()
    sky = with_coverage(plane.sky, plane.header, plane.width, plane.height, plane.celestial) if coverage \
        else plane.sky
    return ImageRecord(id=new_id(), sha256=new_id(), hdu=0, path=str(path), name=path.name, size=2880,
                       owner="", provenance="batch", format="fits", width=plane.width, height=plane.height,
                       bitpix=-32, header=plane.header, sky=sky)


@dataclass
class Pixels:
    """Every pixel centre of an image (ICRS unit vectors, undefined ones left out), each one's half size
    and the radius of the circle inscribed in it (degrees; NaN next to undefined pixels)."""

    centres: np.ndarray
    half: np.ndarray
    inscribed: np.ndarray
    # the defined part of pixels whose centre is off the projection (an all-sky map's rim), sampled 9 x 9,
    # each sample with half the largest step between samples of its pixel
    parts: np.ndarray
    parts_half: np.ndarray


def angle(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    cross = np.linalg.norm(np.cross(a, b), axis=-1)
    result: np.ndarray = np.degrees(np.arctan2(cross, np.sum(a * b, axis=-1)))
    return result


def pixels_of(header: fits.Header, size: tuple[int, int]) -> Pixels:
    wcs = WCS(header).celestial
    width, height = size
    gx, gy = np.meshgrid(np.arange(-1, width + 1, dtype=float), np.arange(-1, height + 1, dtype=float))
    grid = sky_vectors(wcs, gx, gy).reshape(height + 2, width + 2, 3)
    inner = grid[1:-1, 1:-1]
    largest = np.zeros((height, width))
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            if dx or dy:
                largest = np.fmax(largest, angle(inner, grid[1 + dy:1 + dy + height, 1 + dx:1 + dx + width]))
    # the radius of the circle inscribed in the pixel (a parallelogram of sides a and b: pixels far from a
    # projection's centre are sheared), degrees
    a = (grid[1:-1, 2:] - grid[1:-1, :-2]) / 2
    b = (grid[2:, 1:-1] - grid[:-2, 1:-1]) / 2
    sides = np.maximum(np.linalg.norm(a, axis=-1), np.linalg.norm(b, axis=-1))
    inscribed = np.degrees(np.linalg.norm(np.cross(a, b), axis=-1) / (2 * sides))
    defined = np.all(np.isfinite(inner), axis=-1)
    half = largest / 2
    # a pixel on the rim of the projection (an undefined neighbour) reaches as far as its defined part does
    undefined = ~np.all(np.isfinite(grid), axis=-1)
    rim = np.zeros_like(defined)
    for dy in range(3):
        for dx in range(3):
            rim |= undefined[dy:dy + height, dx:dx + width]
    offsets = np.linspace(-0.5, 0.5, 9)
    rim_y, rim_x = np.nonzero(rim)
    sx = np.broadcast_to(rim_x[:, None, None] + offsets[None, None, :], (len(rim_x), 9, 9))
    sy = np.broadcast_to(rim_y[:, None, None] + offsets[None, :, None], (len(rim_x), 9, 9))
    samples = sky_vectors(wcs, sx.astype(float), sy.astype(float)).reshape(len(rim_x), 9, 9, 3)
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # all-NaN slices: pixels wholly off the projection
        reach = np.nanmax(angle(samples, inner[rim_y, rim_x][:, None, None, :]), axis=(1, 2))
        steps = np.fmax(np.nanmax(angle(samples[:, 1:], samples[:, :-1]), axis=(1, 2)),
                        np.nanmax(angle(samples[:, :, 1:], samples[:, :, :-1]), axis=(1, 2)))
    centred = defined[rim_y, rim_x]
    half[rim_y[centred], rim_x[centred]] = np.fmax(half[rim_y[centred], rim_x[centred]], reach[centred])
    # pixels whose centre is off the projection but part of their area is not: that part, sampled
    off = samples[~centred]
    kept = np.all(np.isfinite(off), axis=-1)
    parts = off[kept]
    parts_half = np.broadcast_to((steps[~centred] / 2)[:, None, None], kept.shape)[kept]
    return Pixels(inner[defined], half[defined], inscribed[defined], parts, parts_half)


def unit(ra: float, dec: float) -> np.ndarray:
    a, d = math.radians(ra), math.radians(dec)
    return np.array([math.cos(d) * math.cos(a), math.cos(d) * math.sin(a), math.sin(d)])


def radec(vector: np.ndarray) -> tuple[float, float]:
    return (math.degrees(math.atan2(vector[1], vector[0])) % 360.0,
            math.degrees(math.asin(max(-1.0, min(1.0, float(vector[2]))))))


def verdict(pixels: Pixels, cone: Cone) -> tuple[bool, bool]:
    """(must match, must not match) by the rule in the module's docstring."""
    d = angle(pixels.centres, unit(cone.ra, cone.dec))
    beyond = bool(np.all(angle(pixels.parts, unit(cone.ra, cone.dec)) > cone.radius_deg + pixels.parts_half))
    if cone.mode == "contains":
        return bool(np.any(d <= 0.8 * pixels.inscribed)), bool(np.all(d > pixels.half)) and beyond
    return bool(np.any(d <= cone.radius_deg)), bool(np.all(d > cone.radius_deg + pixels.half)) and beyond


def cones_near(rng: np.random.Generator, header: fits.Header, size: tuple[int, int], pixels: Pixels,
               count: int) -> list[Cone]:
    """Cones on, next to and around the image: centres from pixel positions up to a quarter of the image
    beyond its edges and from the sky around it; radii from none (contains) to tens of degrees, and radii
    just above and just below the distance to the nearest pixel centre."""
    wcs = WCS(header).celestial
    width, height = size
    xs = rng.uniform(-0.25 * width, 1.25 * width, count * 3)
    ys = rng.uniform(-0.25 * height, 1.25 * height, count * 3)
    vectors = sky_vectors(wcs, xs, ys)
    vectors = vectors[np.all(np.isfinite(vectors), axis=1)][:count]
    cones: list[Cone] = []
    for index, vector in enumerate(vectors):
        ra, dec = radec(vector)
        d = angle(pixels.centres, vector)
        nearest = int(np.argmin(d))
        kind = index % 5
        if kind == 0:
            cones.append(Cone(ra, dec, 0.0, "contains"))
        elif kind == 1:
            cones.append(Cone(ra, dec, float(d[nearest]) + 0.05 * float(pixels.half[nearest]) + 1e-9))
        elif kind == 2 and d[nearest] > 3 * pixels.half[nearest]:
            cones.append(Cone(ra, dec, float(d[nearest]) - 1.5 * float(pixels.half[nearest])))
        else:
            cones.append(Cone(ra, dec, float(rng.choice([2 / 3600, 0.05, 0.5, 5.0, 40.0]))))
    return cones


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[ImageRecord, Pixels]]:
    folder = tmp_path_factory.mktemp("coverage")
    found = {}
    for index, (name, (header, size)) in enumerate(IMAGES.items()):
        record = catalogued(write_fits(folder / f"image{index}.fits", header, size))
        found[name] = (record, pixels_of(header, size))
    return found


def test_every_projection_gets_a_small_coverage(images: dict[str, tuple[ImageRecord, Pixels]]) -> None:
    for name, (record, _) in images.items():
        assert record.sky is not None, name
        assert record.sky["moc"] and len(record.sky["moc"]) <= MOST_MOC_TEXT, name
        assert footprint_cells(record.sky), name
        assert len(json.dumps(record.sky)) < 16_000, name
    # an all-sky AIT map has no corners (they lie off the projection) yet has a coverage and a centre
    ait = images["AIT all-sky"][0].sky
    assert ait is not None and "corners" not in ait and (ait["center_ra"], ait["center_dec"]) == (0.0, 0.0)


@pytest.mark.parametrize("name", list(IMAGES))
def test_the_readers_own_wcs_gives_the_coverage_the_catalogued_cards_give(name: str, tmp_path: Path) -> None:
    """The ingest computes the footprint from the WCS the FITS reader built (not building it twice): the
    same coverage, centre and cards as one rebuilt from the header cards the catalog keeps, which is what
    the server's readout and mosaics use afterwards."""
    path = write_fits(tmp_path / "image.fits", *IMAGES[name])
    reader = FitsReader(path, max_pixels=10**8)
    try:
        [plane] = reader.planes()
    finally:
        reader.close()
    assert plane.celestial is not None
    built = with_coverage(plane.sky, plane.header, plane.width, plane.height, plane.celestial)
    rebuilt = with_coverage(plane.sky, plane.header, plane.width, plane.height)
    assert built is not None and built.get("moc")
    assert built == rebuilt


async def test_cone_search_equals_a_brute_force_over_the_pixels(
        store: SQLiteStore, images: dict[str, tuple[ImageRecord, Pixels]]) -> None:
    await store.add_images([record for record, _ in images.values()])
    rng = np.random.default_rng(15)
    cones: list[Cone] = [Cone(0.0, 90.0, 0.5), Cone(0.0, -90.0, 0.5), Cone(0.0, 90.0, 0.0, "contains"),
                         Cone(359.9999, 0.0, 0.01), Cone(0.0, 0.0, 180.0)]
    for name in IMAGES:
        cones += cones_near(rng, *IMAGES[name], images[name][1], 30)
    false_negatives: list[tuple[str, Cone]] = []
    false_positives: list[tuple[str, Cone]] = []
    counted = {"must": 0, "must not": 0}
    for cone in cones:
        found = {image.id for image in await store.find_images(cone, limit=100)}
        for name, (record, pixels) in images.items():
            must, must_not = verdict(pixels, cone)
            counted["must"] += must
            counted["must not"] += must_not
            if must and record.id not in found:
                false_negatives.append((name, cone))
            if must_not and record.id in found:
                false_positives.append((name, cone))
    assert false_negatives == []
    assert false_positives == []
    # the comparison is not of trivial answers only
    assert counted["must"] > 300 and counted["must not"] > 2000


@pytest.mark.parametrize("name", ["AIT all-sky", "MOL all-sky", "CAR all-sky (Galactic)"])
async def test_all_sky_maps_match_any_cone(store: SQLiteStore, images: dict[str, tuple[ImageRecord, Pixels]],
                                           name: str) -> None:
    record = images[name][0]
    await store.add_images([record])
    for ra, dec in [(0.0, 0.0), (179.99, 0.0), (180.01, -30.0), (0.0, 90.0), (270.0, -89.9), (359.99, 45.0)]:
        found = [i.id for i in await store.find_images(Cone(ra, dec, 0.0, "contains"))]
        assert found == [record.id], (ra, dec)


async def test_images_catalogued_before_coverages_get_theirs_at_start(tmp_path: Path) -> None:
    """The migration lists them; the next start computes each coverage from the stored header cards, so
    an all-sky AIT map catalogued without any sky record matches cones; a record whose cards build no WCS
    keeps its corners and is still found by them."""
    ait = catalogued(write_fits(tmp_path / "ait.fits", *IMAGES["AIT all-sky"]), coverage=False)
    tan = catalogued(write_fits(tmp_path / "tan.fits", *IMAGES["TAN across RA 0"]), coverage=False)
    assert ait.sky is None and tan.sky is not None and "moc" not in tan.sky
    bare = ImageRecord(**{**vars(tan), "id": new_id(), "sha256": new_id(), "header": {}})
    path = tmp_path / "catalog.sqlite"
    store = SQLiteStore(path)
    await store.open()
    await store.add_images([ait, tan, bare])
    await store.close()
    with sqlite3.connect(path) as db:  # as the catalog was before migration 0019
        db.execute("DELETE FROM schema_migrations WHERE version = 19")
    store = SQLiteStore(path)
    await store.open()
    try:
        assert {i.id for i in await store.find_images(Cone(100.0, -40.0, 0.0, "contains"))} == {ait.id}
        found = {i.id for i in await store.find_images(Cone(0.02, 30.0, 0.01))}
        assert found == {ait.id, tan.id, bare.id}
        again = await store.get_image(tan.id)
        assert again is not None and again.sky is not None and again.sky["moc"]
        kept = await store.get_image(bare.id)
        assert kept is not None and kept.sky == tan.sky  # no cards to compute from: its corners serve
    finally:
        await store.close()


async def test_an_ingested_all_sky_map_is_found_by_cones(archive: Any, tmp_path: Path) -> None:
    """Through the real job queue: the ingest records the coverage of an AIT map (whose corners lie off the
    projection, so it had no sky position before) and the cone search finds it anywhere on the sky."""
    from tests.helpers import ingest

    path = write_fits(tmp_path / "allsky.fits", *IMAGES["AIT all-sky"])
    [job] = await ingest(archive, path, visibility="public")
    assert job.state == "done", job.error
    image = await archive.store.get_image(job.image_ids[0])
    assert image.sky is not None and image.sky["moc"]
    for ra, dec in [(0.0, 0.0), (180.0, 0.0), (90.0, 89.0), (300.0, -60.0)]:
        assert [i.id for i in await archive.store.find_images(Cone(ra, dec, 0.0, "contains"))] == [image.id]


def test_the_api_shows_the_sky_without_its_coverage(images: dict[str, tuple[ImageRecord, Pixels]]) -> None:
    record = images["TAN across RA 0"][0]
    assert record.sky is not None and record.sky["moc"]
    shown = record.public()["sky"]
    assert set(shown) >= {"center_ra", "center_dec", "corners", "pixel_scale_arcsec"}
    assert not set(shown) & {"moc", "moc_order", "wcs", "size", "partial"}


def test_a_large_all_sky_maps_border_is_found_as_over_every_pixel() -> None:
    """The exact test's border (edge pixels and the pixels next to undefined ones) of a map too large to
    evaluate whole is found from a coarse grid refined where the projection's edge runs: the same pixels as
    evaluating every pixel."""
    from app.sky.coverage import PixelFootprint

    width, height = 1800, 900  # 1.6 million pixels: over the coarse grid's million
    wcs = WCS(header_of(("RA---AIT", "DEC--AIT"), (0.0, 0.0), 340 / width, (width, height))).celestial
    gx, gy = np.meshgrid(np.arange(width, dtype=float), np.arange(height, dtype=float))
    defined = np.all(np.isfinite(sky_vectors(wcs, gx, gy)), axis=1).reshape(height, width)
    padded = np.pad(defined, 1, constant_values=True)
    near = np.zeros_like(defined)
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            near |= ~padded[1 + dy:1 + dy + height, 1 + dx:1 + dx + width]
    edge = np.zeros_like(defined)
    edge[0], edge[-1], edge[:, 0], edge[:, -1] = True, True, True, True
    expected_y, expected_x = np.nonzero(defined & (near | edge))
    centres, _ = PixelFootprint(wcs, width, height, True).border()
    assert len(centres) == len(expected_x)
    expected = sky_vectors(wcs, expected_x.astype(float), expected_y.astype(float))
    order = np.lexsort(expected.T)
    assert np.allclose(centres[np.lexsort(centres.T)], expected[order], atol=1e-12)


def test_every_point_of_every_pixel_lies_in_the_coverage(
        images: dict[str, tuple[ImageRecord, Pixels]]) -> None:
    """Ordinary fields are covered by the polygon of their outline (app/sky/coverage.py `_outline`), wide
    and all-sky ones by a grid of samples: either way the MOC holds every pixel's corners and centre."""
    from astropy import units as u
    from mocpy import MOC

    for name, (header, (width, height)) in IMAGES.items():
        record = images[name][0]
        assert record.sky is not None, name
        moc = MOC.from_string(record.sky["moc"], format="ascii")
        gx, gy = np.meshgrid(np.arange(-0.5, width, 0.5), np.arange(-0.5, height, 0.5))
        points = sky_vectors(WCS(header).celestial, gx.ravel(), gy.ravel())
        points = points[np.all(np.isfinite(points), axis=1)]
        ra, dec = (np.array(values) for values in zip(*(radec(point) for point in points), strict=True))
        inside = moc.contains_lonlat(ra * u.deg, dec * u.deg)
        assert inside.all(), f"{name}: {np.count_nonzero(~inside)} of {len(inside)} points outside"


def _astropy_cards(wcs: WCS) -> dict[str, Any]:
    """The cards of astropy's own header of the WCS, typed as its cards give them."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        header = wcs.to_header(relax=True)
    return {keyword: value for keyword, value in header.items() if keyword not in ("COMMENT", "HISTORY", "")}


@pytest.mark.parametrize("projection", ["TAN", "SIN", "AIT", "CAR", "ZEA", "TPV", "ZPN", "HPX", "COE"])
@pytest.mark.parametrize("axes", [("RA---", "DEC--"), ("GLON-", "GLAT-")])
def test_the_coverage_records_the_cards_astropy_writes(projection, axes):
    """The coverage's WCS cards (read from WCSLIB's own text when they are plain) are those of astropy's
    header of the same WCS: the same keywords in the same order, the same values of the same types; a
    viewer or mosaic rebuilds the same WCS from them."""
    from app.sky.coverage import _plain_wcs_cards, wcs_cards
    from app.sky.wcs import celestial_wcs

    header = fits.Header({"NAXIS": 2, "NAXIS1": 120, "NAXIS2": 80, "CTYPE1": axes[0] + projection,
                          "CTYPE2": axes[1] + projection, "CRVAL1": 37.25, "CRVAL2": -12.5, "CRPIX1": 60.5,
                          "CRPIX2": 40.5, "CD1_1": -2e-4, "CD1_2": 1e-6, "CD2_1": 3e-6, "CD2_2": 2e-4,
                          "EQUINOX": 2000.0, "DATE-OBS": "2021-03-04T05:06:07", "MJD-OBS": 59277.2})
    header.update({"TPV": {"PV1_1": 1.0, "PV2_1": 1.0, "PV1_4": 1e-3}, "ZPN": {"PV2_1": 1.0, "PV2_3": 0.05},
                   "COE": {"PV2_1": 45.0}}.get(projection, {}))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        wcs = WCS(header).celestial
    assert _plain_wcs_cards(wcs) is not None  # read the quick way
    cards, expected = wcs_cards(wcs), _astropy_cards(wcs)
    assert list(cards) == list(expected)
    assert [(value, type(value)) for value in cards.values()] == \
        [(value, type(value)) for value in expected.values()]
    rebuilt = celestial_wcs(cards)
    pixels = np.array([[0.0, 0.0], [119.0, 79.0], [60.0, 40.0]])
    assert np.allclose(rebuilt.all_pix2world(pixels, 0), wcs.all_pix2world(pixels, 0), equal_nan=True)


def test_a_sip_coverage_records_astropy_s_cards():
    """SIP terms are not in WCSLIB's text (astropy adds them): such a WCS's cards are astropy's header's,
    the SIP terms with them."""
    from app.sky.coverage import _plain_wcs_cards, wcs_cards

    header = fits.Header({"NAXIS": 2, "NAXIS1": 100, "NAXIS2": 80, "CTYPE1": "RA---TAN-SIP",
                          "CTYPE2": "DEC--TAN-SIP", "CRVAL1": 10.0, "CRVAL2": 20.0, "CRPIX1": 50.0,
                          "CRPIX2": 40.0, "CD1_1": -1e-4, "CD1_2": 0.0, "CD2_1": 0.0, "CD2_2": 1e-4,
                          "A_ORDER": 2, "B_ORDER": 2, "A_2_0": 1e-5, "B_0_2": 2e-5})
    wcs = WCS(header)
    assert _plain_wcs_cards(wcs) is None
    cards = wcs_cards(wcs)
    assert cards == _astropy_cards(wcs)
    assert cards["A_2_0"] == 1e-5 and cards["B_0_2"] == 2e-5 and cards["CTYPE1"] == "RA---TAN-SIP"
