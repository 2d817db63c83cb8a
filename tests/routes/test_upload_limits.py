"""Uploads' limits and rights: quota and size limits before and while a body streams, who may upload,
the upload page. The last tests talk to a real `imagex serve` over a socket."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.browser.server_helpers import BIN, answers, free_port
from tests.helpers import csrf_of, ingest, log_in
from tests.processes import stop
from tests.routes.pages import text_of
from tests.routes.upload_helpers import (
    error_of,
    files_under,
    fits_bytes,
    put,
    spooled,
    stream,
    token_for,
    until,
    uploaded,
)


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
        deadline = time.monotonic() + 30
        while not files_under(spool):
            assert time.monotonic() < deadline, "the upload never reached the spool"
            time.sleep(0.02)
    deadline = time.monotonic() + 30
    while files_under(spool):
        assert time.monotonic() < deadline, f"left behind: {files_under(spool)}"
        time.sleep(0.02)
    request = urllib.request.Request(f"http://127.0.0.1:{served['port']}/api/jobs",
                                     headers={"Authorization": f"Bearer {served['token']}"})
    with urllib.request.urlopen(request, timeout=10) as response:
        jobs = json.loads(response.read())["jobs"]
    assert "cut.fits" not in [job["name"] for job in jobs]
