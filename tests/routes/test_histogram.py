"""The histogram with cuts of the image page: counted at ingest and stored in the image's display record,
served by `GET /api/images/<id>/histogram` with the cuts a display's tiles use, counted from the science
pyramid on first request for older images and other planes, and refused (as a missing image) to those who
may not see the image."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from app.tiles import histogram, render, science
from tests.helpers import ingest, log_in
from tests.routes.pages import attribute, text_of


def field_values(seed: int = 11) -> np.ndarray:
    values = np.random.default_rng(seed).normal(100.0, 5.0, (90, 120)).astype(np.float32)
    values[3, 4] = np.nan
    values[50, 60] = 5000.0  # a star
    return values


async def test_ingest_stores_the_histogram_of_the_values_in_the_display_record(add_image):
    data = field_values()
    image = await add_image("field.fits", data=data)
    stored = image.display["histogram"]
    assert histogram.valid(stored)
    # every finite pixel of a small image is in the scaling's sample: the same counts as of the data itself
    assert stored == histogram.of(data.astype(np.float64))
    assert sum(stored["counts"]) + stored["below"] + stored["above"] == data.size - 1
    assert stored["above"] >= 1 and stored["hi"] < 5000.0


async def test_the_endpoint_gives_the_stored_histogram_with_the_static_pyramids_cuts(client, add_image):
    image = await add_image("field.fits", data=field_values())
    response = await client.get(f"/api/images/{image.id}/histogram")
    assert response.status_code == 200
    answer = await response.get_json()
    assert {key: answer[key] for key in histogram.KEYS} == image.display["histogram"]
    assert (answer["low"], answer["high"]) == (image.display["low"], image.display["high"])
    assert answer["display"] == answer["default"] == "zscale~linear~grey" and answer["plane"] == 0
    # the same when the default display is named
    named = await client.get(f"/api/images/{image.id}/histogram?display=zscale~linear~grey")
    assert await named.get_json() == answer


async def test_other_displays_give_the_cuts_their_tiles_are_rendered_with(client, archive, add_image):
    data = field_values()
    image = await add_image("field.fits", data=data)
    folder = archive.tile_folder(image.id)
    url = f"/api/images/{image.id}/histogram?display="
    minmax = await (await client.get(url + "minmax~sqrt~viridis")).get_json()
    assert (minmax["low"], minmax["high"]) == (float(np.nanmin(data)), 5000.0)
    assert minmax["display"] == "minmax~sqrt~viridis"
    percentile = await (await client.get(url + "p99~linear~grey")).get_json()
    scale = json.loads((folder / "display" / "p99~linear~grey" / render.SCALE_FILE).read_text())
    assert (percentile["low"], percentile["high"]) == (scale["low"], scale["high"])
    # the tiles use that very file: a tile rendered now agrees
    token = archive.tile_token(image.id)
    tile = await client.get(f"/tiles/{image.id}/{token}/display/p99~linear~grey/image_files/7/0_0.jpeg")
    assert tile.status_code == 200
    assert json.loads((folder / "display" / "p99~linear~grey" / render.SCALE_FILE).read_text()) == scale
    manual = await (await client.get(url + "m-10.5:300~asinh~grey_r")).get_json()
    assert (manual["low"], manual["high"]) == (-10.5, 300.0)
    assert not (folder / "display" / "m-10.5:300~asinh~grey_r").exists()  # nothing measured for it
    assert {key: manual[key] for key in histogram.KEYS} == image.display["histogram"]


BAD = [
    ("?display=bogus", "display: a display spec is <interval>~<stretch>~<colormap>"),
    ("?display=zz~linear~grey", "display: unknown interval"),
    ("?display=p99.50~linear~grey", "write p99.5~linear~grey"),
    ("?display=zscale~linear~jet", "unknown colormap"),
    ("?plane=1", "there is no plane 1 in this image: it has 1"),
    ("?plane=-1", "plane"),
    ("?plane=x", "plane"),
]


@pytest.mark.parametrize(("query", "message"), BAD)
async def test_bad_displays_and_planes_are_a_400_saying_why(client, image, query, message):
    response = await client.get(f"/api/images/{image.id}/histogram{query}")
    assert response.status_code == 400
    assert message in await text_of(response)


async def test_an_older_image_gets_its_histogram_on_first_request(client, archive, add_image):
    data = field_values()
    image = await add_image("field.fits", data=data)
    counted = image.display["histogram"]
    # as an image ingested before histograms (and science pyramids) were: neither in its record nor on disk
    older = dataclasses.replace(image, display={k: v for k, v in image.display.items() if k != "histogram"})
    await archive.store.delete_images([image.id])
    await archive.store.add_images([older])
    folder = archive.tile_folder(image.id)
    (folder / science.NAME).unlink()
    response = await client.get(f"/api/images/{image.id}/histogram")
    assert response.status_code == 200, await text_of(response)
    answer = await response.get_json()
    assert {key: answer[key] for key in histogram.KEYS} == counted
    assert (answer["low"], answer["high"]) == (image.display["low"], image.display["high"])
    cache = folder / "display" / histogram.FILE
    assert (folder / science.NAME).is_file() and json.loads(cache.read_text()) == counted
    cache.write_text(json.dumps({**counted, "below": 12345}))  # the second request reads the cache
    again = await (await client.get(f"/api/images/{image.id}/histogram")).get_json()
    assert again["below"] == 12345


async def test_a_plane_of_a_cube_has_its_own_histogram(client, archive, write_fits):
    cube = np.stack([np.full((40, 48), 10.0 * (k + 1), dtype=np.float32) for k in range(3)])
    cube[2, :, :24] = 90.0
    [job] = await ingest(archive, write_fits("cube.fits", data=cube), visibility="public")
    image_id = job.image_ids[0]
    first = await (await client.get(f"/api/images/{image_id}/histogram")).get_json()
    assert first["plane"] == 0 and (first["lo"], first["hi"]) == (9.5, 10.5)
    third = await (await client.get(f"/api/images/{image_id}/histogram?plane=2")).get_json()
    assert third["plane"] == 2 and sum(third["counts"]) == 40 * 48
    assert third["lo"] == 29.5 and third["counts"][0] == third["counts"][-1] == 40 * 24
    assert third["display"] == first["default"]
    assert (third["low"], third["high"]) != (first["low"], first["high"])  # measured on plane 2
    folder = archive.tile_folder(image_id)
    assert (folder / "planes" / "2" / "display" / histogram.FILE).is_file()


async def test_listings_do_not_carry_the_histogram(client, image):
    listing = await (await client.get("/api/images")).get_json()
    assert "histogram" not in listing["images"][0]["display"]
    assert "histogram" not in (await (await client.get(f"/api/images/{image.id}")).get_json())["display"]
    assert "low" in listing["images"][0]["display"]


async def test_a_private_images_histogram_is_refused_to_others(client, archive, add_image, make_user):
    await make_user("alice")
    await make_user("bob")
    private = await add_image("mine.fits", owner="alice", visibility="private")
    missing = await client.get("/api/images/nosuchimage1/histogram")
    for who in (None, "bob"):
        if who:
            assert (await log_in(client, who)).status_code == 302
        for query in ("", "?display=minmax~linear~grey", "?plane=0"):
            response = await client.get(f"/api/images/{private.id}/histogram{query}")
            assert response.status_code == 404
            body = await text_of(response)
            assert body.replace(private.id, "nosuchimage1") == await text_of(missing)
    assert not (archive.tile_folder(private.id) / "display").exists()  # nothing measured for them
    await client.post("/logout", form={})
    assert (await log_in(client, "alice")).status_code == 302
    page = await text_of(await client.get(f"/images/{private.id}"))
    assert attribute(page, "histogram", "data-url") == f"/api/images/{private.id}/histogram"
    response = await client.get(f"/api/images/{private.id}/histogram?display=minmax~linear~grey")
    assert response.status_code == 200
