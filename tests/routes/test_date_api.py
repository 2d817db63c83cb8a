"""`GET /api/images` with a date range over alternate keywords: `date_keywords`, `date_from`, `date_to`."""

from __future__ import annotations

import pytest

from tests.helpers import log_in
from tests.routes.pages import text_of


@pytest.fixture
async def catalog(add_image):
    """Images dated in different ways: ISO date-time, date + TIME-OBS, MJD-OBS, DATE; one private."""
    return {
        "iso": await add_image("iso.fits", DATE_OBS="2026-03-14T21:05:00", EXPTIME=30.0),
        "last": await add_image("last.fits", DATE_OBS="2026-03-31", TIME_OBS="23:59:59.5", EXPTIME=300.0),
        "mjd": await add_image("mjd.fits", MJD_OBS=61100.0, EXPTIME=30.0),  # 2026-03-01 00:00 UTC
        "april": await add_image("april.fits", DATE="2026-04-01T00:00:00", EXPTIME=300.0),
        "alice": await add_image("alice.fits", DATE_OBS="2026-03-20T01:00:00+02:00", owner="alice",
                                 visibility="private"),
    }


async def names(client, status=200, **query):
    response = await client.get("/api/images", query_string=query)
    assert response.status_code == status, await text_of(response)
    payload = await response.get_json()
    assert payload["total"] == len(payload["images"])
    return {image["path"].rsplit("/", 1)[-1].removesuffix(".fits") for image in payload["images"]}


MARCH = {"date_keywords": "DATE-OBS,DATE,MJD-OBS", "date_from": "2026-03-01", "date_to": "2026-03-31"}


async def test_a_month_over_alternate_keywords_with_inclusive_whole_days(client, catalog):
    # the first microsecond of 1 March (by MJD-OBS) and the last second of 31 March (date + TIME-OBS) count
    assert await names(client, **MARCH) == {"iso", "last", "mjd"}
    assert await names(client, **{**MARCH, "date_keywords": "DATE-OBS"}) == {"iso", "last"}
    assert await names(client, **{**MARCH, "date_to": "2026-04-01"}) == {"iso", "last", "mjd", "april"}
    assert await names(client, **{**MARCH, "date_to": "2026-03-30"}) == {"iso", "mjd"}


async def test_open_ranges_and_full_times(client, catalog):
    keywords = MARCH["date_keywords"]
    assert await names(client, date_keywords=keywords, date_from="2026-03-15") == {"last", "april"}
    assert await names(client, date_keywords=keywords, date_to="2026-03-14") == {"iso", "mjd"}
    assert await names(client, date_keywords=keywords, date_from="2026-03-14T21:05:00Z",
                       date_to="2026-03-14T21:05:00Z") == {"iso"}
    assert await names(client, date_keywords=keywords, date_from="2026-03-14T23:00:00+02:00",
                       date_to="2026-03-14T23:10:00+02:00") == {"iso"}
    assert await names(client, date_keywords=keywords, date_from="2026-03-14T21:05:01") == {"last", "april"}
    assert await names(client, date_keywords="MJD-OBS") == {"mjd"}  # has that date at all


async def test_combined_with_a_keyword_filter(client, catalog):
    assert await names(client, **MARCH, keyword="EXPTIME", min="100") == {"last"}
    assert await names(client, **MARCH, keyword="EXPTIME", eq="30") == {"iso", "mjd"}


async def test_permissions_still_apply(client, catalog, make_user):
    assert "alice" not in await names(client, **MARCH)
    await make_user("alice")
    await make_user("bob")
    assert (await log_in(client, "bob")).status_code == 302
    assert await names(client, **MARCH) == {"iso", "last", "mjd"}
    client.cookie_jar.clear()
    assert (await log_in(client, "alice")).status_code == 302
    # 2026-03-19T23:00 UTC: inside March, and by its offset not on 20 March in UTC
    assert await names(client, **MARCH) == {"iso", "last", "mjd", "alice"}
    assert await names(client, date_keywords="DATE-OBS", date_from="2026-03-19",
                       date_to="2026-03-19") == {"alice"}


async def test_guests_may_not_filter_by_date_when_the_site_says_so(client, archive, catalog):
    await archive.store.save_site_settings({"guest_search": False})
    response = await client.get("/api/images", query_string=MARCH)
    assert response.status_code == 403
    assert "guests may not search this site" in (await response.get_json())["error"]


@pytest.mark.parametrize(("query", "message"), [
    ({"date_keywords": "", "date_from": "2026-03-01"}, "date_keywords: name at least one header keyword"),
    ({"date_keywords": ",,"}, "date_keywords: name at least one header keyword"),
    ({"date_from": "2026-03-01"}, "date_from and date_to need date_keywords="),
    ({"date_to": "2026-03-01"}, "date_from and date_to need date_keywords="),
    ({"date_keywords": "DATE-OBS", "date_from": "last week"}, "date_from: 'last week' is not a date"),
    ({"date_keywords": "DATE-OBS", "date_to": "2026-02-30"},
     "date_to: '2026-02-30' is not a date: day is out of range for month"),
    ({"date_keywords": "DATE-OBS", "date_from": "2026-03-14T24:00:00"}, "hours run 00-23"),
    ({"date_keywords": "DATE-OBS", "date_from": "14/03/96"}, "date_from: '14/03/96' is not a date"),
    ({"date_keywords": "DATE-OBS", "date_from": "2026-04-01", "date_to": "2026-03-01"},
     "date_from (2026-04-01) is after date_to (2026-03-01)"),
    ({"date_keywords": "DATE-OBS'; DROP TABLE images; --", "date_from": "2026-03-01"},
     "date_keywords: not a header keyword"),
    ({"date_keywords": '{"$where": "sleep(1000)"}'}, "date_keywords: not a header keyword"),
    ({"date_keywords": "DATE%,DATE_"}, "date_keywords: not a header keyword: 'DATE%'"),
    ({"date_keywords": "DATE-OBS", "date_from": "2026-03-01' OR '1'='1"}, "is not a date"),
    ({"date_keywords": ",".join(f"D{i}" for i in range(21))}, "date_keywords: at most 20 keywords"),
])
async def test_bad_date_parameters_are_a_json_400(client, catalog, query, message):
    response = await client.get("/api/images", query_string=query)
    assert response.status_code == 400, await text_of(response)
    payload = await response.get_json()
    assert payload["status"] == 400 and message in payload["error"], payload
    # the catalog is intact
    assert await names(client) == {"iso", "last", "mjd", "april"}
