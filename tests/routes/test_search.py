"""The search page and `/api/search`: the admin's elements, alternate keywords OR-ed, elements AND-ed, only
what the asker may see, bad input answered precisely, results sorted and paged, selections downloaded as a
zip or opened in the viewer."""

from __future__ import annotations

import io
import zipfile
from urllib.parse import quote

import pytest

from app.search.elements import element_from
from tests.helpers import log_in
from tests.routes.pages import text_of
from tests.routes.search_helpers import ELEMENTS


@pytest.fixture
async def elements(archive):
    for data in ELEMENTS:
        await archive.store.add_element(element_from(data))


@pytest.fixture
async def catalog(add_image, elements):
    """Five images whose instruments wrote time, exposure and target under different keywords."""
    return {
        "a": await add_image("a.fits", DATE_OBS="2026-01-05T03:00:00", EXPTIME=10.0, OBJECT="M31 core",
                             FILTER="B"),
        "b": await add_image("b.fits", DATE="2026-01-20", EXPOSURE=30, TARGNAME="m31 halo", FILTER="V"),
        "c": await add_image("c.fits", MJD_OBS=61102.5, EXPTIME=300.0, OBJECT="NGC 100%_x", FILTER="R",
                             CRVAL1=30.0, CRVAL2=-60.0),
        "d": await add_image("d.fits", DATETIME="2026-03-01T12:00:00", EXPTIME="fast", OBJECT="Omega Cen"),
        "p": await add_image("p.fits", owner="alice", visibility="private", DATE_OBS="2026-01-06T00:00:00",
                             EXPTIME=10.0, OBJECT="M31 secret"),
    }


async def found(client, query, status=200):
    response = await client.get(f"/api/search?{query}")
    body = await response.get_json()
    assert response.status_code == status, body
    return body


def file_name(image):
    return image["path"].rsplit("/", 1)[-1]


def names(body):
    return sorted(file_name(image) for image in body["images"])


@pytest.mark.parametrize(("query", "expected"), [
    # a date range finds images whichever keyword their header used (DATE-OBS, DATE, MJD-OBS, DATETIME)
    ("obsdate_from=2026-01-01&obsdate_to=2026-01-31", ["a.fits", "b.fits"]),
    ("obsdate_from=2026-02-01", ["c.fits", "d.fits"]),  # MJD 61102.5 is 2026-03-03 12:00
    ("obsdate_to=2026-01-05", ["a.fits"]),  # the end day is included whole
    # numbers compare as numbers over EXPTIME or EXPOSURE; text values never match a range
    ("exptime_min=20", ["b.fits", "c.fits"]),
    ("exptime_min=5&exptime_max=30", ["a.fits", "b.fits"]),
    # text: contains, ignoring case, over OBJECT or TARGNAME; % and _ are ordinary characters
    ("object=m31", ["a.fits", "b.fits"]),
    ("object=HALO", ["b.fits"]),
    ("object=100%25_", ["c.fits"]),
    ("object=%25", ["c.fits"]),
    ("object=_", ["c.fits"]),
    ("object=OMEGA%20c", ["d.fits"]),
    ("filter=V", ["b.fits"]),
    # the cone: images whose footprint overlaps it; c sits elsewhere on the sky
    ("sky_ra=02:00:00&sky_dec=-60:00:00&sky_radius=5arcmin", ["c.fits"]),
    ("sky_ra=30&sky_dec=-60&sky_mode=contains", ["c.fits"]),
    ("sky_ra=30.5&sky_dec=-60&sky_radius=1arcmin", []),
    # elements are AND-ed
    ("object=m31&exptime_max=20", ["a.fits"]),
    ("obsdate_from=2026-01-01&exptime_min=1&object=core", ["a.fits"]),
])
async def test_search_finds_images_without_knowing_the_keywords(client, catalog, query, expected):
    assert names(await found(client, query)) == expected


async def test_private_images_are_found_only_by_those_who_may_see_them(client, catalog, make_user):
    assert names(await found(client, "exptime_min=10&exptime_max=10")) == ["a.fits"]
    await make_user("alice")
    await log_in(client, "alice")
    assert names(await found(client, "exptime_min=10&exptime_max=10")) == ["a.fits", "p.fits"]
    suggestions = await (await client.get("/api/search/suggest/object?object=m31")).get_json()
    assert {item["value"] for item in suggestions["values"]} == {"M31 core", "m31 halo", "M31 secret"}


async def test_suggestions_come_from_visible_images_only(client, catalog):
    body = await (await client.get("/api/search/suggest/object?object=M")).get_json()
    assert {item["value"] for item in body["values"]} == {"M31 core", "m31 halo", "Omega Cen"}
    # anywhere in the value, as the search itself matches
    body = await (await client.get("/api/search/suggest/object?object=HAL")).get_json()
    assert [item["value"] for item in body["values"]] == ["m31 halo"]
    assert names(await found(client, "object=HAL")) == ["b.fits"]
    options = await text_of(await client.get("/search/suggest/filter?format=options&selected=V"))
    assert '<option value="V" selected>V (1)</option>' in options
    assert (await client.get("/api/search/suggest/nope")).status_code == 404
    assert (await client.get("/api/search/suggest/exptime")).status_code == 400


@pytest.mark.parametrize(("query", "message"), [
    ("sky_ra=25h&sky_dec=0", "Sky position: "),
    ("sky_ra=abc&sky_dec=0", "Sky position: RA 'abc'"),
    ("sky_ra=10&sky_dec=95", "Sky position: Dec"),
    ("sky_ra=10&sky_dec=0&sky_radius=0", "radius '0' must be greater than zero"),
    ("sky_ra=10&sky_dec=0&sky_radius=-3arcmin", "radius"),
    ("sky_ra=10&sky_dec=0&sky_radius=181deg", "is more than 180 degrees"),
    ("sky_ra=10", "a sky position needs both RA and Dec"),
    ("exptime_min=50&exptime_max=5", "Exposure: min (50) is greater than max (5)"),
    ("exptime_min=lots", "Exposure: min 'lots' is not a number"),
    ("obsdate_from=2026-13-45", "Observation date: from:"),
    ("obsdate_from=2026-02-01&obsdate_to=2026-01-01", "is after to"),
    ("filter=Q", "Filter: 'Q' is not one of the choices"),
    ("nosuch=1", "there is no search element 'nosuch'"),
    ("exptime_minimum=3", "there is no search element 'exptime_minimum'"),
    ("sort=size;DROP", "cannot sort by 'size;DROP'"),
    ("order=sideways", "order must be asc or desc"),
    ("object=" + "x" * 201, "search text is limited to 200 characters"),
])
async def test_bad_input_gets_a_precise_message(client, catalog, query, message):
    body = await found(client, query, status=400)
    assert message in body["error"], body


@pytest.mark.parametrize("text", ["'; DROP TABLE images; --", '{"$where": "1"}', "\\", "' OR '1'='1",
                                  "%' OR 1=1 --"])
async def test_injection_attempts_match_literally(client, archive, catalog, text):
    assert (await found(client, f"object={quote(text)}"))["total"] == 0
    assert (await found(client, f"filter={quote(text)}", status=400))["error"].startswith("Filter:")
    assert (await found(client, f"obsdate_from={quote(text)}", status=400))["error"].startswith("Observation")
    assert (await found(client, f"sky_ra={quote(text)}&sky_dec=0", status=400))["error"].startswith("Sky")
    # the catalog is intact
    assert await archive.store.count_images() == 5


async def test_a_keyword_that_no_image_has_is_said(client, archive, catalog):
    await archive.store.add_element(element_from({"id": "airmass", "type": "number", "label": "Airmass",
                                                  "keywords": ["AIRMASS"]}))
    body = await found(client, "airmass_max=2")
    assert body["total"] == 0 and body["notices"] == ["Airmass: no image has AIRMASS"]


async def test_results_are_sorted_and_paged(client, catalog):
    body = await found(client, "exptime_min=0&sort=exptime&order=asc")
    assert [file_name(image) for image in body["images"]] == ["a.fits", "b.fits", "c.fits"]
    body = await found(client, "sort=exptime&order=desc")
    # images without a numeric exposure come last either way
    assert [file_name(image) for image in body["images"]][:3] == ["c.fits", "b.fits", "a.fits"]
    body = await found(client, "sort=obsdate&order=asc")
    assert [file_name(image) for image in body["images"]] == ["a.fits", "b.fits", "d.fits", "c.fits"]
    # names come from OBJECT: M31 core (a), NGC 100%_x (c), Omega Cen (d), Test field (b)
    body = await found(client, "sort=name&order=asc&per_page=3&page=2")
    assert [file_name(image) for image in body["images"]] == ["b.fits"]
    assert (body["total"], body["pages"], body["page"]) == (4, 2, 2)


async def test_guests_may_not_search_when_the_site_says_so(client, archive, catalog):
    await archive.store.save_site_settings({"guest_search": False})
    body = await found(client, "object=m31", status=403)
    assert "guests may not search this site" in body["error"]
    # browsing without a condition stays allowed
    assert (await found(client, ""))["total"] == 4
    # and the pages offer no search they would refuse: no menu entry, no form, a way to log in
    portal = await text_of(await client.get("/"))
    assert 'href="/search"' not in portal
    page = await text_of(await client.get("/search"))
    assert 'id="search-form"' not in page and 'id="guests-may-not-search"' in page
    assert 'href="/login?next=/search"' in page
    await archive.store.save_site_settings({"guest_search": True})
    assert 'href="/search"' in await text_of(await client.get("/"))
    assert 'id="search-form"' in await text_of(await client.get("/search"))


async def test_a_bad_value_alone_lists_nothing_and_a_page_past_the_end_says_so(client, catalog):
    html = await text_of(await client.get("/search?exptime_min=lots"))
    assert "Exposure: min &#39;lots&#39; is not a number" in html
    assert "<strong>0</strong> images found" in html and 'class="results"' not in html
    html = await text_of(await client.get("/search?per_page=2&page=7"))
    assert 'id="past-the-end"' in html and "Page 7 is past the last page" in html
    assert 'href="/search?order=desc&amp;per_page=2&amp;page=2"' in html and ">Go to page 2</a>" in html


async def test_the_page_renders_the_form_in_order_and_results_in_place(client, catalog):
    html = await text_of(await client.get("/search?object=m31&exptime_max=20"))
    positions = [html.index(f'id="element-{element["id"]}"') for element in ELEMENTS]
    assert positions == sorted(positions)
    assert 'name="object" value="m31"' in html and 'name="exptime_max" size="8" value="20"' in html
    assert "<strong>1</strong> image found" in html and ">M31 core</a>" in html
    # htmx asks for the results only
    fragment = await text_of(await client.get("/search?object=m31", headers={"HX-Request": "true"}))
    assert fragment.lstrip().startswith('<section id="results"')
    assert "<strong>2</strong> images found" in fragment and "<form id=\"search-form\"" not in fragment
    # column headers sort in place and keep the query
    assert 'hx-get="/search?object=m31&amp;sort=exptime&amp;order=asc"' in fragment
    # the page shows messages instead of failing
    html = await text_of(await client.get("/search?exptime_min=lots&object=m31"))
    assert "Exposure: min &#39;lots&#39; is not a number" in html
    assert "<strong>2</strong> images found" in html


async def test_hostile_header_text_is_escaped(client, add_image, elements):
    await add_image("x.fits", OBJECT="<script>alert(1)</script>")
    html = await text_of(await client.get("/search?object=script"))
    assert "<script>alert(1)</script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html


async def test_a_selection_downloads_as_one_zip(client, archive, catalog, make_user):
    await make_user("mia")
    await log_in(client, "mia")
    ids = [catalog[key].id for key in ("a", "b", "p")]  # p is alice's private image: left out
    response = await client.get(f"/search/download?ids={','.join(ids)}")
    assert response.status_code == 200
    assert response.headers["Content-Disposition"] == 'attachment; filename="imagex-selection.zip"'
    data = await response.get_data()
    with zipfile.ZipFile(io.BytesIO(data)) as bundle:
        assert bundle.testzip() is None
        assert sorted(bundle.namelist()) == ["a.fits", "b.fits"]
        for key in ("a", "b"):
            with open(catalog[key].path, "rb") as original:
                assert bundle.read(f"{key}.fits") == original.read()
    only_hidden = await client.get(f"/search/download?ids={catalog['p'].id}")
    assert only_hidden.status_code == 404
    assert (await client.get("/search/download")).status_code == 400
    many = ",".join(f"id{number}" for number in range(501))
    response = await client.get(f"/search/download?ids={many}")
    assert response.status_code == 400
    assert "select at most 500 images" in await text_of(response)


async def test_guests_cannot_download_originals_when_the_site_says_so(client, catalog):
    # guests may not download originals by default
    response = await client.get(f"/search/download?ids={catalog['a'].id}")
    assert response.status_code == 403


async def test_a_selection_opens_in_the_mosaic_viewer(client, catalog):
    response = await client.get(f"/search/open?ids={catalog['a'].id}&ids={catalog['b'].id}")
    assert response.status_code == 303
    assert response.headers["Location"] == f"/mosaic?ids={catalog['a'].id}%2C{catalog['b'].id}"
    mosaic = await (await client.get(f"/api/mosaic?ids={catalog['a'].id},{catalog['b'].id}")).get_json()
    assert [layer["id"] for layer in mosaic["layers"]] == [catalog["a"].id, catalog["b"].id]
    page = await client.get(response.headers["Location"])
    html = await text_of(page)
    assert page.status_code == 200
    assert f"/tiles/{catalog['a'].id}/" in html and f"/tiles/{catalog['b'].id}/" in html


async def test_a_broad_search_says_more_than_the_count_bound(client, catalog, monkeypatch):
    from app.routes import views

    monkeypatch.setattr(views, "COUNT_LIMIT", 2)
    body = await found(client, "obsdate_from=2026-01-01")
    assert (body["total"], body["total_exact"]) == (2, False)
    assert len(body["images"]) == 4  # the page itself is whole
    html = await text_of(await client.get("/search?obsdate_from=2026-01-01&per_page=1"))
    assert "More than <strong>2</strong> images found, page 1." in html
    assert 'href="/search?obsdate_from=2026-01-01&amp;order=desc&amp;per_page=1&amp;page=2"' in html
    exact = await found(client, "obsdate_to=2026-01-05")
    assert (exact["total"], exact["total_exact"]) == (1, True)
    listing = await text_of(await client.get("/"))
    assert "More than 2 images in the archive." in listing
