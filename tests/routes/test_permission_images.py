"""The permission matrix on one image's routes: its page, JSON record and original, and changing its
visibility or deleting it (by form, htmx and JSON), asked by olive (the owner), another user, a guest
and an administrator about her private, registered-users and public image under the site's default
policy (users choose, guests browse but do not download): the status each gets, a hidden image
answering exactly like a missing one, and the change made only when allowed. Uploading a file olive
has catalogued reveals nothing of hers (the world: permission_cases.py)."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from app.store.records import ImageRecord
from tests.helpers import ingest
from tests.routes.pages import attribute
from tests.routes.permission_cases import (
    ACTORS,
    LOGINS,
    VISIBILITIES,
    World,
    assert_nothing_of,
    body_of,
    open_world,
    write_field,
)

pytestmark = pytest.mark.asyncio(loop_scope="module")

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

# one world for the whole module (see permission_cases.py)
world = pytest_asyncio.fixture(open_world, scope="module", loop_scope="module", name="world")


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
