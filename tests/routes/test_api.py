"""The JSON API: `/api/images` (paged, with keyword filters), `/api/images/<id>`, `/api/jobs`."""

from __future__ import annotations

import pytest

from app.ingest.scan import job_for
from tests.helpers import ingest
from tests.routes.pages import dzi_facts, text_of

URL_KEYS = ("url", "api_url", "thumbnail_url", "dzi_url", "original_url")


@pytest.fixture
async def catalog(add_image):
    """Four images with different EXPTIME and OBJECT, oldest first."""
    return [
        await add_image("short.fits", OBJECT="M31", EXPTIME=5.0, OBSID="12345"),
        await add_image("medium.fits", OBJECT="M42", EXPTIME=30.0, OBSID=12345),
        await add_image("long.fits", OBJECT="M31", EXPTIME=200.0),
        await add_image("edge.fits", OBJECT="M 31", EXPTIME=100, FLAT=True),
    ]


async def get_json(client, url, status=200, **options):
    response = await client.get(url, **options)
    assert response.status_code == status, await text_of(response)
    assert response.content_type == "application/json"
    return await response.get_json()


async def test_images_are_listed_newest_first_with_working_urls(client, archive, catalog):
    # guests may download the originals of public images here, so every URL answers
    await archive.store.save_site_settings({"guest_download": True})
    payload = await get_json(client, "/api/images")
    assert payload["total"] == 4 and payload["pages"] == 1 and payload["page"] == 1
    assert payload["per_page"] == 24
    assert [image["id"] for image in payload["images"]] == [image.id for image in reversed(catalog)]
    first = payload["images"][0]
    assert first["name"] == "M 31" and first["width"] == 64 and first["format"] == "fits"
    assert first["sha256"] == catalog[-1].sha256 and first["size"] == catalog[-1].size
    assert "header" not in first
    for key in URL_KEYS:
        response = await client.get(first[key])
        assert response.status_code == 200, (key, first[key])
    assert first["url"] == f"/images/{first['id']}"
    assert (await client.get(first["thumbnail_url"])).content_type == "image/jpeg"
    assert dzi_facts(await text_of(await client.get(first["dzi_url"])))["width"] == 64
    detail = await get_json(client, first["api_url"])
    assert detail["id"] == first["id"]


async def test_images_are_paged(client, catalog):
    newest_first = [image.id for image in reversed(catalog)]
    seen = []
    for page in (1, 2, 3):
        payload = await get_json(client, f"/api/images?per_page=3&page={page}")
        assert (payload["total"], payload["pages"], payload["page"], payload["per_page"]) == (4, 2, page, 3)
        seen.extend(image["id"] for image in payload["images"])
    assert seen == newest_first


@pytest.mark.parametrize("query", ["page=0", "page=x", "per_page=0", "per_page=500", "per_page=2.5"])
async def test_bad_paging_is_a_json_400(client, query):
    payload = await get_json(client, f"/api/images?{query}", status=400)
    assert payload["status"] == 400 and "page" in payload["error"]


@pytest.mark.parametrize(("query", "expected"), [
    ({"keyword": "EXPTIME", "min": "10", "max": "100"}, ["edge.fits", "medium.fits"]),
    ({"keyword": "EXPTIME", "min": "10"}, ["edge.fits", "long.fits", "medium.fits"]),
    ({"keyword": "EXPTIME", "max": "30"}, ["medium.fits", "short.fits"]),
    ({"keyword": "EXPTIME", "min": "1e1", "max": "3.0e1"}, ["medium.fits"]),
    ({"keyword": "EXPTIME", "min": "30", "max": "30"}, ["medium.fits"]),
    ({"keyword": "EXPTIME", "min": "300"}, []),
    ({"keyword": "EXPTIME", "eq": "200"}, ["long.fits"]),
    ({"keyword": "EXPTIME", "eq": "100.0"}, ["edge.fits"]),
    ({"keyword": "OBJECT", "eq": "M31"}, ["long.fits", "short.fits"]),
    ({"keyword": "OBJECT", "eq": "M 31"}, ["edge.fits"]),
    ({"keyword": "OBJECT", "eq": "m31"}, []),
    ({"keyword": "OBJECT", "eq": "M31' OR '1'='1"}, []),
    ({"keyword": "FLAT", "eq": "T"}, ["edge.fits"]),
    ({"keyword": "NOSUCHKEY", "eq": "1"}, []),
    # digits match the number and the same text (an identifier written as a string)
    ({"keyword": "OBSID", "eq": "12345"}, ["medium.fits", "short.fits"]),
    ({"keyword": "OBSID", "eq": "12345.0"}, ["medium.fits"]),
    ({"keyword": "OBSID", "min": "12345"}, ["medium.fits"]),
])
async def test_keyword_filters_select_the_matching_images(client, catalog, query, expected):
    payload = await get_json(client, "/api/images", query_string=query)
    names = sorted(image["path"].rsplit("/", 1)[-1] for image in payload["images"])
    assert names == expected
    assert payload["total"] == len(expected)


async def test_filtered_results_are_paged_over_the_matches(client, catalog):
    query = {"keyword": "EXPTIME", "min": "10", "per_page": "1"}
    pages = [await get_json(client, "/api/images", query_string={**query, "page": str(n)}) for n in (1, 2, 3)]
    assert {page["total"] for page in pages} == {3} and {page["pages"] for page in pages} == {3}
    assert [page["images"][0]["id"] for page in pages] == [catalog[3].id, catalog[2].id, catalog[1].id]


@pytest.mark.parametrize(("query", "message"), [
    ({"keyword": "EXPTIME", "min": "100", "max": "10"}, "greater than max"),
    ({"keyword": "EXPTIME", "eq": "5", "min": "1"}, "either eq or min/max"),
    ({"keyword": "EXPTIME", "eq": "5", "max": "1"}, "either eq or min/max"),
    ({"keyword": "EXPTIME"}, "needs eq"),
    ({"eq": "5"}, "need a keyword"),
    ({"min": "5"}, "need a keyword"),
    ({"keyword": 'EXPTIME"', "eq": "5"}, "not a header keyword"),
    ({"keyword": "EXPTIME') OR 1=1 --", "eq": "5"}, "not a header keyword"),
    ({"keyword": "OBJECT\" = 'M31' OR \"x", "eq": "5"}, "not a header keyword"),
    ({"keyword": "$.OBJECT", "eq": "M31"}, "not a header keyword"),
    ({"keyword": "", "eq": "5"}, "not a header keyword"),
    ({"keyword": "K" * 129, "eq": "5"}, "not a header keyword"),
])
async def test_bad_filters_are_a_json_400(client, catalog, query, message):
    payload = await get_json(client, "/api/images", status=400, query_string=query)
    assert set(payload) == {"error", "status"} and payload["status"] == 400
    assert message in payload["error"]


async def test_image_detail_includes_the_header(client, catalog):
    image = catalog[1]
    payload = await get_json(client, f"/api/images/{image.id}")
    assert payload["id"] == image.id and payload["name"] == "M42"
    header = payload["header"]
    assert header["EXPTIME"] == 30.0 and header["OBJECT"] == "M42"
    assert header["CTYPE1"] == "RA---TAN" and header["NAXIS1"] == 64
    assert payload["comments"]["CTYPE1"]
    assert payload["sky"]["center_ra"] == pytest.approx(150.10, abs=1e-6)
    for key in URL_KEYS:
        assert payload[key].endswith(("original", image.id, ".dzi", ".jpeg")), key


async def test_unknown_image_is_a_json_404(client):
    payload = await get_json(client, "/api/images/nosuchimage", status=404)
    assert payload["status"] == 404 and "there is no image" in payload["error"]


async def test_unknown_api_path_is_a_json_404(client):
    payload = await get_json(client, "/api/nothing-here", status=404)
    assert payload["status"] == 404 and payload["error"]


async def test_jobs_show_counts_and_states(client, admin, archive, tmp_path, write_fits):
    broken = tmp_path / "broken.fits"
    broken.write_text("SIMPLE  = this is not a FITS header\n")
    done = await ingest(archive, write_fits("fine.fits"), broken)
    await archive.store.enqueue([job_for(write_fits("later.fits"))])
    states = {job.path.rsplit("/", 1)[-1]: job.state for job in done}
    assert states == {"fine.fits": "done", "broken.fits": "failed"}

    payload = await get_json(client, "/api/jobs")
    assert payload["counts"] == {"queued": 1, "running": 0, "harvested": 0, "done": 1, "failed": 1}
    listed = {job["name"]: job for job in payload["jobs"]}
    assert {name: job["state"] for name, job in listed.items()} == {
        "fine.fits": "done", "broken.fits": "failed", "later.fits": "queued"}
    assert listed["broken.fits"]["error"] and listed["fine.fits"]["error"] == ""
    assert len(listed["fine.fits"]["image_ids"]) == 1
    image = await get_json(client, f"/api/images/{listed['fine.fits']['image_ids'][0]}")
    assert image["job_id"] == listed["fine.fits"]["id"]
    # a listed job carries what its own page does, but for the images themselves
    for job in payload["jobs"]:
        single = await get_json(client, job["status_url"])
        assert single.pop("images") is not None and single == job

    failed = await get_json(client, "/api/jobs?state=failed")
    assert [job["name"] for job in failed["jobs"]] == ["broken.fits"]
    assert failed["counts"] == payload["counts"]
    queued = await get_json(client, "/api/jobs?state=queued")
    assert [job["name"] for job in queued["jobs"]] == ["later.fits"]
    paged = await get_json(client, "/api/jobs?per_page=2&page=2")
    assert len(paged["jobs"]) == 1 and paged["page"] == 2


@pytest.mark.parametrize("state", ["FAILED", "broken", "done' OR '1'='1", "failed,done"])
async def test_jobs_bad_state_is_a_json_400(member, state):
    payload = await get_json(member, "/api/jobs", status=400, query_string={"state": state})
    assert "state must be one of queued, running, harvested, done, failed" in payload["error"]
