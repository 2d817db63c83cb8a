"""The thin ASGI layer in front of Quart (app/tiles/server.py): tiles on disk with a good token are
answered without reaching the Quart app; everything else is passed to it unchanged."""

from __future__ import annotations

from typing import Any

import pytest

from app import tokens
from app.tiles.server import SIGNED_MEMORY, TileServer


class Behind:
    """The app behind the layer: records what reaches it and answers 418."""

    def __init__(self) -> None:
        self.paths: list[str] = []

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        self.paths.append(scope.get("path", scope["type"]))
        await send({"type": "http.response.start", "status": 418, "headers": []})
        await send({"type": "http.response.body", "body": b""})


async def ask(layer: TileServer, path: str, *, method: str = "GET",
              headers: list[tuple[bytes, bytes]] | None = None) -> tuple[int, dict[bytes, bytes], bytes]:
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "method": method, "path": path, "headers": headers or [], "query_string": b""}
    await layer(scope, receive, send)
    return sent[0]["status"], dict(sent[0]["headers"]), b"".join(m.get("body", b"") for m in sent[1:])


@pytest.fixture
def layer(archive) -> tuple[TileServer, Behind]:
    behind = Behind()
    return TileServer(behind, archive), behind


@pytest.mark.parametrize(("name", "content_type"), [("image.dzi", b"application/xml"),
                                                     ("thumb.jpeg", b"image/jpeg"),
                                                     ("image_files/9/1_1.jpeg", b"image/jpeg")])
async def test_files_on_disk_are_answered_without_the_app(archive, image, layer, name, content_type):
    server, behind = layer
    base = f"/tiles/{image.id}/{archive.tile_token(image.id)}"
    status, headers, body = await ask(server, f"{base}/{name}")
    assert status == 200 and behind.paths == []
    assert body == (archive.tile_folder(image.id) / name).read_bytes()
    assert headers[b"content-type"] == content_type and headers[b"x-content-type-options"] == b"nosniff"
    assert headers[b"content-length"] == str(len(body)).encode()
    assert headers[b"cache-control"].startswith(b"public, max-age=")
    again = await ask(server, f"{base}/{name}", headers=[(b"if-none-match", headers[b"etag"])])
    assert again[0] == 304 and again[2] == b"" and behind.paths == []


async def test_what_it_cannot_answer_goes_to_the_app_unchanged(archive, image, layer):
    server, behind = layer
    token = archive.tile_token(image.id)
    expires, gen, _ = token.split(".")
    passed = [
        f"/tiles/{image.id}/{expires}.{gen}.{'0' * 20}/image.dzi",  # forged
        f"/tiles/{image.id}/{token}/image_files/9/7_7.jpeg",  # no such file
        f"/tiles/{image.id}/{token}/display/zscale~sqrt~grey/image_files/9/0_0.jpeg",  # not rendered yet
        f"/tiles/{image.id}/{token}/display/zscale~sqrt~grey/image.dzi",
        f"/tiles/{image.id}/{token}/pixel/3_4",
        f"/tiles/{image.id}/{token}/../../secret.key",
        f"/tiles/{image.id}/{token}",
        "/api/images",
    ]
    for path in passed:
        assert (await ask(server, path))[0] == 418, path
    assert (await ask(server, f"/tiles/{image.id}/{token}/image.dzi", method="HEAD"))[0] == 418
    assert behind.paths == [*passed, f"/tiles/{image.id}/{token}/image.dzi"]
    await archive.revoke_tiles([image.id])
    assert (await ask(server, f"/tiles/{image.id}/{token}/image.dzi"))[0] == 418  # revoked: the app says so


async def test_the_security_headers_given_are_sent(archive, image):
    server = TileServer(Behind(), archive, security_headers=[("Referrer-Policy", "same-origin"),
                                                             ("X-Content-Type-Options", "nosniff")])
    status, headers, _ = await ask(server, f"/tiles/{image.id}/{archive.tile_token(image.id)}/thumb.jpeg")
    assert status == 200
    assert headers[b"referrer-policy"] == b"same-origin" and headers[b"x-content-type-options"] == b"nosniff"


async def test_a_remembered_token_still_expires(archive, image):
    """Good tokens are remembered (the signature is computed once per token), but each request checks the
    expiry: past it, the request goes to the app, which says the link expired."""
    now = [1_800_000_000.0]
    behind = Behind()
    server = TileServer(behind, archive, clock=lambda: now[0])
    ttl = archive.settings.tile_token_ttl
    token = tokens.make(archive.secret, image.id, archive.tile_folder(image.id).name, ttl, at=now[0])
    path = f"/tiles/{image.id}/{token}/thumb.jpeg"
    status, headers, _ = await ask(server, path)
    assert status == 200 and behind.paths == []
    assert int(headers[b"cache-control"].split(b"max-age=")[1].split(b",")[0]) >= ttl
    now[0] += 2 * ttl
    assert (await ask(server, path))[0] == 418 and behind.paths == [path]


async def test_forged_tokens_are_not_remembered_and_a_new_key_forgets(archive, image, layer):
    server, behind = layer
    token = archive.tile_token(image.id)
    expires, gen, _ = token.split(".")
    for attempt in range(SIGNED_MEMORY + 10):  # a flood of forgeries cannot fill or flush the memory
        forged = f"{expires}.{gen}.{attempt:020x}"
        assert (await ask(server, f"/tiles/{image.id}/{forged}/thumb.jpeg"))[0] == 418
    assert len(behind.paths) == SIGNED_MEMORY + 10  # each one went to the app, which says it is forged
    assert (await ask(server, f"/tiles/{image.id}/{token}/thumb.jpeg"))[0] == 200
    archive.secret = b"another key, as after the key file was replaced"
    assert (await ask(server, f"/tiles/{image.id}/{token}/thumb.jpeg"))[0] == 418  # signed by the old key
