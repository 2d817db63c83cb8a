"""Uploads through `PUT /api/uploads/<name>`: a job followed to the viewer, the same content twice,
visibility, bad names and bad content, dropped connections."""

from __future__ import annotations

import asyncio

import pytest

from app.formatting import human_bytes
from app.settings import Settings
from tests.helpers import QUICK_PASSWORDS
from tests.routes.pages import text_of
from tests.routes.upload_helpers import (
    HTML_NAME,
    error_of,
    files_under,
    fits_bytes,
    put,
    run_jobs,
    spooled,
    stored_path,
    stream,
    token_for,
    until,
    uploaded,
)


# the happy path ------------------------------------------------------------------------------------------
async def test_a_token_upload_is_followed_to_the_viewer(client, archive, alice_token):
    body = fits_bytes(48)
    response = await put(client, HTML_NAME, body, alice_token)
    assert response.status_code == 201, await text_of(response)
    answer = await response.get_json()
    assert response.headers["Location"] == answer["status_url"] == f"/api/jobs/{answer['id']}"
    assert answer["state"] == "queued" and answer["provenance"] == "upload" and answer["owner"] == "alice"
    assert answer["client_name"] == answer["name"] == HTML_NAME and answer["size"] == len(body)
    stored = await stored_path(archive, answer)
    assert answer["path"] == stored.name  # the stored file's name, not the server's folders
    assert stored.parent == archive.settings.data / "uploads" / "alice" and stored.suffix == ".fits"
    assert stored.read_bytes() == body

    polling_response = await client.get(f"/upload/jobs/{answer['id']}", headers=alice_token)
    polling = await text_of(polling_response)
    assert 'hx-trigger="every 1s"' in polling and "waiting to be ingested" in polling
    assert "HX-Trigger" not in polling_response.headers
    storage = await text_of(await client.get("/upload/storage", headers=alice_token))
    assert 'id="storage-used"' in storage and "You use 0 B of your" in storage

    await run_jobs(archive)
    job = await (await client.get(answer["status_url"], headers=alice_token)).get_json()
    assert job["state"] == "done" and job["finished"]
    [image] = job["images"]
    assert image["name"] == HTML_NAME and image["provenance"] == "upload"  # the header names no object
    assert image["visibility"] == "private"

    done_response = await client.get(f"/upload/jobs/{answer['id']}", headers=alice_token)
    done = await text_of(done_response)
    assert "hx-trigger" not in done
    # the page's storage line is told to refresh itself, and then counts the new file
    assert done_response.headers["HX-Trigger"] == "imagex-stored"
    storage = await text_of(await client.get("/upload/storage", headers=alice_token))
    assert f"You use {human_bytes(len(body))} of your" in storage
    assert f'href="/images/{image["id"]}"' in done
    assert "&lt;img src=x onerror=alert(1)&gt; deep.fits" in done and "<img src=x" not in done
    page = await text_of(await client.get(image["url"], headers=alice_token))
    assert "&lt;img src=x onerror=alert(1)&gt; deep.fits" in page and "<img src=x" not in page


async def test_the_header_object_names_the_image_and_the_client_name_stays_metadata(
        client, archive, alice_token):
    answer = await (await put(client, "raw_0001.fits", fits_bytes(32, OBJECT="M 31"), alice_token)).get_json()
    await run_jobs(archive)
    job = await (await client.get(answer["status_url"], headers=alice_token)).get_json()
    assert [image["name"] for image in job["images"]] == ["M 31"]
    assert job["client_name"] == "raw_0001.fits"


async def test_the_same_content_twice_keeps_one_copy(client, archive, alice_token):
    body = fits_bytes(32, OBJECT="twice")
    first = await (await put(client, "one.fits", body, alice_token)).get_json()
    await run_jobs(archive)
    second = await (await put(client, "two.fits", body, alice_token)).get_json()
    await run_jobs(archive)
    job = await (await client.get(second["status_url"], headers=alice_token)).get_json()
    assert job["state"] == "done"
    assert job["note"] == "two.fits: already in your archive (same SHA-256); this upload was not kept"
    assert [image["name"] for image in job["images"]] == ["twice"]  # the one copy, hers
    assert uploaded(archive) == [await stored_path(archive, first)]


async def test_content_someone_else_uploaded_becomes_the_uploaders_own_image(client, archive, alice,
                                                                            alice_token, make_user):
    """Nothing tells bob that alice has the same file privately: he gets an image of his own, charged to
    him, sharing her original on disk; either can delete theirs without touching the other's."""
    from app.ingest.removal import delete_image

    body = fits_bytes(32)  # no OBJECT: the image is named after the client's file name
    hers = await (await put(client, "alice-private-run.fits", body, alice_token)).get_json()
    await run_jobs(archive)
    [alices_id] = (await archive.store.get_jobs([hers["id"]]))[0].image_ids
    bob = await make_user("bob")
    bob_token = await token_for(archive, bob)
    his = await (await put(client, "bobs.fits", body, bob_token)).get_json()
    await run_jobs(archive)
    response = await client.get(his["status_url"], headers=bob_token)
    job = await response.get_json()
    assert job["state"] == "done" and job["note"] == "" and job["error"] == ""
    [image] = job["images"]
    assert image["name"] == "bobs.fits" and image["owner"] == "bob" and job["image_ids"] == [image["id"]]
    text = await text_of(response)
    for secret in (alices_id, "alice", hers["path"]):
        assert secret not in text
    # his quota holds it; the two originals are one file on disk under two names
    usage = await archive.store.usage()
    assert usage["bob"].bytes == usage["alice"].bytes == len(body)
    his_path, her_path = await stored_path(archive, his), await stored_path(archive, hers)
    assert his_path.read_bytes() == body and his_path.stat().st_ino == her_path.stat().st_ino
    alices = await archive.store.get_image(alices_id)
    assert alices is not None
    assert (await delete_image(archive, alices)).original_removed
    assert not her_path.exists() and his_path.read_bytes() == body
    original = await client.get(f"/images/{image['id']}/original", headers=bob_token)
    assert original.status_code == 200 and await original.get_data() == body


async def test_a_chosen_visibility_is_applied(client, archive, alice_token):
    answer = await (await put(client, "shared.fits", fits_bytes(32), alice_token,
                              "?visibility=public")).get_json()
    assert answer["visibility"] == "public"
    await run_jobs(archive)
    job = await (await client.get(answer["status_url"], headers=alice_token)).get_json()
    assert job["images"][0]["visibility"] == "public"
    listed = await (await client.get("/api/images")).get_json()  # a guest sees it
    assert [image["name"] for image in listed["images"]] == ["shared.fits"]


async def test_a_visibility_is_checked(client, archive, alice_token):
    message = await error_of(await put(client, "a.fits", fits_bytes(), alice_token, "?visibility=all"), 400)
    assert "visibility must be one of private, registered, public" in message
    await archive.store.save_site_settings({"sharing": "none"})
    response = await put(client, "a.fits", fits_bytes(), alice_token, "?visibility=public")
    message = await error_of(response, 403)
    assert "sharing policy (none)" in message
    assert uploaded(archive) == [] and spooled(archive) == []


# bad names -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("name", "client_name"), [
    ("../x.fits", "x.fits"),
    ("../../../../etc/cron.d/evil.fits", "evil.fits"),
    ("/etc/passwd", "passwd"),
    ("a/../../b", "b"),
    ("nul\x00byte.fits", "nulbyte.fits"),
    ("x" * 3000 + ".fits", "x" * 194 + "\u2026.fits"),
    ("<script>alert(1)<\\script>.fits", "script>.fits"),
    (HTML_NAME, HTML_NAME),
])
async def test_path_tricks_in_names_are_stored_under_a_generated_name(client, archive, alice_token, name,
                                                                      client_name):
    body = fits_bytes(16)
    response = await put(client, name, body, alice_token)
    assert response.status_code == 201, await text_of(response)
    answer = await response.get_json()
    assert answer["client_name"] == client_name
    [stored] = uploaded(archive)
    assert stored == await stored_path(archive, answer)
    assert stored.parent == archive.settings.data / "uploads" / "alice"
    assert stored.suffix == ".fits" and len(stored.stem) == 12 and stored.stem.isalnum()
    data_files = {path.name for path in files_under(archive.settings.data)}
    assert not data_files & {"passwd", "x.fits", "b", "evil.fits"}
    assert spooled(archive) == []


# bad content ---------------------------------------------------------------------------------------------
async def test_an_html_page_named_fits_is_refused_and_nothing_kept(client, archive, alice_token):
    page = b"<!DOCTYPE html>\n<html><head><title>Login</title></head><body>" + b"x" * 5000 + b"</body></html>"
    message = await error_of(await put(client, "m31.fits", page, alice_token), 422)
    assert message == ("m31.fits: this is an HTML page, not an image; ImageX reads FITS (also "
                       "tile-compressed and gzipped), DICOM, Gatan DM3/DM4, TIFF (also GeoTIFF, OME-TIFF and "
                       "ImageJ), PNG and JPEG. Nothing was kept.")
    assert spooled(archive) == [] and uploaded(archive) == []
    assert await archive.store.list_jobs() == []


async def test_a_short_html_page_is_refused_too(client, archive, alice_token):
    message = await error_of(await put(client, "tiny.fits", b"<html>hi</html>", alice_token), 422)
    assert "this is an HTML page" in message
    assert spooled(archive) == [] and uploaded(archive) == []


async def test_a_zero_byte_file_is_refused(client, archive, alice_token):
    message = await error_of(await put(client, "empty.fits", b"", alice_token), 422)
    assert message == "empty.fits: empty file (0 bytes): there is nothing to catalogue"
    assert spooled(archive) == [] and uploaded(archive) == [] and await archive.store.list_jobs() == []


async def test_a_truncated_fits_file_is_refused_with_its_reason(client, archive, alice_token):
    body = fits_bytes(64)[:2880 + 5000]  # the header says 64x64 float32, the data stops early
    message = await error_of(await put(client, "cut.fits", body, alice_token), 422)
    assert message.startswith("cut.fits: ") and "truncated" in message
    assert message.endswith("Nothing was kept.")
    assert spooled(archive) == [] and uploaded(archive) == []


async def test_a_body_larger_than_declared_is_cut_off(client, archive, alice_token):
    body = fits_bytes(32)
    headers = {**alice_token, "Content-Length": str(len(body) - 100)}
    response = await stream(client, "long.fits", [body[:3000], body[3000:]], headers)
    message = await error_of(response, 413)
    assert message == ("long.fits: the body is longer than its declared Content-Length of "
                       f"{len(body) - 100:,} bytes")
    assert spooled(archive) == [] and uploaded(archive) == []


async def test_a_body_smaller_than_declared_is_refused(client, archive, alice_token):
    body = fits_bytes(32)
    headers = {**alice_token, "Content-Length": str(len(body) + 10)}
    message = await error_of(await stream(client, "short.fits", [body], headers), 400)
    assert message == (f"short.fits: the body ended after {len(body):,} bytes of the declared "
                       f"{len(body) + 10:,} bytes; nothing was kept")
    assert spooled(archive) == [] and uploaded(archive) == []


async def test_a_dropped_connection_leaves_nothing_behind(client, archive, alice, alice_token):
    body = fits_bytes(256)
    await archive.store.update_user(alice.id, quota=len(body))
    headers = {**alice_token, "Content-Length": str(len(body))}

    async def spooling() -> None:
        await until(lambda: len(spooled(archive)) == 1)

    assert await stream(client, "half.fits", [body[:len(body) // 2]], headers, end="disconnect",
                        before_end=spooling) is None
    assert spooled(archive) == [] and uploaded(archive) == [] and await archive.store.list_jobs() == []
    # its quota reservation went with it: the whole quota is free for the next try
    assert (await put(client, "whole.fits", body, alice_token)).status_code == 201


async def test_a_silent_client_is_cut_off(tmp_path, pool, make_user, archive, alice_token):
    from app import create_app

    settings = Settings.load(environ={}, hips=False,
                             data=str(archive.settings.data), workers=2, upload_timeout=0.3)
    app = create_app(settings, run_jobs=False, pool=pool, passwords=QUICK_PASSWORDS)
    async with app.test_app() as test_app:
        response = await stream(test_app.test_client(), "slow.fits", [fits_bytes(32)[:4000]],
                                {**alice_token, "Content-Length": "100000"},
                                before_end=lambda: asyncio.sleep(0.6))
    message = await error_of(response, 408)
    assert message == ("slow.fits: nothing arrived for 0.3 s after 4,000 bytes; the upload was abandoned and "
                       "nothing was kept")
    assert spooled(archive) == []
