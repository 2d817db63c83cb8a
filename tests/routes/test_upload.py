"""Uploads through `PUT /api/uploads/<name>` and the upload page: who may upload, quota and size limits
before and while a body streams, bad names and bad content, dropped connections, and a job followed to the
viewer. The last tests talk to a real `imagex serve` over a socket."""

from __future__ import annotations

import asyncio
import io
import json
import os
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from astropy.io import fits

from app.archive import Archive
from app.formatting import human_bytes
from app.ingest.jobs import JobRunner
from app.routes.accounts import create_token
from app.settings import Settings
from tests.browser.conftest import BIN, answers, free_port
from tests.helpers import csrf_of, ingest, log_in
from tests.processes import stop
from tests.routes.conftest import text_of

HTML_NAME = "<img src=x onerror=alert(1)> deep.fits"


def fits_bytes(size: int = 32, **cards: Any) -> bytes:
    """A small FITS image (no OBJECT unless given), different for every seed card."""
    header = fits.Header()
    for keyword, value in cards.items():
        header[keyword] = value
    buffer = io.BytesIO()
    pixels = np.random.default_rng(len(str(cards))).normal(100, 10, (size, size)).astype("float32")
    fits.PrimaryHDU(pixels, header).writeto(buffer)
    return buffer.getvalue()


async def token_for(archive: Archive, user: Any) -> dict[str, str]:
    created = await create_token(archive, user, "uploads")
    return {"Authorization": f"Bearer {created['token']}"}


async def run_jobs(archive: Archive) -> None:
    runner = JobRunner(archive, concurrency=1, role="test")
    while await asyncio.wait_for(runner.run_one(), 120):
        pass


async def stored_path(archive: Archive, answer: dict[str, Any]) -> Path:
    """Where an upload's file lies (the job's path; the answer names the file only)."""
    [job] = await archive.store.get_jobs([answer["id"]])
    return Path(job.path)


def files_under(folder: Path) -> list[Path]:
    return sorted(path for path in folder.rglob("*") if path.is_file()) if folder.exists() else []


def spooled(archive: Archive) -> list[Path]:
    return files_under(archive.settings.data / "spool")


def uploaded(archive: Archive) -> list[Path]:
    return files_under(archive.settings.data / "uploads")


async def put(client: Any, name: str, body: bytes, headers: dict[str, str], query: str = "") -> Any:
    """As a script would: the body with its Content-Length."""
    return await client.put(f"/api/uploads/{name}{query}", data=body,
                            headers={"Content-Type": "application/octet-stream",
                                     "Content-Length": str(len(body)), **headers})


async def error_of(response: Any, status: int) -> str:
    assert response.status_code == status, await text_of(response)
    payload = await response.get_json()
    assert payload["status"] == status
    return str(payload["error"])


@pytest.fixture
async def alice(archive, make_user):
    return await make_user("alice")


@pytest.fixture
async def alice_token(archive, alice):
    return await token_for(archive, alice)


async def stream(client: Any, name: str, parts: list[bytes], headers: dict[str, str], *,
                 end: str = "complete", before_end: Any = None) -> Any:
    """Send a body part by part on one connection; `end` is "complete" or "disconnect" (the client goes
    away); `before_end` is awaited before that. Returns the response (None after a disconnect)."""
    async with client.request(name if name.startswith("/") else f"/api/uploads/{name}", method="PUT",
                              headers=headers) as connection:
        for part in parts:
            await connection.send(part)
        if before_end is not None:
            await before_end()
        if end == "disconnect":
            await connection.disconnect()
        else:
            await connection.send_complete()
    return None if end == "disconnect" else await connection.as_response()


async def until(condition: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.01)


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
    app = create_app(settings, run_jobs=False, pool=pool)
    async with app.test_app() as test_app:
        response = await stream(test_app.test_client(), "slow.fits", [fits_bytes(32)[:4000]],
                                {**alice_token, "Content-Length": "100000"},
                                before_end=lambda: asyncio.sleep(0.6))
    message = await error_of(response, 408)
    assert message == ("slow.fits: nothing arrived for 0.3 s after 4,000 bytes; the upload was abandoned and "
                       "nothing was kept")
    assert spooled(archive) == []


# size and quota ------------------------------------------------------------------------------------------
async def test_the_quota_can_be_reached_exactly_but_not_passed(client, archive, alice, alice_token,
                                                              write_fits):
    await ingest(archive, write_fits("owned.fits", size=32), owner="alice")
    stored = (await archive.store.usage())["alice"].bytes
    body = fits_bytes(64)
    await archive.store.update_user(alice.id, quota=stored + len(body) - 1)
    message = await error_of(await put(client, "big.fits", body, alice_token), 413)
    assert message == (
        f"big.fits ({len(body):,} bytes) does not fit in your quota of {stored + len(body) - 1:,} bytes: "
        f"{stored:,} bytes stored, 0 bytes uploaded and waiting to be ingested, 0 bytes held by your other "
        f"uploads in progress; {len(body) - 1:,} bytes free")
    assert spooled(archive) == [] and uploaded(archive) == []
    await archive.store.update_user(alice.id, quota=stored + len(body))
    assert (await put(client, "big.fits", body, alice_token)).status_code == 201


async def test_the_sites_default_quota_applies(client, archive, alice_token):
    body = fits_bytes(32)
    await archive.store.save_site_settings({"default_quota": len(body) - 1})
    assert "does not fit in your quota" in await error_of(await put(client, "a.fits", body, alice_token), 413)


async def test_a_body_of_unknown_length_is_cut_off_past_the_quota(client, archive, alice, alice_token):
    body = fits_bytes(64)
    await archive.store.update_user(alice.id, quota=len(body) - 1)
    response = await stream(client, "chunked.fits", [body[:5000], body[5000:]], alice_token)
    message = await error_of(response, 413)
    assert message.startswith(f"chunked.fits (at least {len(body):,} bytes) does not fit in your quota of "
                              f"{len(body) - 1:,} bytes")
    assert spooled(archive) == [] and uploaded(archive) == []
    await archive.store.update_user(alice.id, quota=len(body))
    assert (await stream(client, "chunked.fits", [body[:5000], body[5000:]], alice_token)).status_code == 201


async def test_the_maximum_file_size_applies_before_and_while_streaming(client, archive, alice_token):
    body = fits_bytes(64)
    await archive.store.save_site_settings({"max_file_size": len(body) - 1})
    message = await error_of(await put(client, "big.fits", body, alice_token), 413)
    assert message == (f"big.fits ({len(body):,} bytes) is larger than this site's maximum file size of "
                       f"{len(body) - 1:,} bytes")
    message = await error_of(await stream(client, "big.fits", [body[:8000], body[8000:]], alice_token), 413)
    assert message.startswith("big.fits (at least ")  # as many bytes as had arrived when it was cut off
    assert message.endswith(f") is larger than this site's maximum file size of {len(body) - 1:,} bytes")
    assert spooled(archive) == [] and uploaded(archive) == []
    await archive.store.save_site_settings({"max_file_size": len(body)})
    assert (await put(client, "big.fits", body, alice_token)).status_code == 201


async def test_concurrent_uploads_cannot_overshoot_the_quota(client, archive, alice, alice_token):
    body = fits_bytes(128)
    await archive.store.update_user(alice.id, quota=len(body) * 3 // 2)
    refusals: list[str] = []

    async def second_upload() -> None:
        await until(lambda: len(spooled(archive)) == 1)  # the first one holds its bytes now
        refusals.append(await error_of(await put(client, "second.fits", body, alice_token), 413))

    first = await stream(client, "first.fits", [body[:len(body) // 2], body[len(body) // 2:]],
                         {**alice_token, "Content-Length": str(len(body))}, before_end=second_upload)
    assert first.status_code == 201, await text_of(first)
    assert f"{len(body):,} bytes held by your other uploads in progress" in refusals[0]
    # the first upload is queued now: its bytes count as waiting to be ingested
    message = await error_of(await put(client, "third.fits", body, alice_token), 413)
    assert f"{len(body):,} bytes uploaded and waiting to be ingested" in message
    assert len(uploaded(archive)) == 1


# who may upload ------------------------------------------------------------------------------------------
async def test_guests_may_not_upload(client, archive):
    csrf = await csrf_of(client, "/login")  # a browser that visited the site
    message = await error_of(await put(client, "a.fits", fits_bytes(), {"X-CSRF-Token": csrf}), 401)
    assert message == "log in to upload files"
    client.cookie_jar.clear()  # a script with neither a session nor a token
    assert "security token" in await error_of(await put(client, "a.fits", fits_bytes(), {}), 403)
    assert spooled(archive) == [] and uploaded(archive) == []


async def test_a_disabled_users_token_and_session_are_refused(client, archive, alice, alice_token):
    await log_in(client, "alice")
    csrf = await csrf_of(client, "/upload")
    await archive.store.update_user(alice.id, disabled=True)
    assert "token is not valid" in await error_of(await put(client, "a.fits", fits_bytes(), alice_token), 403)
    # her session stays, with its CSRF token, but a disabled account counts as a guest
    message = await error_of(await put(client, "a.fits", fits_bytes(), {"X-CSRF-Token": csrf}), 401)
    assert message == "log in to upload files"
    assert uploaded(archive) == []


@pytest.mark.parametrize(("site", "message"), [
    ({"users_may_upload": False}, "uploads are turned off on this site: ask an administrator"),
    ({"demo_mode": True}, "this site is in demo mode: it is read-only for everyone but administrators"),
])
async def test_users_are_refused_when_the_site_says_so_and_admins_are_not(client, archive, alice_token,
                                                                         make_user, site, message):
    await archive.store.save_site_settings(site)
    assert await error_of(await put(client, "a.fits", fits_bytes(), alice_token), 403) == message
    assert uploaded(archive) == []
    root = await make_user("root", role="admin")
    assert (await put(client, "a.fits", fits_bytes(), await token_for(archive, root))).status_code == 201


async def test_the_browser_path_needs_the_csrf_token(client, archive, alice):
    await log_in(client, "alice")
    body = fits_bytes()
    assert "security token" in await error_of(await put(client, "a.fits", body, {}), 403)
    assert "security token" in await error_of(await put(client, "a.fits", body, {"X-CSRF-Token": "x" * 40}),
                                              403)
    # a body that looks like a form is not read for a csrf_token field
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    csrf = await csrf_of(client, "/upload")
    response = await client.put("/api/uploads/a.fits", data=f"csrf_token={csrf}".encode(), headers=form)
    assert "security token" in await error_of(response, 403)
    assert uploaded(archive) == [] and spooled(archive) == []
    assert (await put(client, "a.fits", body, {"X-CSRF-Token": csrf})).status_code == 201


async def test_a_job_is_shown_to_its_owner_and_admins_only(client, archive, alice_token, make_user):
    answer = await (await put(client, "mine.fits", fits_bytes(), alice_token)).get_json()
    url = answer["status_url"]
    bob = await token_for(archive, await make_user("bob"))
    root = await token_for(archive, await make_user("root", role="admin"))
    assert (await client.get(url, headers=alice_token)).status_code == 200
    assert (await client.get(url, headers=root)).status_code == 200
    assert await error_of(await client.get(url, headers=bob), 404) == f"there is no job {answer['id']!r}"
    assert await error_of(await client.get("/api/jobs/nosuchjob", headers=bob), 404) == \
        "there is no job 'nosuchjob'"
    assert (await client.get(url)).status_code == 401
    assert (await client.get(f"/upload/jobs/{answer['id']}", headers=bob)).status_code == 404


# the page ------------------------------------------------------------------------------------------------
async def test_the_upload_page(client, archive, alice, make_user):
    response = await client.get("/upload")
    assert response.status_code == 302 and response.headers["Location"] == "/login?next=/upload"
    await log_in(client, "alice")
    page = await text_of(await client.get("/"))
    assert '<a href="/upload">Upload</a>' in page
    page = await text_of(await client.get("/upload"))
    assert 'id="files"' in page and "multiple" in page and 'data-max="4000000000"' in page
    assert "upload.js" in page and 'name="visibility"' in page

    await archive.store.save_site_settings({"users_may_upload": False})
    response = await client.get("/upload")
    assert response.status_code == 403
    page = await text_of(response)
    assert "Uploads are turned off on this site: ask an administrator." in page and 'id="files"' not in page
    assert '<a href="/upload">Upload</a>' not in await text_of(await client.get("/"))

    await make_user("root", role="admin")
    client.cookie_jar.clear()
    await log_in(client, "root")
    await archive.store.save_site_settings({"demo_mode": True})
    response = await client.get("/upload")
    assert response.status_code == 200 and 'id="files"' in await text_of(response)


# a real server ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """`imagex serve` on a fresh data folder with a user `carol` (quota 1,000,000 bytes) and her API
    token."""
    data = tmp_path_factory.mktemp("upload-served") / "var"
    script = (
        "import asyncio, sys\n"
        "from app.archive import Archive\n"
        "from app.identity import new_user\n"
        "from app.routes.accounts import create_token\n"
        "from app.settings import Settings\n"
        "async def main():\n"
        "    archive = Archive(Settings.load(environ={}, hips=False, data=sys.argv[1], workers=1))\n"
        "    await archive.startup()\n"
        "    user = await new_user(archive, 'carol', 'correct horse battery')\n"
        "    await archive.store.update_user(user.id, quota=10**6)\n"
        "    print((await create_token(archive, user, 'test'))['token'])\n"
        "    await archive.close()\n"
        "asyncio.run(main())\n")
    root = Path(__file__).resolve().parents[2]
    made = subprocess.run([str(BIN / "python"), "-c", script, str(data)], capture_output=True, text=True,
                          timeout=120, cwd=root)
    assert made.returncode == 0, made.stderr
    port = free_port()
    env = {**os.environ, "IMAGEX_DATA": str(data), "IMAGEX_WORKERS": "1", "IMAGEX_PORT": str(port),
           "IMAGEX_HOST": "127.0.0.1"}
    env.pop("IMAGEX_SAMPLES", None)
    log = data.parent / "serve.log"
    with log.open("w") as output:
        process = subprocess.Popen([str(BIN / "imagex"), "serve"], env=env,
                                   stdout=output, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while not answers(f"http://127.0.0.1:{port}/api/images"):
            assert process.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)
        yield {"port": port, "data": data, "token": made.stdout.strip()}
    finally:
        stop(process)


def _request_head(served: dict[str, Any], path: str, length: int) -> bytes:
    return (f"PUT {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {served['token']}\r\n"
            f"Content-Type: application/octet-stream\r\nContent-Length: {length}\r\n\r\n").encode()


def _answer(sock: socket.socket) -> tuple[int, dict[str, Any]]:
    """Read one HTTP answer (with Content-Length) from `sock`."""
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(65536)
    head, _, rest = data.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    length = next(int(line.split(":")[1]) for line in lines if line.lower().startswith("content-length"))
    while len(rest) < length:
        rest += sock.recv(65536)
    return int(lines[0].split()[1]), json.loads(rest[:length])


def test_a_real_server_stores_a_percent_encoded_path_trick_safely(served):
    body = fits_bytes(32)
    with socket.create_connection(("127.0.0.1", served["port"]), timeout=30) as sock:
        sock.sendall(_request_head(served, "/api/uploads/..%2F..%2F..%2Fescape%00.fits", len(body)) + body)
        status, answer = _answer(sock)
    assert status == 201, answer
    assert answer["client_name"] == "escape.fits"
    assert "/" not in answer["path"] and (served["data"] / "uploads" / "carol" / answer["path"]).is_file()
    assert not (served["data"].parent / "escape.fits").exists()


def test_a_real_server_refusal_reaches_a_client_that_sends_everything_first(served):
    """The server reads and drops the rest of a refused body for a while, so that closing the connection
    does not reset it before a client that sends first and reads after sees the answer."""
    length = 5 * 10**6  # past carol's quota of 1,000,000 bytes
    with socket.create_connection(("127.0.0.1", served["port"]), timeout=30) as sock:
        sock.sendall(_request_head(served, "/api/uploads/big.fits", length))
        sock.sendall(bytes(length))
        status, answer = _answer(sock)
    assert status == 413
    assert answer["error"].startswith("big.fits (5,000,000 bytes) does not fit in your quota of "
                                      "1,000,000 bytes")


def test_a_real_server_keeps_nothing_of_a_cut_connection(served):
    body = fits_bytes(128)
    spool = served["data"] / "spool" / "carol"
    with socket.create_connection(("127.0.0.1", served["port"]), timeout=30) as sock:
        sock.sendall(_request_head(served, "/api/uploads/cut.fits", len(body)) + body[:len(body) // 2])
        deadline = time.monotonic() + 10
        while not files_under(spool):
            assert time.monotonic() < deadline, "the upload never reached the spool"
            time.sleep(0.02)
    deadline = time.monotonic() + 10
    while files_under(spool):
        assert time.monotonic() < deadline, f"left behind: {files_under(spool)}"
        time.sleep(0.02)
    request = urllib.request.Request(f"http://127.0.0.1:{served['port']}/api/jobs",
                                     headers={"Authorization": f"Bearer {served['token']}"})
    with urllib.request.urlopen(request, timeout=10) as response:
        jobs = json.loads(response.read())["jobs"]
    assert "cut.fits" not in [job["name"] for job in jobs]
