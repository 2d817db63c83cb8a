"""The permission matrix under the site's switches, through the same routes: guests' downloads and
searches, guest access, the sharing policy (`none`, `all`) deciding what each actor sees of olive's
private, registered-users and public image in listings, the portal and by id, and a disabled account
treated as a guest; each switch is put back after its test (the world: permission_cases.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from tests.routes.pages import text_of
from tests.routes.permission_cases import ACTORS, CARD_LINK, World, open_world, site_policy

pytestmark = pytest.mark.asyncio(loop_scope="module")

# one world for the whole module (see permission_cases.py)
world = pytest_asyncio.fixture(open_world, scope="module", loop_scope="module", name="world")


# the site's switches, through the same routes ------------------------------------------------------
policy = pytest_asyncio.fixture(site_policy, loop_scope="module", name="policy")


async def test_guest_download_lets_guests_fetch_public_originals_only(world: World, policy: Any) -> None:
    await policy(guest_download=True)
    guest = world.clients["guest"]
    public = await guest.get(f"/images/{world.images['public'].id}/original")
    assert public.status_code == 200
    assert await public.get_data() == Path(world.images["public"].path).read_bytes()
    for visibility in ("private", "registered"):
        assert (await guest.get(f"/images/{world.images[visibility].id}/original")).status_code == 404
    page = await text_of(await guest.get(f"/images/{world.images['public'].id}"))
    assert f'href="/images/{world.images["public"].id}/original"' in page


async def test_without_guest_download_the_page_asks_guests_to_log_in(world: World) -> None:
    image = world.images["public"]
    page = await text_of(await world.clients["guest"].get(f"/images/{image.id}"))
    assert f'href="/images/{image.id}/original"' not in page
    assert "log in to download the original" in page
    response = await world.clients["guest"].get(f"/images/{image.id}/original")
    assert response.status_code == 401 and "log in to download" in await text_of(response)


async def test_guest_search_off_refuses_a_guests_filter_but_not_browsing(world: World, policy: Any) -> None:
    await policy(guest_search=False)
    guest = world.clients["guest"]
    for query in ({"keyword": "OBJECT", "eq": "Olive public field"}, {"keyword": "NAXIS1", "min": "1"},
                  {"eq": "1"}):
        response = await guest.get("/api/images", query_string=query)
        assert response.status_code == 403 and response.content_type == "application/json"
        assert "guests may not search" in (await response.get_json())["error"]
    browse = await (await guest.get("/api/images")).get_json()
    assert [image["id"] for image in browse["images"]] == [world.images["public"].id]
    assert (await guest.get("/")).status_code == 200
    # logged-in users still search
    found = await world.clients["other"].get("/api/images", query_string={"keyword": "NAXIS1", "min": "1"})
    assert found.status_code == 200 and (await found.get_json())["total"] == 2


async def test_guest_access_off_shuts_guests_out(world: World, policy: Any) -> None:
    await policy(guest_access=False)
    guest = world.clients["guest"]
    image = world.images["public"]
    for path in ("/", f"/images/{image.id}"):
        response = await guest.get(path)
        assert response.status_code == 302 and response.headers["Location"].startswith("/login?next=")
    for path in ("/api/images", f"/api/images/{image.id}", "/api/jobs"):
        response = await guest.get(path)
        assert response.status_code == 401 and "guest access is off" in (await response.get_json())["error"]
    # users are not affected
    assert (await world.clients["other"].get(f"/images/{image.id}")).status_code == 200


@pytest.mark.parametrize(("sharing", "sees"), [
    ("none", {"owner": {"private", "registered", "public"}, "other": set(), "guest": set(),
              "admin": {"private", "registered", "public"}}),
    ("all", {"owner": {"private", "registered", "public"}, "other": {"private", "registered", "public"},
             "guest": {"public"}, "admin": {"private", "registered", "public"}}),
])
async def test_sharing_policy_decides_what_others_see(world: World, policy: Any, sharing: str,
                                                      sees: dict[str, set[str]]) -> None:
    await policy(sharing=sharing)
    for actor in ACTORS:
        client = world.clients[actor]
        payload = await (await client.get("/api/images")).get_json()
        expected = {world.images[visibility].id for visibility in sees[actor]}
        assert {image["id"] for image in payload["images"]} == expected, actor
        assert payload["total"] == len(expected)
        html = await text_of(await client.get("/"))
        assert set(CARD_LINK.findall(html)) == expected, actor
        for visibility, image in world.images.items():
            status = (await client.get(f"/api/images/{image.id}")).status_code
            assert status == (200 if visibility in sees[actor] else 404), (actor, visibility)
    if sharing == "none":
        # the owner's "public" image is private in effect, and the page says so
        page = await text_of(await world.clients["owner"].get(f"/images/{world.images['public'].id}"))
        assert '<strong class="visibility">private</strong>' in page
        assert "set to public, but the site's sharing policy keeps user images private" in page


async def test_a_disabled_account_is_a_guest(world: World, policy: Any) -> None:
    user = await world.archive.store.get_user_by_name("otto")
    assert user is not None
    await world.archive.store.update_user(user.id, disabled=True)
    try:
        client = world.clients["other"]
        payload = await (await client.get("/api/images")).get_json()
        assert [image["id"] for image in payload["images"]] == [world.images["public"].id]
        assert (await client.get(f"/images/{world.images['registered'].id}")).status_code == 404
        assert (await client.get("/api/jobs")).status_code == 401
    finally:
        await world.archive.store.update_user(user.id, disabled=False)
    assert (await world.clients["other"].get(f"/images/{world.images['registered'].id}")).status_code == 200
