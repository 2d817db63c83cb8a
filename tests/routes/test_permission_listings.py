"""The permission matrix in listings: the portal (page and htmx fragment), its list of failed files,
`/api/images` with its counts and paging, a search by a hidden image's name, and the job list, each
asked by olive (the owner), another user, a guest and an administrator about her private,
registered-users and public image: each lists exactly what the asker may see, with working tile URLs,
and no id, name, file name or checksum of anything else (the world: permission_cases.py)."""

from __future__ import annotations

import re
from html import unescape

import pytest
import pytest_asyncio

from tests.routes.pages import text_of
from tests.routes.permission_cases import (
    ACTORS,
    CARD_LINK,
    SEES,
    VISIBILITIES,
    World,
    assert_nothing_of,
    open_world,
)

pytestmark = pytest.mark.asyncio(loop_scope="module")

# one world for the whole module (see permission_cases.py)
world = pytest_asyncio.fixture(open_world, scope="module", loop_scope="module", name="world")


# listings ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("actor", ACTORS)
@pytest.mark.parametrize("fragment", [False, True], ids=["page", "htmx"])
async def test_portal_lists_only_what_the_asker_may_see(world: World, actor: str, fragment: bool) -> None:
    client = world.clients[actor]
    headers = {"HX-Request": "true"} if fragment else {}
    response = await client.get("/", headers=headers)
    assert response.status_code == 200
    html = await text_of(response)
    shown = world.shown_to(actor)
    assert sorted(CARD_LINK.findall(html)) == sorted(image.id for image in shown)
    count = len(shown)
    assert f"{count} image{'' if count == 1 else 's'} in the archive." in html
    assert_nothing_of(html, world.hidden_from(actor), world, "portal")
    for image in shown:
        assert f"{image.visibility} &middot; olive" in html
    # a tile URL for each shown image, and it works; none for anything else
    tile_ids = set(re.findall(r"/tiles/([A-Za-z0-9]+)/", html))
    assert tile_ids == {image.id for image in shown}
    for thumb in re.findall(r'<img src="(/tiles/[^"]+)"', html):
        assert (await client.get(unescape(thumb))).status_code == 200


@pytest.mark.parametrize(("actor", "failures"), [
    ("owner", ["olive-broken.fits"]),
    ("other", []),
    ("guest", []),
    ("admin", ["olive-broken.fits", "site-broken.fits"]),
])
async def test_portal_failure_list_shows_only_the_askers_jobs(world: World, actor: str,
                                                              failures: list[str]) -> None:
    html = await text_of(await world.clients[actor].get("/"))
    table = re.search(r'<table class="jobs failed">(.*?)</table>', html, re.S)
    listed = sorted(re.findall(r"<td title=\"[^\"]*\">([^<]+)</td>", table.group(1))) if table else []
    assert listed == failures
    for name in {"olive-broken.fits", "site-broken.fits"} - set(failures):
        assert name not in html
    shown = re.sub(r"<[^>]+>", "", html)  # the count is a link to the monitor for administrators
    if failures:
        assert f"{len(failures)} file{'' if len(failures) == 1 else 's'} failed." in shown
    else:
        assert "failed." not in shown


@pytest.mark.parametrize("actor", ACTORS)
async def test_api_lists_only_what_the_asker_may_see(world: World, actor: str) -> None:
    client = world.clients[actor]
    response = await client.get("/api/images")
    assert response.status_code == 200
    payload = await response.get_json()
    shown = world.shown_to(actor)
    assert sorted(image["id"] for image in payload["images"]) == sorted(image.id for image in shown)
    assert payload["total"] == len(shown) and payload["pages"] == 1
    assert_nothing_of(await text_of(response), world.hidden_from(actor), world, "/api/images")
    for image in payload["images"]:
        assert image["owner"] == "olive" and image["permissions"]["view"] is True
        for key in ("thumbnail_url", "dzi_url"):
            assert image[key].startswith(f"/tiles/{image['id']}/")
            assert (await client.get(image[key])).status_code == 200
    # paging counts only what may be seen, too
    first = await (await client.get("/api/images?per_page=1")).get_json()
    assert first["total"] == len(shown) and first["pages"] == max(1, len(shown))


@pytest.mark.parametrize("actor", ACTORS)
@pytest.mark.parametrize("visibility", VISIBILITIES)
async def test_api_search_finds_only_what_the_asker_may_see(world: World, actor: str,
                                                             visibility: str) -> None:
    image = world.images[visibility]
    response = await world.clients[actor].get("/api/images", query_string={"keyword": "OBJECT",
                                                                          "eq": image.name})
    assert response.status_code == 200
    payload = await response.get_json()
    expected = [image.id] if visibility in SEES[actor] else []
    assert [found["id"] for found in payload["images"]] == expected
    assert payload["total"] == len(expected)
    if not expected:
        assert_nothing_of(await text_of(response), [image], world, "search")
    # a filter that matches every image is still narrowed to the visible ones
    everything = await (await world.clients[actor].get(
        "/api/images", query_string={"keyword": "NAXIS1", "eq": "48"})).get_json()
    assert everything["total"] == len(SEES[actor])


@pytest.mark.parametrize(("actor", "files"), [
    ("owner", {"private-secret.fits", "registered-secret.fits", "public-secret.fits", "olive-broken.fits"}),
    ("other", set()),
    ("admin", {"private-secret.fits", "registered-secret.fits", "public-secret.fits", "olive-broken.fits",
               "site-broken.fits"}),
])
async def test_jobs_api_shows_only_the_askers_jobs(world: World, actor: str, files: set[str]) -> None:
    response = await world.clients[actor].get("/api/jobs")
    assert response.status_code == 200
    payload = await response.get_json()
    assert {job["name"] for job in payload["jobs"]} == files
    done = sum(name.endswith("secret.fits") for name in files)
    assert payload["counts"] == {"queued": 0, "running": 0, "harvested": 0,
                                 "done": done, "failed": len(files) - done}
    failed = await (await world.clients[actor].get("/api/jobs?state=failed")).get_json()
    assert {job["name"] for job in failed["jobs"]} == {name for name in files if "broken" in name}
    text = await text_of(response)
    for name, job in world.jobs.items():
        if name not in files:
            assert job.id not in text and name not in text


async def test_jobs_api_asks_a_guest_to_log_in(world: World) -> None:
    response = await world.clients["guest"].get("/api/jobs")
    assert response.status_code == 401 and response.content_type == "application/json"
    payload = await response.get_json()
    assert payload["status"] == 401 and "log in" in payload["error"]
    text = await text_of(response)
    assert all(job.id not in text for job in world.jobs.values())
