"""Cone search in `/api/images`: `ra=&dec=&radius=&frame=&mode=`, with keyword filters and permissions."""

from __future__ import annotations

import numpy as np
import pytest
from astropy.io import fits

from tests.helpers import ingest
from tests.routes.pages import text_of


async def get_json(client, url, status=200):
    response = await client.get(url)
    assert response.status_code == status, await text_of(response)
    assert response.content_type == "application/json"
    return await response.get_json()


def ids(payload):
    return {image["id"] for image in payload["images"]}


@pytest.fixture
async def sky(add_image, archive, tmp_path):
    """Public 64-pixel (about 1 arcmin) images at the Carina field (RA 161.265, Dec -59.684) and at
    RA 0.01 Dec 0, a private one of alice's at Carina, and one without a WCS."""
    carina = await add_image("carina.fits", CRVAL1=161.265, CRVAL2=-59.684, EXPTIME=10.0)
    carina_long = await add_image("carina_long.fits", CRVAL1=161.27, CRVAL2=-59.684, EXPTIME=300.0)
    zero = await add_image("zero.fits", CRVAL1=0.01, CRVAL2=0.0, EXPTIME=10.0)
    hidden = await add_image("hidden.fits", CRVAL1=161.265, CRVAL2=-59.684, EXPTIME=20.0, owner="alice",
                             visibility="private")
    plain = tmp_path / "plain" / "plain.fits"
    plain.parent.mkdir()
    fits.PrimaryHDU(np.arange(64 * 64, dtype="float32").reshape(64, 64)).writeto(plain)
    [job] = await ingest(archive, plain, visibility="public")
    assert job.state == "done" and (await archive.store.get_image(job.image_ids[0])).sky is None
    return {"carina": carina.id, "carina_long": carina_long.id, "zero": zero.id, "hidden": hidden.id}


async def test_cone_finds_the_images_there(client, sky):
    near = await get_json(client, "/api/images?ra=10:45:03.6&dec=-59:41:02&radius=2arcmin")
    assert ids(near) == {sky["carina"], sky["carina_long"]} and near["total"] == 2
    # across RA 0/360: a cone centred just below 360 finds the image just above 0
    wrapped = await get_json(client, "/api/images?ra=359.99&dec=0&radius=1arcmin")
    assert ids(wrapped) == {sky["zero"]}
    # the same place given in Galactic coordinates
    assert ids(await get_json(client, "/api/images?ra=96.3557&dec=-60.1925&frame=galactic&radius=1arcmin")
               ) == {sky["zero"]}
    assert ids(await get_json(client, "/api/images?ra=90&dec=45&radius=10deg")) == set()


async def test_contains_needs_the_point_on_the_image(client, sky):
    centre = await get_json(client, "/api/images?ra=10h45m03.6s&dec=-59d41m02s&mode=contains")
    assert ids(centre) == {sky["carina"], sky["carina_long"]}
    # 2 arcmin away: outside both images, though a 2-arcmin cone there overlaps them
    away = "ra=161.265&dec=-59.65&radius=2.5arcmin"
    assert ids(await get_json(client, f"/api/images?{away}&mode=contains")) == set()
    assert ids(await get_json(client, f"/api/images?{away}&mode=overlaps")) == {sky["carina"],
                                                                                 sky["carina_long"]}


async def test_cone_combines_with_a_keyword_filter(client, sky):
    payload = await get_json(client, "/api/images?ra=161.265&dec=-59.684&radius=5arcmin"
                                     "&keyword=EXPTIME&min=100")
    assert ids(payload) == {sky["carina_long"]}


async def test_private_images_stay_hidden_from_guests_and_others(client, sky, make_user):
    url = "/api/images?ra=161.265&dec=-59.684&radius=5arcmin"
    assert sky["hidden"] not in ids(await get_json(client, url))
    from tests.helpers import log_in

    await make_user("alice")
    assert (await log_in(client, "alice")).status_code == 302
    assert sky["hidden"] in ids(await get_json(client, url))


async def test_guests_may_not_cone_search_when_the_site_says_so(client, archive, sky):
    await archive.store.save_site_settings({"guest_search": False})
    payload = await get_json(client, "/api/images?ra=10&dec=10&radius=1", status=403)
    assert "guests may not search" in payload["error"]


@pytest.mark.parametrize(("query", "message"), [
    ("ra=abc&dec=10&radius=1", "RA 'abc' is not a coordinate"),
    ("ra=10&dec=95&radius=1", "Dec '95' is outside -90..+90 degrees"),
    ("ra=10&dec=10&radius=0", "radius '0' must be greater than zero"),
    ("ra=10&dec=10&radius=200deg", "radius '200deg' is more than 180 degrees"),
    ("ra=10&dec=10&radius=5parsec", "radius '5parsec' is not an angle"),
    ("ra=10&dec=10", "a cone that overlaps images needs a radius"),
    ("ra=10&radius=1", "a cone search needs both ra= and dec="),
    ("ra=10&dec=10&radius=1&frame=fk5", "frame must be one of icrs, galactic"),
    ("ra=10&dec=10&radius=1&mode=near", "mode must be one of overlaps, contains"),
    ("ra=%27%3B%20DROP%20TABLE%20images&dec=0&radius=1", "is not a coordinate"),
])
async def test_bad_cone_input_is_refused_with_the_reason(client, sky, query, message):
    payload = await get_json(client, f"/api/images?{query}", status=400)
    assert message in payload["error"]
    assert (await get_json(client, "/api/images"))["total"] == 4  # nothing was harmed
