"""The permission matrix through the real routes: every route, asked by the image's owner, another user, a
guest and an administrator, about a private, a registered-users and a public image (the site's default
policy: users choose, guests browse but do not download). Each actor is a separate logged-in test client
of one app. Besides the status, nothing about an image the asker may not see may leak: not its id, name,
file name or checksum in listings, counts, searches, job lists or error pages (a hidden image answers
exactly like a missing one), and no tile URL is ever issued for it.

One world (app, users, images, jobs) serves the whole module; cases that change it put it back or work
on an image of their own."""

from __future__ import annotations

import itertools
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from html import unescape
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from astropy.io import fits

from app import create_app
from app.archive import Archive
from app.identity import new_user
from app.samples import FIELD_DEC, FIELD_RA, celestial_wcs, star_field
from app.settings import Settings
from app.store.base import ImageRecord, SearchElement
from app.tiles.pool import Pool
from tests.helpers import PASSWORD, csrf_of, ingest, log_in
from tests.routes.conftest import attribute, text_of

pytestmark = pytest.mark.asyncio(loop_scope="module")

ACTORS = ("owner", "other", "guest", "admin")
VISIBILITIES = ("private", "registered", "public")
LOGINS = {"owner": "olive", "other": "otto", "admin": "ada"}
# Which of olive's images each actor may see under the default policy.
SEES = {
    "owner": {"private", "registered", "public"},
    "other": {"registered", "public"},
    "guest": {"public"},
    "admin": {"private", "registered", "public"},
}
# route -> actor -> status for olive's (private, registered, public) image.
EVERYTHING = {"owner": (200, 200, 200), "other": (404, 200, 200), "guest": (404, 404, 200),
              "admin": (200, 200, 200)}
OWNER_OR_ADMIN = {"other": (404, 403, 403), "guest": (404, 404, 401)}
STATUS: dict[str, dict[str, tuple[int, int, int]]] = {
    "image page": EVERYTHING,
    "image json": EVERYTHING,
    "original": {**EVERYTHING, "guest": (404, 404, 401)},  # guests may not download by default
    "visibility form": {"owner": (303, 303, 303), "admin": (303, 303, 303), **OWNER_OR_ADMIN},
    "visibility htmx": {"owner": (200, 200, 200), "admin": (200, 200, 200), **OWNER_OR_ADMIN},
    "visibility json": {"owner": (200, 200, 200), "admin": (200, 200, 200), **OWNER_OR_ADMIN},
    "delete form": {"owner": (303, 303, 303), "admin": (303, 303, 303), **OWNER_OR_ADMIN},
    "delete json": {"owner": (200, 200, 200), "admin": (200, 200, 200), **OWNER_OR_ADMIN},
}
IMAGE_CASES = [(route, actor, visibility, STATUS[route][actor][index])
               for route, actor, (index, visibility) in itertools.product(STATUS, ACTORS,
                                                                           enumerate(VISIBILITIES))]
MARKS = {"private": "PRIKW", "registered": "REGKW", "public": "PUBKW"}
CARD_LINK = re.compile(r'<a class="name" href="/images/([^"]+)">')


@dataclass
class World:
    archive: Archive
    folder: Path
    clients: dict[str, Any]
    csrf: dict[str, str]
    images: dict[str, ImageRecord]  # olive's, by visibility
    jobs: dict[str, Any] = field(default_factory=dict)  # by file name

    def secrets_of(self, image: ImageRecord) -> list[str]:
        """What must not appear anywhere an asker who may not see `image` looks."""
        return [image.id, image.name, Path(image.path).name, image.sha256]

    def hidden_from(self, actor: str) -> list[ImageRecord]:
        return [image for visibility, image in self.images.items() if visibility not in SEES[actor]]

    def shown_to(self, actor: str) -> list[ImageRecord]:
        return [image for visibility, image in self.images.items() if visibility in SEES[actor]]


def write_field(folder: Path, name: str, title: str, **cards: Any) -> Path:
    """A small FITS star field with a real WCS; `title` (OBJECT) becomes the image's name and makes the
    content, hence the checksum, unique."""
    wcs = celestial_wcs(FIELD_RA, FIELD_DEC, 48, 48)
    header = wcs.to_header()
    header["OBJECT"] = title
    for keyword, value in cards.items():
        header[keyword] = value
    path = folder / name
    fits.PrimaryHDU(star_field(wcs, 48, 48).astype("float32"), header).writeto(path)
    return path


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def world(tmp_path_factory: pytest.TempPathFactory, pool: Pool) -> AsyncIterator[World]:
    root = tmp_path_factory.mktemp("matrix")
    folder = root / "in"
    folder.mkdir()
    settings = Settings.load(environ={}, hips=False, data=str(root / "var"), workers=2, job_lease=5.0)
    app = create_app(settings, run_jobs=False, pool=pool)
    archive: Archive = app.extensions["imagex"]
    async with app.test_app() as running:
        for actor, username in LOGINS.items():
            await new_user(archive, username, PASSWORD, role="admin" if actor == "admin" else "user")
        clients = {actor: running.test_client() for actor in ACTORS}
        for actor, username in LOGINS.items():
            assert (await log_in(clients[actor], username)).status_code == 302
        csrf = {actor: await csrf_of(client) for actor, client in clients.items()}

        # each image alone carries a keyword (PRIKW, REGKW, PUBKW) that a search field asks about
        paths = [write_field(folder, f"{visibility}-secret.fits", f"Olive {visibility} field",
                             **{MARKS[visibility]: "marked"})
                 for visibility in VISIBILITIES]
        for element in (SearchElement("object", "text", "Object", ["OBJECT"]),
                        *(SearchElement(mark.lower(), "text", f"Mark {mark}", [mark])
                          for mark in MARKS.values())):
            await archive.store.add_element(element)
        broken = folder / "olive-broken.fits"
        broken.write_text("olive's observing notes, not an image\n")
        site_broken = folder / "site-broken.fits"
        site_broken.write_text("the site's notes, not an image\n")
        jobs = await ingest(archive, *paths, broken, owner="olive")
        jobs += await ingest(archive, site_broken)
        by_name = {Path(job.path).name: job for job in jobs}
        images: dict[str, ImageRecord] = {}
        for visibility in VISIBILITIES:
            job = by_name[f"{visibility}-secret.fits"]
            assert job.state == "done", job.error
            await archive.store.set_visibility(job.image_ids, visibility)
            image = await archive.store.get_image(job.image_ids[0])
            assert image is not None and image.visibility == visibility
            images[visibility] = image
        world = World(archive, folder, clients, csrf, images, by_name)
        assert {name: job.state for name, job in world.jobs.items()} == {
            "private-secret.fits": "done", "registered-secret.fits": "done", "public-secret.fits": "done",
            "olive-broken.fits": "failed", "site-broken.fits": "failed"}
        yield world


def assert_nothing_of(text: str, images: list[ImageRecord], world: World, where: str) -> None:
    for image in images:
        for secret in world.secrets_of(image):
            assert secret not in text and secret not in unescape(text), (where, secret)


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
    assert payload["counts"] == {"queued": 0, "running": 0, "done": done, "failed": len(files) - done}
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


# one image -----------------------------------------------------------------------------------------
async def fresh_image(world: World, visibility: str) -> ImageRecord:
    """An image of olive's that a case may delete."""
    fresh_image.count += 1  # type: ignore[attr-defined]
    path = write_field(world.folder, f"doomed-{fresh_image.count}.fits",  # type: ignore[attr-defined]
                       f"Doomed field {fresh_image.count}")  # type: ignore[attr-defined]
    [job] = await ingest(world.archive, path, owner="olive", visibility=visibility)
    assert job.state == "done", job.error
    image = await world.archive.store.get_image(job.image_ids[0])
    assert image is not None
    return image


fresh_image.count = 0  # type: ignore[attr-defined]


def other_visibility(visibility: str) -> str:
    return VISIBILITIES[(VISIBILITIES.index(visibility) + 1) % len(VISIBILITIES)]


async def ask(world: World, route: str, actor: str, image_id: str, new: str) -> Any:
    client, token = world.clients[actor], world.csrf[actor]
    if route == "image page":
        return await client.get(f"/images/{image_id}")
    if route == "image json":
        return await client.get(f"/api/images/{image_id}")
    if route == "original":
        return await client.get(f"/images/{image_id}/original")
    if route == "visibility form":
        return await client.post(f"/images/{image_id}/visibility",
                                 form={"visibility": new, "csrf_token": token})
    if route == "visibility htmx":
        return await client.post(f"/images/{image_id}/visibility", form={"visibility": new},
                                 headers={"HX-Request": "true", "X-CSRF-Token": token})
    if route == "visibility json":
        return await client.post(f"/api/images/{image_id}/visibility", json={"visibility": new},
                                 headers={"X-CSRF-Token": token})
    if route == "delete form":
        return await client.post(f"/images/{image_id}/delete", form={"csrf_token": token})
    assert route == "delete json"
    return await client.delete(f"/api/images/{image_id}", headers={"X-CSRF-Token": token})


@pytest.mark.parametrize(("route", "actor", "visibility", "status"), IMAGE_CASES)
async def test_image_routes(world: World, route: str, actor: str, visibility: str, status: int) -> None:
    allowed = status in (200, 303)
    mutates = route.startswith(("visibility", "delete")) and allowed
    image = world.images[visibility]
    if mutates and route.startswith("delete"):
        image = await fresh_image(world, visibility)
    new = other_visibility(visibility)
    try:
        response = await ask(world, route, actor, image.id, new)
        body = await response.get_data()
        text = body.decode(errors="replace")
        assert response.status_code == status, text[:300]
        if status == 404:
            # the same answer as for an image that does not exist (save the id the asker sent)
            missing = "Z" * len(image.id)
            other = await ask(world, route, actor, missing, new)
            assert other.status_code == 404
            assert (await other.get_data()).decode().replace(missing, image.id) == text
            assert_nothing_of(text.replace(image.id, ""), [image], world, route)
            assert "/tiles/" not in text
        elif status in (401, 403):
            assert image.sha256.encode() not in body or route != "original"
            assert "/tiles/" not in text
            assert ("log in" if status == 401 else "may not") in text
        await check_outcome(world, route, actor, image, new, response, text)
    finally:
        if route.startswith("visibility"):
            await world.archive.store.set_visibility([image.id], visibility)
    stored = await world.archive.store.get_image(image.id)
    if mutates and route.startswith("delete"):
        assert stored is None
        assert not world.archive.tile_folder(image.id).exists()
        assert Path(image.path).is_file()  # a batch file stays where it is
        assert (await world.clients[actor].get(f"/images/{image.id}")).status_code == 404
    else:
        assert stored is not None and stored.visibility == visibility


async def check_outcome(world: World, route: str, actor: str, image: ImageRecord, new: str, response: Any,
                        text: str) -> None:
    """What a successful answer holds: working tile URLs, the controls only for those who may use them,
    the change made."""
    client = world.clients[actor]
    may_manage = actor in ("owner", "admin")
    if response.status_code not in (200, 303):
        return
    if route == "image page":
        assert f"<h1>{image.name}</h1>" in text
        assert (await client.get(attribute(text, "viewer", "data-dzi"))).status_code == 200
        assert (f'action="/images/{image.id}/visibility"' in text) is may_manage
        assert (f'action="/images/{image.id}/delete"' in text) is may_manage
        assert (f'href="/images/{image.id}/original"' in text) is (actor != "guest")
        assert f"<strong class=\"visibility\">{image.visibility}</strong>" in text
    elif route == "image json":
        payload = await response.get_json()
        assert payload["id"] == image.id and payload["header"]["OBJECT"] == image.name
        assert payload["permissions"] == {"view": True, "download": actor != "guest",
                                          "change": may_manage, "delete": may_manage}
        for key in ("thumbnail_url", "dzi_url"):
            assert (await client.get(payload[key])).status_code == 200
    elif route == "original":
        assert (await response.get_data()) == Path(image.path).read_bytes()
    elif route.startswith("visibility"):
        stored = await world.archive.store.get_image(image.id)
        assert stored is not None and stored.visibility == new
        if route == "visibility form":
            assert response.headers["Location"] == f"/images/{image.id}"
        elif route == "visibility htmx":
            assert text.lstrip().startswith('<section id="access"') and "<html" not in text
            assert f"now {new}" in text
        else:
            assert (await response.get_json())["visibility"] == new
    elif route == "delete form":
        assert response.headers["Location"] == "/"
    elif route == "delete json":
        assert await response.get_json() == {"deleted": image.id, "original_removed": False}


# the site's switches, through the same routes ------------------------------------------------------
@pytest_asyncio.fixture(loop_scope="module")
async def policy(world: World) -> AsyncIterator[Any]:
    """`await policy(guest_download=True)`: site settings for one test, put back afterwards."""
    before = await world.archive.store.site_settings()

    async def apply(**values: Any) -> None:
        await world.archive.store.save_site_settings(values)

    yield apply
    from app.site_policy import SITE_SETTINGS

    await world.archive.store.save_site_settings(
        {setting.name: before.get(setting.name, setting.default) for setting in SITE_SETTINGS})


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


# the same content uploaded by someone else ------------------------------------------------------------
@pytest.mark.parametrize("visibility", VISIBILITIES)
@pytest.mark.parametrize("actor", ["other", "admin"])
async def test_uploading_olives_content_reveals_nothing_of_hers(world: World, actor: str,
                                                               visibility: str) -> None:
    """Otto (or an administrator) uploads a file olive has catalogued: he gets an image of his own and
    nothing in any answer says olive's exists (her id, her file's name, her account)."""
    from app.ingest.jobs import JobRunner
    from app.ingest.removal import delete_image

    hers = world.images[visibility]
    client = world.clients[actor]
    response = await client.put(f"/api/uploads/copy-{visibility}.fits", data=Path(hers.path).read_bytes(),
                                headers={"X-CSRF-Token": world.csrf[actor]})
    assert response.status_code == 201, await body_of(response)
    answer = await response.get_json()
    runner = JobRunner(world.archive, concurrency=1, role="test")
    while await runner.run_one():
        pass
    [job] = await world.archive.store.get_jobs([answer["id"]])
    mine = [await world.archive.store.get_image(image_id) for image_id in job.image_ids]
    try:
        assert job.state == "done" and job.note == "" and len(mine) == 1 and mine[0] is not None
        assert mine[0].id != hers.id and mine[0].owner == LOGINS[actor] and mine[0].sha256 == hers.sha256
        paths = [answer["status_url"], f"/upload/jobs/{job.id}", f"/api/images/{mine[0].id}",
                 f"/images/{mine[0].id}"]
        if actor != "admin":  # who sees every job
            paths.append("/api/jobs")
        texts = [await body_of(await client.get(path)) for path in paths]
        for text in texts:
            for secret in (hers.id, Path(hers.path).name, "olive"):
                assert secret not in text, secret
    finally:
        for image in mine:
            if image is not None:
                await delete_image(world.archive, image)
    assert Path(hers.path).is_file() and world.archive.tile_folder(hers.id).is_dir()


# the whole matrix: every resource x actor x visibility x sharing policy --------------------------------
# The policies of app/site.py that decide who sees what: the sharing choice, and guests' downloads.
POLICIES: dict[str, dict[str, Any]] = {
    "choose": {"sharing": "choose", "guest_download": False},
    "choose+guest download": {"sharing": "choose", "guest_download": True},
    "none": {"sharing": "none", "guest_download": False},
    "all": {"sharing": "all", "guest_download": False},
}
MISSING = "Zq0Zq0Zq0Zq0"  # an id of the same shape that no image has


def oracle_sees(actor: str, visibility: str, policy: dict[str, Any]) -> bool:
    """Who may see olive's image, written from the README's rules (not from app/permissions.py)."""
    if actor in ("owner", "admin"):
        return True
    if policy["sharing"] == "none":
        return False
    if actor == "guest":
        return visibility == "public"
    return policy["sharing"] == "all" or visibility != "private"


def oracle_downloads(actor: str, visibility: str, policy: dict[str, Any]) -> bool:
    return oracle_sees(actor, visibility, policy) and (actor != "guest" or policy["guest_download"])


@dataclass
class Tally:
    cases: int = 0
    shown: int = 0
    hidden: int = 0
    leaks: list[str] = field(default_factory=list)
    wrong: list[str] = field(default_factory=list)


MATRIX: dict[str, Tally] = {}


def matrix_table() -> list[str]:
    """The table the matrix prints: per resource, the cases and what they found."""
    rows = [f"{'resource':<22} {'cases':>6} {'shown':>6} {'hidden':>6} {'leaks':>6} {'wrong':>6}"]
    for name, tally in MATRIX.items():
        rows.append(f"{name:<22} {tally.cases:>6} {tally.shown:>6} {tally.hidden:>6} {len(tally.leaks):>6} "
                    f"{len(tally.wrong):>6}")
    total = [sum(getattr(t, key) for t in MATRIX.values()) for key in ("cases", "shown", "hidden")]
    leaks, wrong = (sum(len(getattr(t, key)) for t in MATRIX.values()) for key in ("leaks", "wrong"))
    rows.append(f"{'total':<22} {total[0]:>6} {total[1]:>6} {total[2]:>6} {leaks:>6} {wrong:>6}")
    return rows


@dataclass
class Case:
    world: World
    actor: str
    image: ImageRecord
    visibility: str
    policy: dict[str, Any]

    @property
    def client(self) -> Any:
        return self.world.clients[self.actor]

    @property
    def sees(self) -> bool:
        return oracle_sees(self.actor, self.visibility, self.policy)

    @property
    def downloads(self) -> bool:
        return oracle_downloads(self.actor, self.visibility, self.policy)


async def body_of(response: Any) -> str:
    return (await response.get_data()).decode(errors="replace")


async def same_as_missing(case: Case, template: str) -> str:
    """Ask `template` about the image and about an id no image has: a hidden image must answer exactly
    like the missing one (status and bytes, save the id the asker sent). Returns the problem, or ''."""
    hidden = await case.client.get(template.format(id=case.image.id))
    missing = await case.client.get(template.format(id=MISSING))
    text, other = await body_of(hidden), await body_of(missing)
    if hidden.status_code != missing.status_code:
        return f"status {hidden.status_code}, a missing image gets {missing.status_code}"
    if text.replace(case.image.id, MISSING) != other:
        return "the answer differs from a missing image's"
    return ""


async def signed(case: Case) -> dict[str, Any]:
    """The image's JSON record as the asker gets it (with its signed tile URLs)."""
    response = await case.client.get(f"/api/images/{case.image.id}")
    assert response.status_code == 200
    return dict(await response.get_json())


# Each probe: ask the resource about the case's image. Returns (shown, problem): whether the image was
# shown (or downloaded), and what was wrong with a shown answer. A hidden answer is checked by the caller
# for the image's secrets, and by the probe itself against a missing image where the asker names the id.
async def probe_page(case: Case) -> tuple[bool, str, str]:
    response = await case.client.get(f"/images/{case.image.id}")
    if response.status_code == 200:
        text = await body_of(response)
        ok = f"<h1>{case.image.name}</h1>" in text
        return True, "" if ok else "the page lacks the image", text
    return False, await same_as_missing(case, "/images/{id}"), await body_of(response)


async def probe_json(case: Case) -> tuple[bool, str, str]:
    response = await case.client.get(f"/api/images/{case.image.id}")
    if response.status_code == 200:
        payload = await response.get_json()
        full = case.actor == "admin"
        path_ok = payload["path"] == (case.image.path if full else Path(case.image.path).name)
        return True, "" if path_ok else f"path {payload['path']!r}", ""
    return False, await same_as_missing(case, "/api/images/{id}"), await body_of(response)


async def probe_tiles(case: Case) -> tuple[bool, str, str]:
    if not case.sees:  # no page gives a tile URL: a forged one is refused like a missing image's
        return False, await same_as_missing(case, "/tiles/{id}/forged/image.dzi"), ""
    record = await signed(case)
    dzi = await case.client.get(record["dzi_url"])
    tile = await case.client.get(record["dzi_url"].replace("image.dzi", "image_files/0/0_0.jpeg"))
    ok = dzi.status_code == tile.status_code == 200
    return True, "" if ok else f"tiles answer {dzi.status_code}/{tile.status_code}", ""


async def probe_thumbnail(case: Case) -> tuple[bool, str, str]:
    listing = await (await case.client.get("/api/images")).get_json()
    found = [image for image in listing["images"] if image["id"] == case.image.id]
    if not found:
        return False, "", str(listing)
    thumb = await case.client.get(found[0]["thumbnail_url"])
    ok = thumb.status_code == 200 and thumb.content_type == "image/jpeg"
    return True, "" if ok else f"thumbnail answers {thumb.status_code}", ""


async def probe_pixel(case: Case) -> tuple[bool, str, str]:
    if not case.sees:
        return False, await same_as_missing(case, "/tiles/{id}/forged/pixel/1_1"), ""
    record = await signed(case)
    response = await case.client.get(record["dzi_url"].replace("image.dzi", "pixel/3_4"))
    ok = response.status_code == 200 and "value" in await response.get_json()
    return True, "" if ok else f"pixel answers {response.status_code}", ""


async def probe_readout(case: Case) -> tuple[bool, str, str]:
    response = await case.client.get(f"/api/images/{case.image.id}/readout")
    if response.status_code == 200:
        return True, "" if (await response.get_json())["celestial"] else "no sky grid", ""
    return False, await same_as_missing(case, "/api/images/{id}/readout"), await body_of(response)


async def probe_histogram(case: Case) -> tuple[bool, str, str]:
    template = "/api/images/{id}/histogram?display=minmax~linear~grey"
    response = await case.client.get(template.format(id=case.image.id))
    if response.status_code == 200:
        return True, "" if (await response.get_json())["counts"] else "no counts", ""
    return False, await same_as_missing(case, template), await body_of(response)


async def probe_locate(case: Case) -> tuple[bool, str, str]:
    template = f"/api/images/{{id}}/locate?ra={FIELD_RA}&dec={FIELD_DEC}"
    response = await case.client.get(template.format(id=case.image.id))
    if response.status_code == 200:
        return True, "", ""
    return False, await same_as_missing(case, template), await body_of(response)


async def probe_position(case: Case) -> tuple[bool, str, str]:
    template = "/api/images/{id}/position?x=3&y=4"
    response = await case.client.get(template.format(id=case.image.id))
    if response.status_code == 200:
        return True, "" if (await response.get_json())["sky"] else "no sky position", ""
    return False, await same_as_missing(case, template), await body_of(response)


async def probe_original(case: Case) -> tuple[bool, str, str]:
    response = await case.client.get(f"/images/{case.image.id}/original")
    if response.status_code == 200:
        same = await response.get_data() == Path(case.image.path).read_bytes()
        private = response.headers.get("Cache-Control") == "private, no-cache"
        return True, "" if same and private else "wrong bytes or cacheable", ""
    if case.sees:  # seen but not downloadable: refused, never hidden
        text = await body_of(response)
        ok = response.status_code == 401 and "log in to download" in text
        return False, "" if ok else f"refused with {response.status_code}", text
    return False, await same_as_missing(case, "/images/{id}/original"), await body_of(response)


async def probe_zip(case: Case) -> tuple[bool, str, str]:
    response = await case.client.get(f"/search/download?ids={case.image.id}")
    if response.status_code == 200:
        import io
        import zipfile

        with zipfile.ZipFile(io.BytesIO(await response.get_data())) as bundle:
            ok = [bundle.read(name) for name in bundle.namelist()] == [Path(case.image.path).read_bytes()]
        return True, "" if ok else "the zip lacks the original", ""
    if case.sees:
        return False, "" if response.status_code == 403 else f"refused with {response.status_code}", ""
    return False, await same_as_missing(case, "/search/download?ids={id}"), await body_of(response)


async def probe_mosaic(case: Case) -> tuple[bool, str, str]:
    payload = await (await case.client.get(f"/api/mosaic?ids={case.image.id}")).get_json()
    if payload["layers"]:
        return True, "" if payload["layers"][0]["id"] == case.image.id else "another layer", ""
    return False, await same_as_missing(case, "/api/mosaic?ids={id}"), str(payload)


async def probe_mosaic_page(case: Case) -> tuple[bool, str, str]:
    response = await case.client.get(f"/mosaic?ids={case.image.id}")
    text = await body_of(response)
    if f"/tiles/{case.image.id}/" in text:
        return True, "", ""
    return False, await same_as_missing(case, "/mosaic?ids={id}"), text


async def probe_embed(case: Case) -> tuple[bool, str, str]:
    response = await case.client.get(f"/embed/images/{case.image.id}")
    if response.status_code == 200:
        return True, "", ""
    return False, await same_as_missing(case, "/embed/images/{id}"), await body_of(response)


async def probe_embed_mosaic(case: Case) -> tuple[bool, str, str]:
    response = await case.client.get(f"/embed/mosaic?ids={case.image.id}")
    if response.status_code == 200:
        return True, "", ""
    return False, await same_as_missing(case, "/embed/mosaic?ids={id}"), await body_of(response)


async def probe_listing(case: Case) -> tuple[bool, str, str]:
    response = await case.client.get("/api/images")
    payload = await response.get_json()
    ids = [image["id"] for image in payload["images"]]
    expected = sum(oracle_sees(case.actor, visibility, case.policy) for visibility in VISIBILITIES)
    problem = "" if payload["total"] == expected else f"counts {payload['total']}, sees {expected}"
    return case.image.id in ids, problem, await body_of(response)


async def probe_portal(case: Case) -> tuple[bool, str, str]:
    text = await body_of(await case.client.get("/"))
    expected = sum(oracle_sees(case.actor, visibility, case.policy) for visibility in VISIBILITIES)
    counted = f"{expected} image{'' if expected == 1 else 's'} in the archive." in text
    return case.image.id in CARD_LINK.findall(text), "" if counted else "wrong count", text


async def probe_search(case: Case) -> tuple[bool, str, str]:
    response = await case.client.get("/api/search", query_string={"object": case.image.name})
    payload = await response.get_json()
    shown = [image["id"] for image in payload["images"]] == [case.image.id]
    return shown, "" if payload["total"] == int(shown) else "wrong total", await body_of(response)


async def probe_search_page(case: Case) -> tuple[bool, str, str]:
    text = await body_of(await case.client.get("/search", query_string={"object": case.image.name}))
    return f'href="/images/{case.image.id}"' in text, "", text


async def probe_suggestions(case: Case) -> tuple[bool, str, str]:
    response = await case.client.get("/api/search/suggest/object", query_string={"prefix": "Olive"})
    values = [entry["value"] for entry in (await response.get_json())["values"]]
    return case.image.name in values, "", await body_of(response)


async def probe_suggestion_page(case: Case) -> tuple[bool, str, str]:
    text = await body_of(await case.client.get("/search/suggest/object", query_string={"object": "Olive"}))
    return case.image.name in unescape(text), "", text


async def probe_notices(case: Case) -> tuple[bool, str, str]:
    """Searching by the keyword only this image carries: "no image has it" unless the asker sees it."""
    mark = MARKS[case.visibility]
    response = await case.client.get("/api/search", query_string={mark.lower(): "marked"})
    payload = await response.get_json()
    notice = f"Mark {mark}: no image has {mark}" in payload["notices"]
    shown = [image["id"] for image in payload["images"]] == [case.image.id]
    problem = "" if notice != shown else f"notice {notice}, results {shown}"
    return shown and not notice, problem, await body_of(response)


async def probe_job(case: Case) -> tuple[bool, str, str]:
    job = case.world.jobs[Path(case.image.path).name]
    response = await case.client.get(f"/api/jobs/{job.id}")
    if response.status_code == 200:
        return True, "", ""
    hidden, missing = await body_of(response), await body_of(await case.client.get(f"/api/jobs/{MISSING}"))
    return False, "" if hidden.replace(job.id, MISSING) == missing else "differs from a missing job", hidden


async def probe_jobs(case: Case) -> tuple[bool, str, str]:
    job = case.world.jobs[Path(case.image.path).name]
    response = await case.client.get("/api/jobs")
    if response.status_code != 200:
        problem = "" if case.actor == "guest" else f"status {response.status_code}"
        return False, problem, await body_of(response)
    entries = (await response.get_json())["jobs"]
    listed = {entry["id"] for entry in entries}
    text = await body_of(response)
    # the checksum of a file the asker uploaded themselves is theirs to know, whoever else holds the same
    # bytes (the duplicate-content test leaves such an upload in their list)
    for entry in entries:
        if entry["owner"] == LOGINS.get(case.actor) and entry["provenance"] == "upload":
            text = text.replace(entry["sha256"], "")
    return job.id in listed, "", text


# resource -> (probe, who should be shown it)
Expect = Callable[[Case], bool]
RESOURCES: dict[str, tuple[Callable[[Case], Awaitable[tuple[bool, str, str]]], Expect]] = {
    "image page": (probe_page, lambda case: case.sees),
    "metadata json": (probe_json, lambda case: case.sees),
    "tiles": (probe_tiles, lambda case: case.sees),
    "thumbnail": (probe_thumbnail, lambda case: case.sees),
    "pixel": (probe_pixel, lambda case: case.sees),
    "readout": (probe_readout, lambda case: case.sees),
    "histogram": (probe_histogram, lambda case: case.sees),
    "locate": (probe_locate, lambda case: case.sees),
    "position": (probe_position, lambda case: case.sees),
    "original": (probe_original, lambda case: case.downloads),
    "zip download": (probe_zip, lambda case: case.downloads),
    "mosaic json": (probe_mosaic, lambda case: case.sees),
    "mosaic page": (probe_mosaic_page, lambda case: case.sees),
    "embed": (probe_embed, lambda case: case.sees),
    "embed mosaic": (probe_embed_mosaic, lambda case: case.sees),
    "listing and counts": (probe_listing, lambda case: case.sees),
    "portal and counts": (probe_portal, lambda case: case.sees),
    "search json": (probe_search, lambda case: case.sees),
    "search page": (probe_search_page, lambda case: case.sees),
    "suggestions json": (probe_suggestions, lambda case: case.sees),
    "suggestions page": (probe_suggestion_page, lambda case: case.sees),
    "search notices": (probe_notices, lambda case: case.sees),
    "job": (probe_job, lambda case: case.actor in ("owner", "admin")),
    "job list": (probe_jobs, lambda case: case.actor in ("owner", "admin")),
}


def secrets_in(text: str, image: ImageRecord, world: World) -> list[str]:
    plain = unescape(text)
    return [secret for secret in (*world.secrets_of(image), MARKS[image.visibility])
            if secret in text or secret in plain]


@pytest.mark.parametrize("policy_name", POLICIES)
async def test_the_matrix_leaks_nothing(world: World, policy: Any, policy_name: str) -> None:
    """Every resource, asked by each actor about olive's private, registered and public image under one
    sharing policy: shown exactly to those the rules allow, and a hidden image leaves no trace (no id,
    name, file name, checksum or keyword; the same answer as a missing image where the id is named)."""
    settings = POLICIES[policy_name]
    await policy(**settings)
    for resource, (probe, expect) in RESOURCES.items():
        tally = MATRIX.setdefault(resource, Tally())
        for actor, visibility in itertools.product(ACTORS, VISIBILITIES):
            case = Case(world, actor, world.images[visibility], visibility, settings)
            where = f"{resource} / {policy_name} / {actor} / {visibility}"
            shown, problem, text = await probe(case)
            tally.cases += 1
            if shown:
                tally.shown += 1
            else:
                tally.hidden += 1
            if shown and not expect(case):
                tally.leaks.append(f"{where}: shown")
            elif not shown and expect(case):
                tally.wrong.append(f"{where}: not shown")
            if not shown and not case.sees:
                if problem == "" and resource in NAMED:
                    text = text.replace(case.image.id, "")
                for echo in ECHOES.get(resource, lambda _: [])(case):
                    text = text.replace(echo, "")
                found = secrets_in(text, case.image, world)
                if found:
                    tally.leaks.append(f"{where}: {found}")
            if problem:
                (tally.leaks if not case.sees else tally.wrong).append(f"{where}: {problem}")
    leaks = [leak for tally in MATRIX.values() for leak in tally.leaks]
    wrong = [entry for tally in MATRIX.values() for entry in tally.wrong]
    assert leaks == [] and wrong == [], (leaks, wrong)


# resources where the asker names the id: it may come back, as it does for a missing image
NAMED = {"image page", "metadata json", "readout", "histogram", "locate", "position", "original",
         "zip download", "mosaic json", "mosaic page", "embed", "embed mosaic", "tiles", "pixel"}


# what a search answer repeats of the asker's own question or of the site's search form (field labels and
# keywords): not a trace of the image
def _search_echoes(case: Case) -> list[str]:
    return [case.image.name, *(f"Mark {mark}" for mark in MARKS.values()), *MARKS.values()]


ECHOES: dict[str, Callable[[Case], list[str]]] = {
    "search page": _search_echoes,
    "search json": _search_echoes,
    "search notices": lambda case: [f"Mark {MARKS[case.visibility]}: no image has {MARKS[case.visibility]}",
                                    f"{MARKS[case.visibility].lower()}", *MARKS.values()],
}


async def test_the_matrix_table(world: World) -> None:
    """Printed at the end of the run (see conftest.py's terminal summary) and with `pytest -s`."""
    if len(MATRIX) < len(RESOURCES):
        pytest.skip("the matrix did not run")
    print("\n" + "\n".join(matrix_table()))
    assert all(tally.cases == len(ACTORS) * len(VISIBILITIES) * len(POLICIES) for tally in MATRIX.values())
    assert sum(len(tally.leaks) for tally in MATRIX.values()) == 0
