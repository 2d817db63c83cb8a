"""Tiles `/tiles/<id>/<token>/<name>`: signed, expiring URLs; caching headers; no way out of the image's
own folder."""

from __future__ import annotations

import os
import re
import time
from urllib.parse import urlsplit

import pytest
import pyvips

from app import tokens
from app.tiles import pyramid
from tests.routes.pages import dzi_facts, text_of

# A 300x300 image with 254-pixel tiles: levels 0-9, the deepest (9) has 2x2 tiles.
DEEPEST = 9


@pytest.fixture
def base(archive, image) -> str:
    """`/tiles/<id>/<token>` of the `image` fixture, with a valid token."""
    return f"/tiles/{image.id}/{archive.tile_token(image.id)}"


def gen_of(archive, image) -> str:
    """The image's current tile generation (the name of its tile folder)."""
    return archive.tile_folder(image.id).name


def max_age(response) -> int:
    match = re.fullmatch(r"public, max-age=(\d+), immutable", response.headers["Cache-Control"])
    assert match, response.headers["Cache-Control"]
    return int(match.group(1))


@pytest.mark.parametrize(("name", "content_type"), [
    ("image.dzi", "application/xml"),
    ("thumb.jpeg", "image/jpeg"),
    ("image_files/0/0_0.jpeg", "image/jpeg"),
    (f"image_files/{DEEPEST}/1_1.jpeg", "image/jpeg"),
])
async def test_files_are_served_with_etag_and_cache_lifetime(client, archive, image, base, name,
                                                             content_type):
    response = await client.get(f"{base}/{name}")
    assert response.status_code == 200
    assert response.content_type == content_type
    body = await response.get_data()
    assert body == (archive.tile_folder(image.id) / name).read_bytes()
    assert re.fullmatch(r'"[0-9a-f]+-[0-9a-f]+"', response.headers["ETag"])
    ttl = archive.settings.tile_token_ttl
    assert ttl - 5 <= max_age(response) <= ttl + ttl // 4


async def test_dzi_and_tiles_describe_the_image(client, base):
    facts = dzi_facts(await text_of(await client.get(f"{base}/image.dzi")))
    assert facts == {"format": "jpeg", "tile_size": 254, "overlap": 1, "width": 300, "height": 300}
    for name, size in [("0_0", (255, 255)), ("1_0", (47, 255)), ("0_1", (255, 47)), ("1_1", (47, 47))]:
        body = await (await client.get(f"{base}/image_files/{DEEPEST}/{name}.jpeg")).get_data()
        tile = pyvips.Image.new_from_buffer(body, "")
        assert (tile.width, tile.height) == size
        assert tile.get("vips-loader") == "jpegload_buffer"
        assert tile.max() > tile.min()  # stars on a sky background, not a flat tile
    top = await (await client.get(f"{base}/image_files/0/0_0.jpeg")).get_data()
    assert pyvips.Image.new_from_buffer(top, "").width == 1


@pytest.mark.parametrize("name", ["image.dzi", f"image_files/{DEEPEST}/0_0.jpeg"])
async def test_if_none_match_with_the_etag_is_a_304_without_body(client, base, name):
    first = await client.get(f"{base}/{name}")
    etag = first.headers["ETag"]
    again = await client.get(f"{base}/{name}", headers={"If-None-Match": etag})
    assert again.status_code == 304
    assert await again.get_data() == b""
    assert again.headers["ETag"] == etag and max_age(again) > 0
    listed = await client.get(f"{base}/{name}", headers={"If-None-Match": f'"other", {etag}'})
    assert listed.status_code == 304
    stale = await client.get(f"{base}/{name}", headers={"If-None-Match": '"0-0"'})
    assert stale.status_code == 200 and await stale.get_data() == await first.get_data()


async def test_another_tile_has_another_etag(client, base):
    one = await client.get(f"{base}/image_files/{DEEPEST}/0_0.jpeg")
    two = await client.get(f"{base}/image_files/{DEEPEST}/1_1.jpeg")
    assert one.headers["ETag"] != two.headers["ETag"]
    crossed = await client.get(f"{base}/image_files/{DEEPEST}/1_1.jpeg",
                               headers={"If-None-Match": one.headers["ETag"]})
    assert crossed.status_code == 200


def flip(char: str) -> str:
    return "0" if char != "0" else "1"


async def test_forged_tokens_are_refused(client, archive, image):
    good = archive.tile_token(image.id)
    expires, gen, digest = good.split(".")
    later = format(int(expires, 16) + 3600, "x")
    other_secret = tokens.make(b"not the site secret", image.id, gen, archive.settings.tile_token_ttl)
    forged = [
        f"{expires}.{gen}.{digest[:-1]}{flip(digest[-1])}",  # one character of the signature changed
        f"{later}.{gen}.{digest}",  # expiry pushed out, old signature
        f"{expires}.{gen[:-1]}{flip(gen[-1])}.{digest}",  # another generation, old signature
        other_secret,  # signed with another key
        f"{expires}.{gen}.{digest[:-2]}",  # signature cut short
        f"{expires}.{gen}.{digest}00",  # signature too long
        f"{expires}.{digest}",  # no generation (the old token shape)
        f"{gen}.{digest}",  # no expiry
        f"zz.{gen}.{digest}",  # expiry not hex
        "x",
    ]
    for token in forged:
        for name in ("image.dzi", "thumb.jpeg", f"image_files/{DEEPEST}/0_0.jpeg"):
            response = await client.get(f"/tiles/{image.id}/{token}/{name}")
            assert response.status_code == 403, (token, name)
            assert "expired or is not valid" in await text_of(response)
            assert "ETag" not in response.headers


async def test_a_token_for_another_image_is_refused(client, archive, add_image):
    one = await add_image("one.fits", OBJECT="One")
    two = await add_image("two.fits", OBJECT="Two")
    token_one = archive.tile_token(one.id)
    assert (await client.get(f"/tiles/{one.id}/{token_one}/image.dzi")).status_code == 200
    response = await client.get(f"/tiles/{two.id}/{token_one}/image.dzi")
    assert response.status_code == 403
    assert (await client.get(f"/tiles/{two.id}/{token_one}/thumb.jpeg")).status_code == 403


async def test_an_expired_token_is_refused(client, archive, image):
    ttl = archive.settings.tile_token_ttl
    expired = tokens.make(archive.secret, image.id, gen_of(archive, image), ttl, at=time.time() - 2 * ttl)
    assert tokens.check(archive.secret, image.id, expired) is None
    response = await client.get(f"/tiles/{image.id}/{expired}/image.dzi")
    assert response.status_code == 403
    assert "expired" in await text_of(response)
    # made a short while ago, still within its lifetime: accepted
    recent = tokens.make(archive.secret, image.id, gen_of(archive, image), ttl, at=time.time() - ttl // 2)
    recent_response = await client.get(f"/tiles/{image.id}/{recent}/image.dzi")
    assert recent_response.status_code == 200
    assert 0 < max_age(recent_response) <= ttl // 2 + ttl // 4


async def test_an_expired_token_is_refused_even_with_if_none_match(client, archive, image, base):
    etag = (await client.get(f"{base}/image.dzi")).headers["ETag"]
    ttl = archive.settings.tile_token_ttl
    expired = tokens.make(archive.secret, image.id, gen_of(archive, image), ttl, at=time.time() - 2 * ttl)
    response = await client.get(f"/tiles/{image.id}/{expired}/image.dzi", headers={"If-None-Match": etag})
    assert response.status_code == 403


TRICKS = [
    "../secret.key",
    "../../../secret.key",
    "image_files/../../../../secret.key",
    "image.dzi/../../../../secret.key",
    "%2e%2e/%2e%2e/%2e%2e/secret.key",
    "%2E%2E%2F%2E%2E%2F%2E%2E%2Fsecret.key",
    "..%2f..%2f..%2fsecret.key",
    "image_files/%2e%2e/%2e%2e/%2e%2e/%2e%2e/secret.key",
    "secret.key",
    "catalog.sqlite",
    "image.DZI",
    "image.xml",
    "thumb.jpg",
    "thumb.jpeg.bak",
    "image_files/9/0_0.png",
    "image_files/9/0_0.jpeg/x",
    "image_files/123/0_0.jpeg",
    "image_files/9/0-0.jpeg",
    "image_files/9/0_0.jpeg%00",
    "thumb.jpeg%0a",
    "image_files",
    "image_files/9",
    "",
]


@pytest.mark.parametrize("name", TRICKS)
async def test_path_tricks_are_404_and_never_file_contents(client, archive, image, base, name):
    secret_hex = (archive.settings.data / "secret.key").read_text().strip()
    response = await client.get(f"{base}/{name}")
    assert response.status_code == 404, name
    body = await response.get_data()
    assert secret_hex.encode() not in body
    assert b"SQLite format" not in body and b"root:" not in body and b"SIMPLE  =" not in body


@pytest.mark.parametrize("name", ["/etc/passwd", "%2fetc%2fpasswd", "//evil.example/x"])
async def test_absolute_names_lead_only_to_a_404(client, archive, base, name):
    """The router merges doubled slashes with a redirect; it stays on this site, under this tile base,
    and ends in a 404."""
    response = await client.get(f"{base}/{name}")
    if response.status_code in (301, 308):
        location = urlsplit(response.headers["Location"])
        assert location.netloc in ("", "localhost")
        assert location.path.startswith(f"{base}/") and "//" not in location.path
        response = await client.get(location.path)
    assert response.status_code == 404
    body = await response.get_data()
    assert b"root:" not in body and (archive.settings.data / "secret.key").read_bytes().strip() not in body


async def test_another_images_folder_cannot_be_reached(client, archive, add_image):
    one = await add_image("one.fits", OBJECT="One")
    two = await add_image("two.fits", OBJECT="Two")
    token_one = archive.tile_token(one.id)
    for name in (f"../{two.id}/image.dzi", f"../../{two.id[:2]}/{two.id}/image.dzi",
                 f"%2e%2e/%2e%2e/{two.id[:2]}/{two.id}/thumb.jpeg"):
        response = await client.get(f"/tiles/{one.id}/{token_one}/{name}")
        assert response.status_code == 404, name
    for image_id in (f"..%2f{two.id}", f"{two.id[:2]}%2f{two.id}", f"{one.id}..", "ab", "x" * 33):
        response = await client.get(f"/tiles/{image_id}/{token_one}/image.dzi")
        assert response.status_code == 404, image_id


@pytest.mark.parametrize("name", [f"image_files/{DEEPEST}/5_5.jpeg", f"image_files/{DEEPEST + 1}/0_0.jpeg",
                                  "image_files/99/0_0.jpeg"])
async def test_a_missing_tile_is_a_404(client, base, name):
    response = await client.get(f"{base}/{name}")
    assert response.status_code == 404
    assert "no such tile" in await text_of(response)


async def test_a_valid_token_for_an_unknown_image_finds_nothing(client, archive):
    token = archive.tile_token("abcdef123456")
    response = await client.get(f"/tiles/abcdef123456/{token}/image.dzi")
    assert response.status_code == 404


async def test_levels_below_one_tile_are_made_when_first_asked_then_served_from_disk(client, archive, image,
                                                                                    base):
    """Ingest writes the 300x300 pyramid down to the level that fits in one tile (8, 150x150); each level
    below is shrunk from it on its first request, kept as a file, and served as one from then on."""
    files = archive.tile_folder(image.id) / "image_files"
    assert sorted(int(name) for name in os.listdir(files) if name.isdigit()) == [8, 9]
    lowest = pyvips.Image.new_from_file(str(files / "8" / "0_0.jpeg"))
    for level in range(8):
        response = await client.get(f"{base}/image_files/{level}/0_0.jpeg")
        assert response.status_code == 200, level
        body = await response.get_data()
        tile = pyvips.Image.new_from_buffer(body, "")
        assert (tile.width, tile.height) == pyramid.level_size(300, 300, level)
        assert abs(tile.avg() - lowest.avg()) < 3  # the same picture, shrunk
        assert (files / str(level) / "0_0.jpeg").read_bytes() == body
        again = await client.get(f"{base}/image_files/{level}/0_0.jpeg")
        assert again.headers["ETag"] == response.headers["ETag"] and await again.get_data() == body
    assert sorted(name for name in os.listdir(files / "0")) == ["0_0.jpeg"]  # no temporary file left
    for name in ("image_files/3/1_0.jpeg", "image_files/8/0_1.jpeg"):  # not a tile of those levels
        assert (await client.get(f"{base}/{name}")).status_code == 404


async def test_a_low_level_of_a_revoked_link_is_refused_and_not_made(client, archive, image, base):
    old = archive.tile_folder(image.id)
    await archive.revoke_tiles([image.id])
    response = await client.get(f"{base}/image_files/2/0_0.jpeg")
    assert response.status_code == 403
    assert "revoked; reload the page" in await text_of(response)
    assert not old.exists() and not (archive.tile_folder(image.id) / "image_files" / "2").exists()
