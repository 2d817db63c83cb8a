"""The owner's actions on an image: change who may see it (`POST /images/<id>/visibility`, htmx and
JSON twins) and delete it (`POST /images/<id>/delete`, `DELETE /api/images/<id>`): the site's policies,
CSRF, and what a deletion removes (record, tiles, an uploaded original nobody else uses) and keeps (a
batch file, which is not ingested again unless it changes)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

from app.archive import Archive
from app.identity import digest
from app.ingest.jobs import JobRunner
from app.ingest.scan import job_for
from app.samples import FIELD_DEC, FIELD_RA, celestial_wcs, star_field
from app.store.records import ApiToken, ImageRecord, new_id
from tests.helpers import ingest
from tests.routes.actor_helpers import Actor
from tests.routes.pages import text_of


async def visible_ids(actor: Actor) -> set[str]:
    payload = await (await actor.client.get("/api/images")).get_json()
    return {image["id"] for image in payload["images"]}


async def stored_visibility(archive: Archive, image: ImageRecord) -> str:
    stored = await archive.store.get_image(image.id)
    assert stored is not None
    return stored.visibility


# visibility --------------------------------------------------------------------------------------
async def test_owner_shares_and_unshares_with_the_page_form(archive, actors, mine):
    olive, otto, guest = await actors("olive"), await actors("otto"), await actors("guest")
    page = await text_of(await olive.client.get(f"/images/{mine.id}"))
    assert '<option value="private" selected>' in page and 'name="visibility"' in page
    assert f'hx-post="/images/{mine.id}/visibility"' in page and 'hx-target="#access"' in page
    assert mine.id not in await visible_ids(otto)

    response = await olive.set_visibility(mine.id, "registered", htmx=True)
    assert response.status_code == 200
    fragment = await text_of(response)
    assert fragment.lstrip().startswith('<section id="access"') and fragment.rstrip().endswith("</section>")
    assert "Saved: this image is now registered." in fragment
    assert '<option value="registered" selected>' in fragment
    assert await stored_visibility(archive, mine) == "registered"
    assert mine.id in await visible_ids(otto) and mine.id not in await visible_ids(guest)

    response = await olive.set_visibility(mine.id, "public")  # the same form without JavaScript
    assert response.status_code == 303 and response.headers["Location"] == f"/images/{mine.id}"
    assert mine.id in await visible_ids(guest)

    response = await olive.set_visibility_json(mine.id, {"visibility": "private"})
    assert response.status_code == 200
    payload = await response.get_json()
    assert payload["visibility"] == payload["effective_visibility"] == "private"
    assert mine.id not in await visible_ids(otto) and mine.id not in await visible_ids(guest)


async def test_visibility_applies_to_one_image_record_only(archive, actors, tmp_path):
    wcs = celestial_wcs(FIELD_RA, FIELD_DEC, 32, 32)
    path = tmp_path / "two.fits"
    fits.HDUList([fits.PrimaryHDU(star_field(wcs, 32, 32), wcs.to_header()),
                  fits.ImageHDU(star_field(wcs, 32, 32) * 2, wcs.to_header())]).writeto(path)
    [job] = await ingest(archive, path, owner="olive")
    assert job.state == "done" and len(job.image_ids) == 2
    first, second = job.image_ids
    olive, guest = await actors("olive"), await actors("guest")
    assert (await olive.set_visibility(first, "public")).status_code == 303
    assert await visible_ids(guest) == {first}
    assert (await archive.store.get_image(second)).visibility == "private"


# JSON bodies that do not name a visibility, or name an unknown one
BAD_BODIES = [{"visibility": value} for value in ("secret", "", "PUBLIC", None, 3, ["public"])] + [
    {}, [], "public", None]


async def test_an_unknown_visibility_is_refused(archive, actors, mine):
    olive = await actors("olive")
    for body in BAD_BODIES:
        response = await olive.set_visibility_json(mine.id, body)
        assert response.status_code == 400, body
        assert "visibility must be one of private, registered, public" in (await response.get_json())["error"]
    for value in ("secret", "", "PUBLIC"):
        form = await olive.set_visibility(mine.id, value)
        assert form.status_code == 400 and "visibility must be one of" in await text_of(form)
    missing = await olive.client.post(f"/images/{mine.id}/visibility", form={"csrf_token": olive.token})
    assert missing.status_code == 400
    assert await stored_visibility(archive, mine) == "private"


@pytest.mark.parametrize(("policy", "actor", "status", "message"), [
    ({"sharing": "none"}, "olive", 403, "sharing policy (none) does not let owners choose"),
    ({"sharing": "all"}, "olive", 403, "sharing policy (all) does not let owners choose"),
    ({"demo_mode": True}, "olive", 403, "demo mode"),
    ({"sharing": "none", "demo_mode": True}, "ada", 200, ""),
    ({}, "otto", 404, "there is no image"),
    ({"sharing": "all"}, "otto", 403, "only its owner or an administrator"),
])
async def test_visibility_changes_follow_the_sharing_policy(archive, actors, mine, policy, actor, status,
                                                           message):
    await archive.store.save_site_settings(policy)
    asker = await actors(actor)
    response = await asker.set_visibility_json(mine.id, {"visibility": "public"})
    assert response.status_code == status
    payload = await response.get_json()
    if message:
        assert message in payload["error"]
        assert await stored_visibility(archive, mine) == "private"
    else:
        assert await stored_visibility(archive, mine) == "public"


# site settings -> the controls each asker's page shows (None: the asker may not even see the image)
CONTROLS = [
    ({}, {"olive": ("visibility", "delete"), "otto": (), "ada": ("visibility", "delete")}),
    ({"sharing": "none"}, {"olive": ("delete",), "otto": None, "ada": ("visibility", "delete")}),
    ({"users_may_delete": False}, {"olive": ("visibility",), "otto": (), "ada": ("visibility", "delete")}),
    ({"demo_mode": True}, {"olive": (), "otto": (), "ada": ("visibility", "delete")}),
    ({"sharing": "all", "users_may_delete": False}, {"olive": (), "otto": (),
                                                    "ada": ("visibility", "delete")}),
]


async def test_the_page_shows_controls_only_to_those_who_may_use_them(archive, actors, mine):
    await archive.store.set_visibility([mine.id], "registered")  # so that otto sees the page too
    defaults = {"sharing": "choose", "users_may_delete": True, "demo_mode": False}
    for policy, controls in CONTROLS:
        await archive.store.save_site_settings({**defaults, **policy})
        for name, shown in controls.items():
            asker = await actors(name)
            response = await asker.client.get(f"/images/{mine.id}")
            if shown is None:
                assert response.status_code == 404
                continue
            page = await text_of(response)
            assert "Owner: <strong>olive</strong>" in page, name
            for control in ("visibility", "delete"):
                shows = f'action="/images/{mine.id}/{control}"' in page
                assert shows is (control in shown), (policy, name, control)


# CSRF ------------------------------------------------------------------------------------------
async def test_actions_without_the_csrf_token_are_refused(archive, actors, mine):
    otto = await actors("otto")
    olive = (await actors("olive")).client
    refused = [
        await olive.post(f"/images/{mine.id}/visibility", form={"visibility": "public"}),
        await olive.post(f"/images/{mine.id}/visibility",
                         form={"visibility": "public", "csrf_token": "x" * 40}),
        await olive.post(f"/images/{mine.id}/visibility", form={"visibility": "public"},
                         headers={"HX-Request": "true"}),
        await olive.post(f"/api/images/{mine.id}/visibility", json={"visibility": "public"}),
        await olive.post(f"/api/images/{mine.id}/visibility", json={"visibility": "public"},
                         headers={"X-CSRF-Token": otto.token}),  # another session's token
        await olive.post(f"/images/{mine.id}/delete"),
        await olive.post(f"/images/{mine.id}/delete", form={"csrf_token": ""}),
        await olive.delete(f"/api/images/{mine.id}"),
    ]
    for response in refused:
        assert response.status_code == 403
        assert "security token is missing or out of date" in await text_of(response)
    stored = await archive.store.get_image(mine.id)
    assert stored is not None and stored.visibility == "private"
    assert archive.tile_folder(mine.id).is_dir()


# deletion --------------------------------------------------------------------------------------
async def test_deleting_a_batch_image_keeps_its_file_and_it_is_not_ingested_again(archive, actors, mine):
    olive, path = await actors("olive"), Path(mine.path)
    folder = archive.tile_folder(mine.id)
    assert (folder / "thumb.jpeg").is_file() and (folder / "image.dzi").is_file()
    page = await text_of(await olive.client.get(f"/images/{mine.id}"))
    thumb_url = f"/tiles/{mine.id}/{archive.tile_token(mine.id)}/thumb.jpeg"
    assert (await olive.client.get(thumb_url)).status_code == 200
    assert f'hx-post="/images/{mine.id}/delete"' in page and "hx-confirm=" in page

    response = await olive.delete(mine.id)
    assert response.status_code == 303 and response.headers["Location"] == "/"
    assert await archive.store.get_image(mine.id) is None
    assert not folder.exists()
    assert (await olive.client.get(thumb_url)).status_code == 403  # its link died with it, at once
    assert (await olive.client.get(f"/images/{mine.id}")).status_code == 404
    assert (await olive.delete(mine.id)).status_code == 404
    assert path.is_file()  # the batch folder is not ours to clean

    # the same file, unchanged, is remembered: its job stays done under the same key
    [again] = await ingest(archive, path.parent)
    assert again.id == mine.job_id and again.state == "done"
    assert await archive.store.count_images() == 0

    # once the file changes (here only its modification time), it is a new version and comes back
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    [changed] = await ingest(archive, path, owner="olive")
    assert changed.id != mine.job_id and changed.state == "done"
    [back] = await archive.store.find_images()
    assert back.id != mine.id and back.sha256 == mine.sha256 and back.path == mine.path
    assert archive.tile_folder(back.id).is_dir()


async def test_a_changed_file_comes_back_after_deletion(archive, actors, add_image, write_fits):
    image = await add_image("changing.fits", owner="olive", OBJECT="Before")
    olive = await actors("olive")
    assert (await olive.delete_json(image.id)).status_code == 200
    path = write_fits("changing.fits", OBJECT="After")  # new content at the same path
    [job] = await ingest(archive, path)
    assert job.state == "done"
    [back] = await archive.store.find_images()
    assert back.name == "After" and back.sha256 != image.sha256


async def test_delete_twins_answer_htmx_and_json(archive, actors, add_image):
    first = await add_image("first.fits", owner="olive", OBJECT="First")
    second = await add_image("second.fits", owner="olive", OBJECT="Second")
    olive, ada = await actors("olive"), await actors("ada")
    response = await olive.delete(first.id, htmx=True)
    assert response.status_code == 204 and response.headers["HX-Redirect"] == "/"
    response = await ada.delete_json(second.id)
    assert response.status_code == 200
    assert await response.get_json() == {"deleted": second.id, "original_removed": False}
    assert await archive.store.count_images() == 0
    assert (await ada.delete_json(second.id)).status_code == 404


@pytest.mark.parametrize(("policy", "actor", "status", "message"), [
    ({"users_may_delete": False}, "olive", 403, "users may not delete their images on this site"),
    ({"demo_mode": True}, "olive", 403, "demo mode"),
    ({"users_may_delete": False, "demo_mode": True}, "ada", 200, ""),
    ({}, "otto", 403, "only its owner or an administrator"),
    ({}, "guest", 401, "log in to delete this image"),
    ({"sharing": "none"}, "otto", 404, "there is no image"),
])
async def test_deletion_follows_the_policy(archive, actors, add_image, policy, actor, status, message):
    image = await add_image("public.fits", owner="olive", visibility="public")
    await archive.store.save_site_settings(policy)
    asker = await actors(actor)
    response = await asker.delete_json(image.id)
    assert response.status_code == status
    if message:
        assert message in (await response.get_json())["error"]
        assert await archive.store.get_image(image.id) is not None
        assert archive.tile_folder(image.id).is_dir()
    else:
        assert await archive.store.get_image(image.id) is None


async def ingest_upload(archive: Archive, path: Path, owner: str) -> list[ImageRecord]:
    """Run a job as the upload spool queues it (provenance "upload")."""
    job = job_for(path, owner=owner, provenance="upload")
    [queued] = await archive.store.enqueue([job])
    runner = JobRunner(archive, concurrency=1, role="test")
    while await runner.run_one():
        pass
    [done] = await archive.store.get_jobs([queued.id])
    assert done.state == "done", done.error
    images = [await archive.store.get_image(image_id) for image_id in done.image_ids]
    assert all(image is not None for image in images)
    return [image for image in images if image is not None]


def two_plane_fits(path: Path) -> Path:
    wcs = celestial_wcs(FIELD_RA, FIELD_DEC, 32, 32)
    sky = star_field(wcs, 32, 32).astype(np.float32)
    path.parent.mkdir(parents=True, exist_ok=True)
    planes = [fits.PrimaryHDU(sky, wcs.to_header()), fits.ImageHDU(sky * 3, wcs.to_header())]
    fits.HDUList(planes).writeto(path)
    return path


async def test_an_uploaded_original_goes_with_its_last_image(archive, actors, settings):
    path = two_plane_fits(settings.data / "uploads" / "olive" / "upload-1.fits")
    first, second = await ingest_upload(archive, path, "olive")
    assert first.provenance == second.provenance == "upload"

    olive = await actors("olive")
    response = await olive.delete_json(first.id)
    assert await response.get_json() == {"deleted": first.id, "original_removed": False}
    assert path.is_file()  # the other HDU still uses the file
    assert (await olive.client.get(f"/images/{second.id}/original")).status_code == 200

    response = await olive.delete_json(second.id)
    assert await response.get_json() == {"deleted": second.id, "original_removed": True}
    assert not path.exists()
    assert not archive.tile_folder(first.id).exists() and not archive.tile_folder(second.id).exists()


async def test_an_upload_outside_the_uploads_folder_is_left_alone(archive, actors, tmp_path, settings):
    outside = two_plane_fits(tmp_path / "elsewhere" / "upload-2.fits")
    inside_link = settings.data / "uploads" / "link.fits"
    inside_link.parent.mkdir(parents=True, exist_ok=True)
    inside_link.symlink_to(outside)  # resolves outside the uploads folder
    olive = await actors("olive")
    for path in (outside, inside_link):
        images = await ingest_upload(archive, path, "olive")
        for image in images:
            response = await olive.delete_json(image.id)
            assert (await response.get_json())["original_removed"] is False
    assert outside.is_file() and inside_link.is_symlink()


async def test_an_api_token_acts_as_its_user_without_csrf(archive, client, make_user, add_image):
    olive, otto = await make_user("olive"), await make_user("otto")
    bearer = {}
    for user in (olive, otto):
        secret = f"ix_{new_id()}{new_id()}"
        await archive.store.add_token(ApiToken(id=new_id(), user_id=user.id, name="script",
                                               token_hash=digest(secret)))
        bearer[user.username] = {"Authorization": f"Bearer {secret}"}
    private = await add_image("private.fits", owner="olive", visibility="private", OBJECT="Private")
    shared = await add_image("shared.fits", owner="olive", visibility="registered", OBJECT="Shared")

    listed = await (await client.get("/api/images", headers=bearer["otto"])).get_json()
    assert [image["id"] for image in listed["images"]] == [shared.id]
    assert (await client.delete(f"/api/images/{private.id}", headers=bearer["otto"])).status_code == 404
    assert (await client.delete(f"/api/images/{shared.id}", headers=bearer["otto"])).status_code == 403
    response = await client.post(f"/api/images/{private.id}/visibility", json={"visibility": "public"},
                                 headers=bearer["olive"])
    assert response.status_code == 200 and (await response.get_json())["visibility"] == "public"
    response = await client.delete(f"/api/images/{shared.id}", headers=bearer["olive"])
    assert response.status_code == 200 and await archive.store.get_image(shared.id) is None
    jobs = await (await client.get("/api/jobs", headers=bearer["olive"])).get_json()
    assert {job["name"] for job in jobs["jobs"]} == {"private.fits", "shared.fits"}
    assert (await (await client.get("/api/jobs", headers=bearer["otto"])).get_json())["jobs"] == []
