"""Cone search: parsing positions and radii, the exact footprint geometry, and the catalog's HEALPix index
against a brute-force filter over the same records."""

from __future__ import annotations

import dataclasses
import math
import sqlite3
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from app.search.positions import parse_cone, parse_position, parse_radius
from app.store.footprint import footprint_cells, sky_matches
from app.store.query import And, Cone, FieldIn
from app.store.records import ImageRecord, new_id
from app.store.sqlite import SQLiteStore
from tests.search.bruteforce_helpers import footprint

# --- parsing ----------------------------------------------------------------------------------------

POSITIONS = [
    # (ra, dec, frame) -> (ra deg, dec deg)
    (("161.265", "-59.684", "icrs"), (161.265, -59.684)),
    (("10:45:03.6", "-59:41:04", "icrs"), (161.265, -(59 + 41 / 60 + 4 / 3600))),
    (("10 45 03.6", "-59 41 04", "icrs"), (161.265, -(59 + 41 / 60 + 4 / 3600))),
    (("10h45m03.6s", "-59d41m04s", "icrs"), (161.265, -(59 + 41 / 60 + 4 / 3600))),
    (("10h45m", "+59d", "icrs"), (161.25, 59.0)),
    (("0", "90", "icrs"), (0.0, 90.0)),
    (("360", "-90", "icrs"), (0.0, -90.0)),
    (("-00:00:00", "-00:30:00", "icrs"), (0.0, -0.5)),
    # the Galactic centre and north pole, in ICRS
    (("0", "0", "galactic"), (266.40499, -28.93617)),
    (("123", "90", "galactic"), (192.85948, 27.12825)),
]

BAD_POSITIONS = [
    (("", "10", "icrs"), "RA is empty"),
    (("abc", "10", "icrs"), "RA 'abc' is not a coordinate"),
    (("10", "91", "icrs"), "Dec '91' is outside -90..+90 degrees"),
    (("10", "-90.5", "icrs"), "Dec '-90.5' is outside -90..+90 degrees"),
    (("361", "0", "icrs"), "RA '361' is outside 0..360 degrees"),
    (("25:00:00", "0", "icrs"), "RA '25:00:00' is outside 0..360 degrees"),
    (("10:61:00", "0", "icrs"), "RA '10:61:00': minutes and seconds must be below 60"),
    (("10", "10h", "icrs"), "Dec '10h': only a right ascension may be given in hours"),
    (("10", "10", "fk4"), "frame must be one of icrs, galactic, not 'fk4'"),
    (("'; DROP TABLE images; --", "0", "icrs"), "is not a coordinate"),
    (("10", "b=5", "galactic"), "b 'b=5' is not a coordinate"),
]

RADII = [("30arcsec", 30 / 3600), ("10 arcmin", 10 / 60), ("10'", 10 / 60), ('5"', 5 / 3600),
         ("0.5deg", 0.5), ("2", 2.0), ("180", 180.0), ("1e-3deg", 1e-3)]

BAD_RADII = [("0", "must be greater than zero"), ("-1arcmin", "must be greater than zero"),
             ("181deg", "is more than 180 degrees"), ("10900arcmin", "is more than 180 degrees"),
             ("ten", "is not an angle"), ("10 parsec", "is not an angle"), ("", "is not an angle")]


@pytest.mark.parametrize(("given", "expected"), POSITIONS)
def test_positions_parse_to_icrs_degrees(given: tuple[str, str, str], expected: tuple[float, float]) -> None:
    ra, dec = parse_position(*given)
    assert ra == pytest.approx(expected[0], abs=2e-5)
    assert dec == pytest.approx(expected[1], abs=2e-5)


@pytest.mark.parametrize(("given", "message"), BAD_POSITIONS)
def test_bad_positions_say_what_is_wrong(given: tuple[str, str, str], message: str) -> None:
    with pytest.raises(ValueError, match=None) as caught:
        parse_position(*given)
    assert message in str(caught.value)


@pytest.mark.parametrize(("given", "degrees"), RADII)
def test_radii_take_units(given: str, degrees: float) -> None:
    assert parse_radius(given) == pytest.approx(degrees)


@pytest.mark.parametrize(("given", "message"), BAD_RADII)
def test_bad_radii_say_what_is_wrong(given: str, message: str) -> None:
    with pytest.raises(ValueError) as caught:
        parse_radius(given)
    assert message in str(caught.value)


def test_cone_modes() -> None:
    assert parse_cone("10", "20", None, mode="contains").radius == 0.0
    with pytest.raises(ValueError, match="needs a radius"):
        parse_cone("10", "20", None)
    with pytest.raises(ValueError, match="mode must be one of overlaps, contains"):
        parse_cone("10", "20", "1", mode="inside")
    with pytest.raises(ValueError, match="outside -90"):
        Cone(10.0, 95.0, 1.0)
    with pytest.raises(ValueError, match="at most 180"):
        Cone(10.0, 0.0, 0.0)


# --- footprints from real WCS -----------------------------------------------------------------------


def test_contains_agrees_with_the_wcs_pixel_grid() -> None:
    """A point is in the footprint exactly when the WCS puts it on the image: an independent check."""
    rng = np.random.default_rng(3)
    for ra, dec in [(10.0, 20.0), (0.05, 0.0), (359.9, -30.0), (45.0, 89.9), (200.0, -89.95)]:
        wcs, sky = footprint(ra, dec, 300, 200, 6.0, float(rng.uniform(0, 360)))
        offsets = rng.uniform(-0.6, 0.6, (400, 2))
        xs = 149.5 + offsets[:, 0] * 300
        ys = 99.5 + offsets[:, 1] * 200
        points = wcs.pixel_to_world(xs, ys).icrs
        for x, y, p_ra, p_dec in zip(xs, ys, points.ra.deg, points.dec.deg, strict=True):
            inside = -0.5 <= x <= 299.5 and -0.5 <= y <= 199.5
            if min(abs(x + 0.5), abs(x - 299.5), abs(y + 0.5), abs(y - 199.5)) < 1e-3:
                continue  # on the edge itself: either answer is within rounding
            assert sky_matches(sky, float(p_ra), float(p_dec), 0.0, "contains") == inside, (ra, dec, x, y)


def test_overlap_reaches_to_the_radius() -> None:
    """A cone centred 0.1 deg east of the image's edge overlaps it with a radius just above 0.1 deg only."""
    _, sky = footprint(30.0, 0.0, 360, 360, 1.0, 0.0)  # 0.1 deg square
    east_edge_ra = 30.0 + 0.05
    ra = east_edge_ra + 0.1
    assert not sky_matches(sky, ra, 0.0, 0.0999, "overlaps")
    assert sky_matches(sky, ra, 0.0, 0.1001, "overlaps")
    assert not sky_matches(sky, ra, 0.0, 0.1001, "contains")
    assert sky_matches(sky, 30.0, 0.0, 1e-6, "contains")
    # the antipode of the image is never inside it
    assert not sky_matches(sky, 210.0, 0.0, 0.01, "contains")
    assert not sky_matches(None, 30.0, 0.0, 180.0, "overlaps")


# --- the catalog against a brute-force filter -------------------------------------------------------

def record(sky: dict[str, Any] | None, owner: str = "") -> ImageRecord:
    return ImageRecord(id=new_id(), sha256=new_id(), hdu=0, path="/data/x.fits", name="x.fits", size=2880,
                       owner=owner, provenance="batch", format="fits", width=64, height=64, bitpix=-32,
                       header={}, sky=sky)


def random_images(rng: np.random.Generator, count: int) -> list[ImageRecord]:
    """Images all over the sphere, crowded near both poles and RA 0/360, from arcminutes to degrees wide,
    rotated; a few without a WCS."""
    images = []
    for index in range(count):
        if index % 25 == 0:
            images.append(record(None))
            continue
        kind = index % 4
        ra = float(rng.uniform(0, 360)) if kind != 1 else float(rng.choice([rng.uniform(0, 1),
                                                                              rng.uniform(359, 360)]))
        dec = (float(np.degrees(np.arcsin(rng.uniform(-1, 1)))) if kind < 2
               else float(rng.choice([1, -1]) * rng.uniform(86, 90)))
        width, height = int(rng.integers(50, 400)), int(rng.integers(50, 400))
        scale = float(10 ** rng.uniform(-0.5, 1.5))  # 0.3 to 30 arcsec per pixel: 15 arcsec to 3 deg
        _, sky = footprint(ra, dec, width, height, scale, float(rng.uniform(0, 360)))
        images.append(record(sky))
    return images


def random_cones(rng: np.random.Generator, images: list[ImageRecord], count: int) -> list[Cone]:
    cones = []
    for index in range(count):
        mode = "contains" if index % 3 == 0 else "overlaps"
        radius = float(rng.choice([1 / 3600, 10 / 60, 1.0, 5.0, 45.0, 120.0, 180.0])) \
            if index % 2 else float(10 ** rng.uniform(-3, 0.5))
        if index % 5 == 0:  # on or next to a catalogued image, so matches are not all trivial
            sky = next(i.sky for i in images[int(rng.integers(len(images))):] + images if i.sky)
            ra, dec = sky["corners"][int(rng.integers(4))]
            ra, dec = (ra + float(rng.normal(0, 0.05))) % 360, max(-90.0, min(90.0, dec + rng.normal(0, .05)))
        elif index % 5 == 1:
            ra, dec = float(rng.uniform(0, 360)), float(rng.choice([1, -1]) * rng.uniform(85, 90))
        elif index % 5 == 2:
            ra, dec = float(rng.choice([rng.uniform(0, 0.5), rng.uniform(359.5, 360)])), float(
                rng.uniform(-60, 60))
        else:
            ra, dec = float(rng.uniform(0, 360)), float(np.degrees(np.arcsin(rng.uniform(-1, 1))))
        cones.append(Cone(ra, float(dec), radius, mode))  # type: ignore[arg-type]
    cones += [Cone(0.0, 90.0, 2.0), Cone(123.0, -90.0, 2.0), Cone(0.0, 0.0, 180.0),
              Cone(359.9999, 0.0, 0.5), Cone(0.0, 90.0, 0.0, "contains")]
    return cones


async def test_cone_results_equal_a_brute_force_filter(store: SQLiteStore) -> None:
    rng = np.random.default_rng(11)
    images = random_images(rng, 400)
    # crowd some images round the sample field so that small cones find several
    for _ in range(40):
        _, sky = footprint(float(rng.normal(161.265, 0.3)), float(rng.normal(-59.68, 0.3)),
                           int(rng.integers(100, 300)), int(rng.integers(100, 300)), 2.0,
                           float(rng.uniform(0, 360)))
        images.append(record(sky))
    await store.add_images(images)
    cones = random_cones(rng, images, 150)
    cones += [Cone(161.265, -59.68, r, m) for r in (0.01, 0.1, 0.5) for m in ("overlaps", "contains")]
    matched_some = 0
    for cone in cones:
        expected = {i.id for i in images if sky_matches(i.sky, cone.ra, cone.dec, cone.radius_deg, cone.mode)}
        found = {i.id for i in await store.find_images(cone, limit=10_000)}
        assert found == expected, cone
        assert await store.count_images(cone) == len(expected)
        matched_some += 0 < len(expected) < len(images)
    assert matched_some > 40  # the comparison is not just of empty (or full) answers
    # images without a WCS never match, even a cone over the whole sky
    everything = {i.id for i in await store.find_images(Cone(0.0, 0.0, 180.0), limit=10_000)}
    assert everything == {i.id for i in images if i.sky is not None}


async def test_cone_combines_with_other_conditions(store: SQLiteStore) -> None:
    _, sky = footprint(161.265, -59.68, 200, 200, 2.0, 0.0)
    alice, bob = record(sky, owner="alice"), record(sky, owner="bob")
    await store.add_images([alice, bob])
    query = And((Cone(161.265, -59.68, 0.01), FieldIn("owner", ("alice",))))
    assert [i.id for i in await store.find_images(query)] == [alice.id]


async def test_deleting_an_image_removes_its_cells(store: SQLiteStore, tmp_path: Path) -> None:
    _, sky = footprint(0.01, 89.99, 400, 400, 20.0, 30.0)  # round the pole and across RA 0
    kept, removed = record(sky), record(sky)
    await store.add_images([kept, removed])
    cells = footprint_cells(sky)
    assert len(cells) > 1
    await store.delete_images([removed.id])
    with sqlite3.connect(tmp_path / "catalog.sqlite") as db:
        rows = db.execute("SELECT image_id, count(*) FROM image_cells GROUP BY image_id").fetchall()
    assert rows == [(kept.id, len(cells))]
    assert [i.id for i in await store.find_images(Cone(0.0, 90.0, 0.1))] == [kept.id]


async def test_images_catalogued_before_cone_search_are_indexed_at_start(tmp_path: Path) -> None:
    path = tmp_path / "catalog.sqlite"
    _, sky = footprint(83.82, -5.39, 300, 300, 3.0, 10.0)
    old, plain = record(sky), record(None)
    first = SQLiteStore(path)
    await first.open()
    await first.add_images([old, plain])
    await first.close()
    # as a catalog from before migration 0006 would be: no cells, and the image listed as pending
    with sqlite3.connect(path) as db:
        db.execute("DELETE FROM image_cells")
        db.execute("INSERT INTO image_cells_pending (image_id) VALUES (?)", (old.id,))
    for _ in range(2):  # and opening again changes nothing
        again = SQLiteStore(path)
        await again.open()
        assert [i.id for i in await again.find_images(Cone(83.82, -5.39, 1 / 60))] == [old.id]
        await again.close()
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT count(*) FROM image_cells_pending").fetchone()[0] == 0
        assert db.execute("SELECT count(*) FROM image_cells").fetchone()[0] == len(footprint_cells(sky))


async def test_an_image_replaced_while_its_coverage_is_pending_is_no_longer_pending(tmp_path: Path) -> None:
    """Replacing an image writes its cells under the current rules: the coverage that the next opening
    would compute from its older header (it was listed as pending) is no longer due, and not written."""
    path = tmp_path / "catalog.sqlite"
    _, sky = footprint(83.82, -5.39, 300, 300, 3.0, 10.0)
    _, elsewhere = footprint(10.0, 10.0, 300, 300, 3.0, 0.0)
    old = record(sky)
    store = SQLiteStore(path)
    await store.open()
    try:
        await store.add_images([old])
        with sqlite3.connect(path) as db:  # as a catalog from before migration 0006 would list it
            db.execute("INSERT INTO image_cells_pending (image_id) VALUES (?)", (old.id,))
        assert [image.id for image in await store._outdated("sky", 10)] == [old.id]
        assert await store.replace_image(dataclasses.replace(old, sky=elsewhere), old.series)
        assert await store._outdated("sky", 10) == []
        assert await store.set_sky(old.id, sky, outdated_only=True) is False
        assert [i.id for i in await store.find_images(Cone(10.0, 10.0, 1 / 60))] == [old.id]
    finally:
        await store.close()


def test_typical_images_fall_in_few_cells() -> None:
    """Why order 7: an arcminute image takes a cell or a few, a 2-degree one some tens."""
    _, small = footprint(10.0, 10.0, 300, 300, 1.0, 0.0)   # 5 arcmin
    _, large = footprint(10.0, 10.0, 2000, 2000, 3.6, 0.0)  # 2 deg
    assert len(footprint_cells(small)) <= 4
    assert len(footprint_cells(large)) <= 80
    assert math.isclose(len(footprint_cells(None)), 0)


async def test_wide_fields_are_indexed_and_found(store: SQLiteStore) -> None:
    """A 30-degree field (indexed through coarser cells) is found by small cones anywhere on it."""
    _, wide = footprint(300.0, 60.0, 3000, 3000, 36.0, 20.0)
    image = record(wide)
    await store.add_images([image])
    assert [i.id for i in await store.find_images(Cone(300.0, 60.0, 1 / 3600))] == [image.id]
    for ra, dec in wide["corners"]:
        assert [i.id for i in await store.find_images(Cone(ra, dec, 0.01))] == [image.id]
    assert await store.count_images(Cone(120.0, -60.0, 10.0)) == 0
