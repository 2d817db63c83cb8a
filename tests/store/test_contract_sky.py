"""The contract of the `Store` interface, continued (see test_contract.py): cone searches over the
images' sky footprints, and a footprint replaced after the image was catalogued."""

from __future__ import annotations

from app.store.query import And, Compare, Cone, FieldIn, Or
from tests.store.examples import image, names, sky_at


async def test_cone_search_uses_the_exact_footprint(any_store):
    # a 10-arcmin square at (150, 2), one rotated 45 degrees nearby, one far away, one without WCS
    await any_store.add_images([
        image("square", sky=sky_at(150.0, 2.0), created=4.0, EXPTIME=10),
        image("diamond", sky=sky_at(150.3, 2.0, rotation_deg=45.0), created=3.0, EXPTIME=20),
        image("far", sky=sky_at(30.0, -40.0), created=2.0, EXPTIME=10),
        image("nowcs", created=1.0, EXPTIME=10),
    ])
    assert names(await any_store.find_images(Cone(150.0, 2.0, 0.01))) == ["square"]
    # just outside the square's corner (0.0833 deg half-width): a cone of 0.02 deg misses it ...
    corner = Cone(150.0 + 0.0833 + 0.03, 2.0 + 0.0833 + 0.03, 0.02)
    assert await any_store.count_images(corner) == 0
    # ... one of 0.05 deg reaches it
    assert names(await any_store.find_images(Cone(corner.ra, corner.dec, 0.05))) == ["square"]
    assert names(await any_store.find_images(Cone(150.3, 2.0, 0.0, mode="contains"))) == ["diamond"]
    # the rotated footprint's bounding box holds this point, the footprint does not
    assert await any_store.count_images(Cone(150.3 + 0.11, 2.0 + 0.11, 0.0, mode="contains")) == 0
    assert names(await any_store.find_images(Cone(150.15, 2.0, 1.0))) == ["square", "diamond"]
    assert names(await any_store.find_images(Cone(0.0, 0.0, 180.0))) == ["square", "diamond", "far"]
    # combined with other conditions, both ways
    near = Cone(150.15, 2.0, 1.0)
    assert names(await any_store.find_images(And((near, Compare("EXPTIME", "eq", 20))))) == ["diamond"]
    either = Or((Cone(30.0, -40.0, 0.1), Compare("EXPTIME", "eq", 20)))
    assert names(await any_store.find_images(either)) == ["diamond", "far"]
    assert await any_store.count_images(And((near, FieldIn("owner", ("x",))))) == 0


async def test_a_new_sky_moves_the_image_in_cone_searches(any_store):
    """An image catalogued from its header gets its coverage later (app/ingest/catalogue.py): its sky
    record and the index of its footprint change together."""
    moved = image("moved", sky=sky_at(150.0, 2.0))
    await any_store.add_images([moved, image("stays", sky=sky_at(30.0, -40.0))])
    assert names(await any_store.find_images(Cone(150.0, 2.0, 0.01))) == ["moved"]
    assert await any_store.set_sky(moved.id, sky_at(210.0, 54.0))
    assert await any_store.count_images(Cone(150.0, 2.0, 0.01)) == 0
    assert names(await any_store.find_images(Cone(210.0, 54.0, 0.01))) == ["moved"]
    assert (await any_store.get_image(moved.id)).sky == sky_at(210.0, 54.0)
    assert names(await any_store.find_images(Cone(30.0, -40.0, 0.01))) == ["stays"]
    assert await any_store.set_sky(moved.id, None)
    assert await any_store.count_images(Cone(210.0, 54.0, 1.0)) == 0
    assert (await any_store.get_image(moved.id)).sky is None
    assert not await any_store.set_sky("missing", sky_at(1.0, 1.0))


async def test_a_coverage_computed_at_opening_never_replaces_one_of_the_current_rules(any_store):
    """At its opening a catalog gives images catalogued before coverages one computed from their stored
    header (`outdated_only`). An image re-read meanwhile (another process replaced it, or catalogued it
    anew) has its coverage under the current rules: the older computation must not replace it."""
    current = image("current", sky=sky_at(150.0, 2.0))
    await any_store.add_images([current])
    assert await any_store.set_sky(current.id, sky_at(30.0, -40.0), outdated_only=True) is False
    assert (await any_store.get_image(current.id)).sky == sky_at(150.0, 2.0)
    assert names(await any_store.find_images(Cone(150.0, 2.0, 0.01))) == ["current"]
    assert await any_store.count_images(Cone(30.0, -40.0, 0.01)) == 0


async def test_cells_found_by_the_caller_are_the_ones_indexed(any_store):
    """A batch's first pass finds each image's cone-search cells in the pool (app/ingest/catalogue.py):
    the catalog indexes those it is given, and finds the others itself."""
    from app.store.footprint import footprint_cells

    given = image("given", sky=sky_at(150.0, 2.0))
    found = image("found", sky=sky_at(150.0, 2.0))
    unindexed = image("unindexed", sky=sky_at(150.0, 2.0))
    await any_store.add_images([given, found, unindexed],
                               cells={given.id: footprint_cells(given.sky), unindexed.id: []})
    # the same cells as found here: found by the same searches; none given: never found by a cone
    assert sorted(names(await any_store.find_images(Cone(150.0, 2.0, 0.01)))) == ["found", "given"]
    assert sorted(names(await any_store.find_images(Cone(150.1, 2.1, 0.1)))) == ["found", "given"]
    assert await any_store.count_images(Cone(150.0, 2.2, 0.05)) == 0
    assert await any_store.count_images() == 3


async def test_set_sky_indexes_the_cells_it_is_given(any_store):
    """A harvested image's coverage and its cone-search cells are found in the pool (`tile_file`): the
    catalog indexes the cells it is given with the new sky, and finds them itself when given none."""
    from app.store.footprint import footprint_cells

    given, found = image("given", sky=None), image("found", sky=None)
    await any_store.add_images([given, found])
    assert await any_store.set_sky(given.id, sky_at(150.0, 2.0), cells=footprint_cells(sky_at(150.0, 2.0)))
    assert await any_store.set_sky(found.id, sky_at(150.0, 2.0))
    assert sorted(names(await any_store.find_images(Cone(150.0, 2.0, 0.01)))) == ["found", "given"]
    assert (await any_store.get_image(given.id)).sky == sky_at(150.0, 2.0)
    # the cells given are the ones indexed: none given, the image is never found by a cone
    assert await any_store.set_sky(given.id, sky_at(150.0, 2.0), cells=[])
    assert names(await any_store.find_images(Cone(150.0, 2.0, 0.01))) == ["found"]
    assert not await any_store.set_sky("missing", sky_at(1.0, 1.0), cells=[1])


async def test_set_sky_records_the_display_given_in_the_same_write(any_store):
    """An image catalogued from its header gets its coverage and its display record (its pyramids built)
    together; without a display, the one it has is kept."""
    shown = image("shown", sky=None)
    await any_store.add_images([shown])
    kept = (await any_store.get_image(shown.id)).display
    assert await any_store.set_sky(shown.id, sky_at(150.0, 2.0))
    assert (await any_store.get_image(shown.id)).display == kept
    display = {"interval": "zscale", "stretch": "linear", "low": 1.5, "high": 9.0, "levels": 9}
    assert await any_store.set_sky(shown.id, sky_at(10.0, -5.0), display=display)
    found = await any_store.get_image(shown.id)
    assert (found.sky, found.display) == (sky_at(10.0, -5.0), display)
    assert names(await any_store.find_images(Cone(10.0, -5.0, 0.01))) == ["shown"]
    assert not await any_store.set_sky("missing", None, display=display)
