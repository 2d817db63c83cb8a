"""The sky page and the footprints it draws (`GET /api/search/footprints`): only images the asker may see,
only those with a sky position, filtered like the search; the page's policy lets Aladin Lite run."""

from __future__ import annotations

import pytest
import pyvips

from app.search.elements import element_from
from tests.helpers import ingest, log_in
from tests.routes.conftest import text_of
from tests.routes.test_search import ELEMENTS


@pytest.fixture
async def elements(archive):
    for data in ELEMENTS:
        await archive.store.add_element(element_from(data))


async def test_footprints_are_the_visible_images_with_a_sky_position(client, archive, make_user, write_fits,
                                                                     elements):
    await make_user("ann")
    public = write_fits("public.fits", CRVAL1=150.0, CRVAL2=2.0, OBJECT="M 1")
    private = write_fits("private.fits", CRVAL1=151.0, CRVAL2=2.0, OBJECT="M 2")
    plain = public.with_name("plain.png")  # no WCS: not on the sky
    pyvips.Image.black(40, 30).write_to_file(str(plain))
    await ingest(archive, public, plain, visibility="public")
    await ingest(archive, private, owner="ann")
    answer = await (await client.get("/api/search/footprints")).get_json()
    assert [image["name"] for image in answer["images"]] == ["M 1"]
    [image] = answer["images"]
    assert image["center"][0] == pytest.approx(150.0) and len(image["corners"]) == 4
    assert answer["total"] == 1 and answer["limit"] == 2000
    assert (await log_in(client, "ann")).status_code == 302
    answer = await (await client.get("/api/search/footprints")).get_json()
    assert sorted(image["name"] for image in answer["images"]) == ["M 1", "M 2"]
    found = await (await client.get("/api/search/footprints?object=M+2")).get_json()
    assert [image["name"] for image in found["images"]] == ["M 2"]
    refused = await client.get("/api/search/footprints?sky_ra=nowhere&sky_dec=1")
    assert refused.status_code == 400
    assert "Sky position: RA 'nowhere' is not a coordinate" in (await refused.get_json())["error"]


async def test_the_sky_page_lets_aladin_lite_run_and_nothing_more(client):
    response = await client.get("/sky?object=M+1")
    assert response.status_code == 200
    page = await text_of(response)
    assert 'data-footprints="/api/search/footprints?object=M+1"' in page
    policy = response.headers["Content-Security-Policy"]
    assert "'wasm-unsafe-eval'" in policy and "worker-src 'self' blob:" in policy
    assert "'unsafe-inline'" not in policy and "frame-ancestors 'none'" in policy
    other = (await client.get("/search")).headers["Content-Security-Policy"]
    assert "wasm-unsafe-eval" not in other and "worker-src" not in other
