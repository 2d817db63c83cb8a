"""`imagex nginx-config` in front of a real `imagex serve`: nginx checks the signed tile tokens itself
(njs) and serves tile files from disk with ImageX's headers; what it cannot serve goes to ImageX (display
tiles not rendered yet, bad and revoked tokens, which ImageX refuses with its message), and pages and
uploads are proxied. Run by `make test-nginx`, which installs nginx and its JavaScript module."""

from __future__ import annotations

import asyncio
import http.client
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from astropy.io import fits

from app import tokens
from app.archive import Archive
from app.samples import FIELD_DEC, FIELD_RA, celestial_wcs, star_field
from app.settings import Settings
from app.tiles import pyramid
from tests.browser.server_helpers import imagex_serve
from tests.deploy import nginx
from tests.processes import free_port

pytestmark = pytest.mark.skipif(bool(nginx.missing()), reason=nginx.missing() or "nginx is here")
BIN = Path(sys.executable).parent
SIZE = 600
SPEC = "zscale~asinh~viridis"


@dataclass
class Deployment:
    data: Path
    direct: int  # imagex serve's port
    front: int  # nginx's port
    token: str  # an API token of the user "uploader"
    images: list[dict[str, object]]

    def get(self, port: int, path: str,
            headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        try:
            connection.request("GET", path, headers=headers or {})
            response = connection.getresponse()
            return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
        finally:
            connection.close()

    def links(self, index: int = 0) -> dict[str, str]:
        status, _, body = self.get(self.front, f"/api/images/{self.images[index]['id']}")
        assert status == 200
        detail = json.loads(body)
        return {key: str(value) for key, value in detail.items() if str(value).startswith("/tiles/")}


def write_field(path: Path, name: str, seed: int) -> Path:
    wcs = celestial_wcs(FIELD_RA, FIELD_DEC, SIZE, SIZE)
    header = wcs.to_header()
    header["OBJECT"] = name
    fits.PrimaryHDU(star_field(wcs, SIZE, SIZE, seed=seed), header).writeto(path)
    return path


async def uploader_token(data: Path) -> str:
    from app.identity import new_user
    from app.routes.accounts import create_token

    archive = Archive(Settings.load(environ={}, hips=False, data=str(data), workers=1))
    await archive.startup()
    try:
        user = await new_user(archive, "uploader", "uploader password 123")
        return str((await create_token(archive, user, "nginx test"))["token"])
    finally:
        await archive.close()


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    root = tmp_path_factory.mktemp("nginx")
    data = root / "var"
    direct, front = free_port(), free_port()
    env = {key: value for key, value in os.environ.items() if not key.startswith("IMAGEX_")}
    env.update(IMAGEX_DATA=str(data), IMAGEX_WORKERS="1", IMAGEX_PORT=str(direct), IMAGEX_HOST="127.0.0.1",
               IMAGEX_PROXY_HOPS="1", IMAGEX_HIPS="false")
    fields = [write_field(root / f"field{n}.fits", f"Field {n}", n + 1) for n in range(2)]
    done = subprocess.run([str(BIN / "imagex"), "ingest", "--no-progress", "--visibility", "public",
                           *map(str, fields)], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    token = asyncio.run(uploader_token(data))
    made = subprocess.run([str(BIN / "imagex"), "nginx-config", "--output", str(root / "conf"), "--listen",
                           f"127.0.0.1:{front}", "--server-name", "localhost"],
                          env=env, capture_output=True, text=True, timeout=60)
    assert made.returncode == 0, made.stderr
    site = root / "conf" / "imagex.conf"
    assert f"server 127.0.0.1:{direct};" in site.read_text()  # ImageX's address from its settings
    with imagex_serve(env, root / "serve.log"):
        status, _, body = Deployment(data, direct, front, "", []).get(direct, "/api/images")
        assert status == 200
        images = sorted(json.loads(body)["images"], key=lambda image: str(image["name"]))
        with nginx.running(root / "nginx", site, f"http://127.0.0.1:{front}/healthz"):
            yield Deployment(data, direct, front, token, images)


def serve_pid(port: int) -> int:
    """The pid of the process listening on `port` (imagex serve), from /proc/net/tcp and the fds."""
    inode = ""
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[1].endswith(f":{port:04X}") and fields[3] == "0A":  # LISTEN
            inode = fields[9]
    assert inode, f"nothing listens on port {port}"
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            for fd in os.listdir(f"/proc/{pid}/fd"):
                if os.readlink(f"/proc/{pid}/fd/{fd}") == f"socket:[{inode}]":
                    return int(pid)
        except OSError:
            continue
    raise AssertionError(f"no process owns the socket on port {port}")


def test_a_good_token_gets_imagex_bytes_and_headers_from_nginx_alone(deployment):
    links = deployment.links()
    base = links["dzi_url"].removesuffix("/image.dzi")
    paths = [links["dzi_url"], links["thumbnail_url"], f"{base}/image_files/0/0_0.jpeg",
             f"{base}/image_files/10/1_1.jpeg"]
    answers = {}
    for path in paths:
        ours = deployment.get(deployment.direct, path)
        theirs = deployment.get(deployment.front, path)
        assert ours[0] == theirs[0] == 200, path
        assert theirs[2] == ours[2] and theirs[1]["content-type"] == ours[1]["content-type"]
        assert theirs[1]["etag"] == ours[1]["etag"]
        assert theirs[1]["cache-control"] == ours[1]["cache-control"]
        assert theirs[1]["x-content-type-options"] == "nosniff"
        revalidated = deployment.get(deployment.front, path, {"If-None-Match": ours[1]["etag"]})
        assert revalidated[0] == 304 and revalidated[2] == b""
        answers[path] = theirs[2]
    # nginx needs no Python for them: with imagex serve paused, the tiles still come
    pid = serve_pid(deployment.direct)
    os.kill(pid, signal.SIGSTOP)
    try:
        for path in paths:
            status, _, body = deployment.get(deployment.front, path)
            assert status == 200 and body == answers[path]
    finally:
        os.kill(pid, signal.SIGCONT)


def bad_tokens(deployment: Deployment) -> dict[str, str]:
    links, other = deployment.links(0), deployment.links(1)
    image_id = str(deployment.images[0]["id"])
    token = links["dzi_url"].split("/")[3]
    expires, gen, digest = token.split(".")
    secret = tokens.load_secret(deployment.data / "secret.key")
    ttl = 3600
    flipped = digest[:-1] + ("0" if digest[-1] != "0" else "1")
    return {
        "forged": f"{expires}.{gen}.{flipped}",
        "longer": f"{int(expires, 16) + 3600:x}.{gen}.{digest}",
        "other key": tokens.make(b"another site's secret key", image_id, gen, ttl),
        "expired": tokens.make(secret, image_id, gen, ttl, at=time.time() - 2 * ttl),
        "other image": other["dzi_url"].split("/")[3],
        "malformed": f"{expires}.{digest}",
        "upper case": token.upper(),
        "empty parts": "..",
    }


@pytest.mark.parametrize("name", ["image.dzi", "thumb.jpeg", "image_files/0/0_0.jpeg"])
def test_bad_tokens_are_refused_with_imagex_message(deployment, name):
    image_id = deployment.images[0]["id"]
    for kind, token in bad_tokens(deployment).items():
        status, headers, body = deployment.get(deployment.front, f"/tiles/{image_id}/{token}/{name}")
        assert status == 403, (kind, status)
        assert b"expired or is not valid" in body, kind
        assert "etag" not in headers


def test_a_revoked_generation_is_refused_at_once(deployment):
    links = deployment.links(1)
    assert deployment.get(deployment.front, links["thumbnail_url"])[0] == 200
    image_id = str(deployment.images[1]["id"])
    pyramid.revoke(pyramid.image_root(deployment.data / "tiles", image_id))  # what a visibility change does
    for path in (links["thumbnail_url"], links["dzi_url"]):
        status, _, body = deployment.get(deployment.front, path)
        assert status == 403 and b"revoked; reload the page" in body
    fresh = deployment.links(1)
    assert fresh["thumbnail_url"] != links["thumbnail_url"]
    assert deployment.get(deployment.front, fresh["thumbnail_url"])[0] == 200


def test_a_display_tile_not_on_disk_is_rendered_by_imagex_then_served_from_disk(deployment):
    links = deployment.links()
    path = f"{links['display_url']}{SPEC}/image_files/9/0_0.jpeg"
    image_id = str(deployment.images[0]["id"])
    folder = pyramid.current(pyramid.image_root(deployment.data / "tiles", image_id))
    assert folder is not None
    cached = folder / "display" / SPEC / "image_files" / "9" / "0_0.jpeg"
    assert not cached.exists()
    status, headers, body = deployment.get(deployment.front, path)
    assert status == 200 and headers["content-type"] == "image/jpeg" and body[:2] == b"\xff\xd8"
    assert cached.read_bytes() == body
    again = deployment.get(deployment.front, path)
    assert again[0] == 200 and again[2] == body and again[1]["etag"] == headers["etag"]
    descriptor = deployment.get(deployment.front, f"{links['display_url']}{SPEC}/image.dzi")
    assert descriptor[0] == 200 and b"<Image" in descriptor[2]
    pixel = deployment.get(deployment.front, links["dzi_url"].replace("image.dzi", "pixel/3_4"))
    assert pixel[0] == 200 and set(json.loads(pixel[2])) == {"x", "y", "value"}


def test_pages_are_proxied(deployment):
    status, headers, body = deployment.get(deployment.front, "/")
    assert status == 200 and headers["content-type"].startswith("text/html")
    assert b"Field 0" in body or b"/images/" in body
    missing = deployment.get(deployment.front, "/tiles/abcdef123456/x/image.dzi")
    assert missing[0] == 403


def test_an_upload_is_streamed_through_to_imagex(deployment, tmp_path):
    upload = write_field(tmp_path / "upload.fits", "Uploaded", 9).read_bytes()
    connection = http.client.HTTPConnection("127.0.0.1", deployment.front, timeout=60)
    try:
        # sent in pieces with chunked encoding: nginx passes them on without buffering the body
        connection.putrequest("PUT", "/api/uploads/uploaded.fits")
        connection.putheader("Authorization", f"Bearer {deployment.token}")
        connection.putheader("Transfer-Encoding", "chunked")
        connection.endheaders()
        for start in range(0, len(upload), 65536):
            piece = upload[start:start + 65536]
            connection.send(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
        connection.send(b"0\r\n\r\n")
        response = connection.getresponse()
        answer = json.loads(response.read())
    finally:
        connection.close()
    assert response.status == 201, answer
    status_url = urlsplit(answer["status_url"]).path
    deadline = time.monotonic() + 120
    while True:
        _, _, body = deployment.get(deployment.front, status_url,
                                    {"Authorization": f"Bearer {deployment.token}"})
        job = json.loads(body)
        if job.get("state") in ("done", "failed"):
            break
        assert time.monotonic() < deadline, job
        time.sleep(0.3)
    assert job["state"] == "done", job
