"""The sky page and the footprints it draws (`GET /api/search/footprints`): only images the asker may see,
only those with a sky position, filtered like the search; the page's policy lets Aladin Lite run."""

from __future__ import annotations

import pytest
import pyvips

from app.search.elements import element_from
from tests.helpers import ingest, log_in
from tests.routes.pages import text_of
from tests.routes.search_helpers import ELEMENTS


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


async def test_the_sky_embed_may_be_framed_by_other_sites_for_a_guest_only(client, archive, make_user):
    response = await client.get("/embed/sky?object=M+1&target=-10+%2B45.5&fov=3deg")
    assert response.status_code == 200
    page = await text_of(response)
    # the view's first place is Aladin Lite's, not a search parameter
    assert 'data-footprints="/api/search/footprints?object=M+1"' in page
    assert 'data-target="350 45.5" data-fov="3"' in page and 'data-embed="true"' in page
    policy = response.headers["Content-Security-Policy"]
    assert "frame-ancestors *" in policy and "'wasm-unsafe-eval'" in policy
    assert "X-Frame-Options" not in response.headers
    assert response.headers["Cache-Control"] == "no-store"
    await make_user("ann")
    await log_in(client, "ann")
    mine = await client.get("/embed/sky")  # what ann sees (her private images) is for this site's frames
    assert mine.status_code == 200
    assert "frame-ancestors 'self'" in mine.headers["Content-Security-Policy"]


@pytest.mark.parametrize(("query", "message"), [
    ("target=nowhere", "target must be &#39;RA Dec&#39; in degrees (Dec from -90 to 90)"),
    ("target=10+91", "target must be &#39;RA Dec&#39; in degrees"),
    ("target=10+20+30", "target must be &#39;RA Dec&#39; in degrees"),
    ("target=nan+0", "target must be &#39;RA Dec&#39; in degrees"),
    ("fov=0", "fov must be the width of the view in degrees, above 0 and at most 360; got &#39;0&#39;"),
    ("fov=%3Cscript%3E", "got &#39;&lt;script&gt;&#39;"),
])
async def test_a_bad_first_view_is_said_on_both_pages(client, query, message):
    embed = await client.get(f"/embed/sky?{query}")
    assert embed.status_code == 400
    assert message in await text_of(embed)
    page = await client.get(f"/sky?{query}")
    assert page.status_code == 400
    assert message in await text_of(page)
