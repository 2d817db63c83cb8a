"""Embeds: `/embed/images/<id>` and `/embed/mosaic?ids=...` show the viewer alone, may be framed by the
sites of the `frame_ancestors` setting (public images), answer "not available" with the same bytes for a
private, missing or malformed image; every other page refuses to be framed."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from app import create_app
from app.exceptions import SettingError
from app.settings import Settings
from tests.helpers import QUICK_PASSWORDS, log_in
from tests.routes.pages import directives, text_of

UNUSED_ID = "Zz9Zz9Zz9Zz9"
HOSTILE = '<script>alert(1)</script>"><img src=x>'


def framed_by(response: Any) -> str:
    """The frame-ancestors sources of the answer's Content-Security-Policy (its other directives are
    checked in test_headers.py)."""
    return directives(response.headers["Content-Security-Policy"])["frame-ancestors"]


def embedded(html: str) -> dict[str, Any]:
    match = re.search(r'<script type="application/json" id="mosaic-data">(.*?)</script>', html, re.S)
    assert match, "no mosaic data in the embed"
    return dict(json.loads(match.group(1)))


async def test_an_embed_shows_the_viewer_alone_and_may_be_framed_by_any_site(client, add_image):
    image = await add_image("a.fits", size=120, OBJECT=HOSTILE)
    response = await client.get(f"/embed/images/{image.id}")
    assert response.status_code == 200
    assert framed_by(response) == "*"
    assert "X-Frame-Options" not in response.headers
    html = await text_of(response)
    assert '<header class="bar">' not in html and "Log in" not in html  # no site chrome
    assert 'id="mosaic-viewer"' in html and "/static/mosaic.js" in html
    assert "<script>alert(1)" not in html and "<img src=x>" not in html
    data = embedded(html)
    [layer] = data["layers"]
    assert layer["name"] == HOSTILE and layer["url"] == f"/images/{image.id}"
    assert layer["pieces"][0]["x"] == 0 and layer["pieces"][0]["width"] == 120
    tile = await client.get(layer["tiles_url"] + "image_files/0/0_0.jpeg")
    assert tile.status_code == 200


async def test_an_embed_of_an_image_without_wcs_still_shows_it(client, archive, tmp_path):
    import numpy as np
    import pyvips

    from tests.helpers import ingest

    path = tmp_path / "photo.png"
    pyvips.Image.new_from_array(np.arange(40 * 30, dtype=np.uint8).reshape(30, 40)).write_to_file(str(path))
    [job] = await ingest(archive, path, visibility="public")
    assert job.state == "done", job.error
    response = await client.get(f"/embed/images/{job.image_ids[0]}")
    assert response.status_code == 200
    [layer] = embedded(await text_of(response))["layers"]
    assert (layer["width"], layer["height"]) == (40, 30)


@pytest.mark.parametrize("path", ["/embed/images/{hidden}", "/embed/images/{missing}", "/embed/images/abc",
                                  "/embed/images/..%2F..%2Fetc", "/embed/images/" + "x" * 200,
                                  "/embed/mosaic?ids={hidden}", "/embed/mosaic?ids={missing}",
                                  "/embed/mosaic?ids={hidden},{missing}", "/embed/mosaic?ids=",
                                  "/embed/mosaic?ids=%3Cscript%3E", "/embed/mosaic"])
async def test_private_missing_and_malformed_embeds_are_the_same_not_available_page(client, add_image, path):
    hidden = await add_image("hidden.fits", size=80, owner="alice", visibility="private")
    reference = await client.get(f"/embed/images/{UNUSED_ID}")
    assert reference.status_code == 404
    expected = await reference.get_data()
    assert b"This view is not available." in expected
    response = await client.get(path.format(hidden=hidden.id, missing=UNUSED_ID))
    assert response.status_code == 404
    assert await response.get_data() == expected
    assert framed_by(response) == "*"  # so the message can show
    assert hidden.id.encode() not in expected


async def test_with_guest_access_off_a_guest_embed_says_not_available_instead_of_a_login_page(
        client, archive, add_image):
    public = await add_image("public.fits", size=80)
    reference = await (await client.get(f"/embed/images/{UNUSED_ID}")).get_data()
    await archive.store.save_site_settings({"guest_access": False})
    for path in (f"/embed/images/{public.id}", f"/embed/mosaic?ids={public.id}"):
        response = await client.get(path)
        assert response.status_code == 404, path  # not a redirect to /login, which no frame may show
        assert await response.get_data() == reference
        assert framed_by(response) == "*"
    # the rest of the site still sends guests to log in
    assert (await client.get(f"/images/{public.id}")).status_code == 302


async def test_a_mosaic_embed_shows_what_may_be_seen_and_nothing_else(client, add_image):
    shown = await add_image("a.fits", size=80)
    hidden = await add_image("hidden.fits", size=80, owner="alice", visibility="private", rotation=5.0)
    response = await client.get(f"/embed/mosaic?ids={hidden.id},{shown.id}")
    assert response.status_code == 200
    assert framed_by(response) == "*"
    html = await text_of(response)
    data = embedded(html)
    assert [layer["id"] for layer in data["layers"]] == [shown.id]
    assert "hidden.fits" not in html and f"/tiles/{hidden.id}/" not in html


async def test_the_owner_may_embed_a_private_image_but_only_in_this_site(client, add_image, make_user):
    hidden = await add_image("hidden.fits", size=80, owner="alice", visibility="private")
    await make_user("alice")
    assert (await log_in(client, "alice")).status_code == 302
    response = await client.get(f"/embed/images/{hidden.id}")
    assert response.status_code == 200
    assert framed_by(response) == "'self'"


@pytest.mark.parametrize("path", ["/", "/login", "/mosaic?ids=Abcdef123456", "/images/Abcdef123456",
                                  "/api/mosaic?ids=bad"])
async def test_other_pages_refuse_to_be_framed(client, path):
    response = await client.get(path)
    assert response.headers["X-Frame-Options"] == "DENY"
    assert framed_by(response) == "'none'"


async def test_tiles_and_static_files_may_not_be_framed_either(client, add_image):
    image = await add_image("a.fits", size=80)
    [layer] = embedded(await text_of(await client.get(f"/embed/images/{image.id}")))["layers"]
    for path in (layer["tiles_url"] + "image_files/0/0_0.jpeg", "/static/embed.js"):
        response = await client.get(path)
        assert response.status_code == 200
        assert response.headers["X-Frame-Options"] == "DENY"
        assert framed_by(response) == "'none'"
        assert response.headers["X-Content-Type-Options"] == "nosniff"


async def test_the_frame_ancestors_setting_is_used_for_public_images(tmp_path: Path, pool, add_image):
    settings = Settings.load(environ={"IMAGEX_FRAME_ANCESTORS": "'self'  https://blog.example.org"},
                             data=str(tmp_path / "var"), workers=2)
    image = await add_image("a.fits", size=80)
    app = create_app(settings, run_jobs=False, pool=pool, passwords=QUICK_PASSWORDS)
    async with app.test_app() as test_app:
        client = test_app.test_client()
        response = await client.get(f"/embed/images/{image.id}")
        assert response.status_code == 200
        assert framed_by(response) == "'self' https://blog.example.org"
        missing = await client.get(f"/embed/images/{UNUSED_ID}")
        assert framed_by(missing) == "'self' https://blog.example.org"


@pytest.mark.parametrize(("value", "expected"), [
    ("*", "*"),
    ("'self'", "'self'"),
    ("'none'", "'none'"),
    ("https:", "https:"),
    ("https://a.example.org  http://localhost:8888", "https://a.example.org http://localhost:8888"),
    ("*.example.org:*", "*.example.org:*"),
    ("https://example.org/blog/", "https://example.org/blog/"),
])
def test_frame_ancestors_setting_accepts_csp_sources(value, expected):
    assert Settings.load(environ={"IMAGEX_FRAME_ANCESTORS": value}).frame_ancestors == expected


@pytest.mark.parametrize(("value", "message"), [
    ("https://a.org; script-src *", "'https://a.org;' is not a frame-ancestors source"),
    ("https://a.org,https://b.org", "'https://a.org,https://b.org' is not a frame-ancestors source"),
    ("self", None),
    ("'unsafe-inline'", "\"'unsafe-inline'\" is not a frame-ancestors source"),
    ("'none' https://a.org", "'none' cannot be combined with other sources"),
    # line breaks only separate sources (the header is rebuilt with single spaces); x=1 is no source
    ("https://a.org\r\nSet-Cookie: x=1", "'x=1' is not a frame-ancestors source"),
])
def test_frame_ancestors_setting_refuses_what_is_not_a_source(value, message):
    if message is None:  # a bare host name is a valid CSP host source
        assert Settings.load(environ={"IMAGEX_FRAME_ANCESTORS": value}).frame_ancestors == value
        return
    with pytest.raises(SettingError) as caught:
        Settings.load(environ={"IMAGEX_FRAME_ANCESTORS": value})
    assert str(caught.value).startswith("IMAGEX_FRAME_ANCESTORS: ")
    assert message in str(caught.value)


# -- planes (issue 14) --------------------------------------------------------------------------------------

CUBE_PLANES = 4
SPECTRAL = {"CTYPE3": "FREQ", "CUNIT3": "Hz", "CRVAL3": 1.4204e9, "CDELT3": 2.5e5, "CRPIX3": 1.0}


@pytest.fixture
async def cube(add_image: Any) -> Any:
    """A public 48x40x4 cube along FREQ: plane k is 100 (k + 1) everywhere."""
    import numpy as np

    data = np.stack([np.full((40, 48), 100.0 * (k + 1), dtype=np.float32) for k in range(CUBE_PLANES)])
    return await add_image("cube.fits", data=data, **SPECTRAL)


def plane_slider(html: str) -> dict[str, str]:
    """The embed's plane slider: its range input's attributes and the label it starts with."""
    form = re.search(r'<form class="embed-planes" id="plane-controls"[^>]*>(.*?)</form>', html, re.S)
    assert form, "no plane slider in the embed"
    slider = re.search(r'<input name="plane" type="range"([^>]*)>', form.group(1))
    label = re.search(r'<output name="plane_label" id="plane-label"[^>]*>(.*?)</output>', form.group(1))
    assert slider and label and 'name="play"' in form.group(1)
    return {**dict(re.findall(r'(\w+)="([^"]*)"', slider.group(1))), "label": label.group(1)}


OPENED = [("", "0", "1 of 4"), ("?plane=1", "0", "1 of 4"), ("?plane=3", "2", "3 of 4"),
          ("?plane=4", "3", "4 of 4"), ("?plane=2.0", "1", "2 of 4")]


@pytest.mark.parametrize(("query", "value", "label"), OPENED)
async def test_the_embed_of_a_cube_has_a_plane_slider_opening_at_the_plane_asked_for(
        client, cube, query, value, label):
    response = await client.get(f"/embed/images/{cube.id}{query}")
    assert response.status_code == 200
    html = await text_of(response)
    slider = plane_slider(html)
    assert (slider["min"], slider["max"], slider["value"], slider["label"]) == ("0", "3", value, label)
    assert "/static/planes.js" in html
    data = embedded(html)
    assert data["plane"] == int(value)
    # what the slider's script names each plane with (the frequency in Hz along FREQ)
    assert data["planes"]["count"] == CUBE_PLANES and data["planes"]["axis"] == "FREQ"
    assert data["planes"]["unit"] == "Hz"
    assert data["planes"]["values"] == pytest.approx([1.4204e9 + 2.5e5 * k for k in range(CUBE_PLANES)])
    # the tiles of a plane are the dynamic ones of the image's own display
    [layer] = data["layers"]
    plane_tiles = f"{layer['tiles_url']}planes/2/display/{layer['scaling']}~grey/"
    tile = await client.get(plane_tiles + "image_files/0/0_0.jpeg")
    assert tile.status_code == 200


@pytest.mark.parametrize("query", ["", "?plane=1"])
async def test_the_embed_of_an_image_without_planes_has_no_slider(client, add_image, query):
    image = await add_image("a.fits", size=80)
    response = await client.get(f"/embed/images/{image.id}{query}")
    assert response.status_code == 200
    html = await text_of(response)
    assert "plane-controls" not in html and 'name="plane"' not in html and "planes.js" not in html
    assert embedded(html)["planes"] is None


BAD_PLANES = [
    ("?plane=5", "there is no plane 5 in this image: it has 4 (counted from 1)"),
    ("?plane=0", "plane must be 1 or more"),
    ("?plane=-2", "plane must be 1 or more"),
    ("?plane=1.5", "plane must be a whole number, not &#39;1.5&#39;"),
    ("?plane=two", "plane must be a number, not &#39;two&#39;"),
    ("?plane=", "plane must be a number, not &#39;&#39;"),
    ("?plane=nan", "plane must be a finite number, not &#39;nan&#39;"),
]


@pytest.mark.parametrize(("query", "message"), BAD_PLANES)
async def test_a_bad_plane_is_a_400_saying_why_in_a_page_the_frame_shows(client, cube, query, message):
    response = await client.get(f"/embed/images/{cube.id}{query}")
    assert response.status_code == 400
    html = await text_of(response)
    assert f'<p class="embed-unavailable" role="status">{message}</p>' in html
    assert framed_by(response) == "*"  # the embedding site sees the message
    assert "mosaic-data" not in html


async def test_a_plain_image_has_only_plane_1(client, add_image):
    image = await add_image("a.fits", size=80)
    response = await client.get(f"/embed/images/{image.id}?plane=2")
    assert response.status_code == 400
    assert "there is no plane 2 in this image: it has 1 (counted from 1)" in await text_of(response)


@pytest.mark.parametrize("query", ["?plane=2", "?plane=9", "?plane=x"])
async def test_a_private_cube_is_not_available_to_others_whatever_the_plane(
        client, add_image, make_user, query):
    import numpy as np

    data = np.zeros((CUBE_PLANES, 40, 48), dtype=np.float32)
    hidden = await add_image("hidden.fits", data=data, owner="alice", visibility="private", **SPECTRAL)
    expected = await (await client.get(f"/embed/images/{UNUSED_ID}")).get_data()
    response = await client.get(f"/embed/images/{hidden.id}{query}")
    assert response.status_code == 404
    assert await response.get_data() == expected
    # its owner sees it, framed only by this site
    await make_user("alice")
    assert (await log_in(client, "alice")).status_code == 302
    owner = await client.get(f"/embed/images/{hidden.id}?plane=2")
    assert owner.status_code == 200 and plane_slider(await text_of(owner))["label"] == "2 of 4"
    assert framed_by(owner) == "'self'"
