"""`/mosaic` and its JSON twin `/api/mosaic`: placements from the WCS, only images the asker may view (a
hidden image left out exactly as a missing one), images without a celestial WCS left out with a notice,
and precise messages for bad or too many ids."""

from __future__ import annotations

import json
import re
from html import unescape
from typing import Any

import numpy as np
import pytest
from astropy.io import fits

from app.routes.mosaic import MAX_IMAGES
from tests.helpers import ingest, log_in
from tests.routes.pages import text_of

HOSTILE = '<script>alert(1)</script>"><img src=x>'
UNUSED_ID = "Zz9Zz9Zz9Zz9"  # well formed, same length as a real id, and no such image


def mosaic_data(html: str) -> dict[str, Any]:
    match = re.search(r'<script type="application/json" id="mosaic-data">(.*?)</script>', html, re.S)
    assert match, "no mosaic data in the page"
    return dict(json.loads(match.group(1)))


async def api(client: Any, ids: str, **options: str) -> tuple[int, dict[str, Any]]:
    response = await client.get("/api/mosaic", query_string={"ids": ids, **options})
    return response.status_code, await response.get_json()


async def test_images_are_placed_relative_to_a_chosen_reference(client, add_image):
    first = await add_image("a.fits", size=200)
    turned = await add_image("b.fits", size=160, rotation=30.0)
    status, view = await api(client, f"{first.id},{turned.id}", ref=first.id)
    assert status == 200, view
    assert [layer["id"] for layer in view["layers"]] == [first.id, turned.id]
    assert view["reference"] == {"id": first.id, "name": first.name, "width": 200, "height": 200}
    assert view["notices"] == []
    [identity] = view["layers"][0]["pieces"]
    assert identity["x"] == pytest.approx(0, abs=1e-6) and identity["width"] == pytest.approx(200)
    assert identity["degrees"] == pytest.approx(0, abs=1e-6) and identity["flipped"] is False
    [piece] = view["layers"][1]["pieces"]
    # both share a centre on the sky: the turned one's bounds are centred on the first's centre
    assert piece["x"] + piece["width"] / 2 == pytest.approx(100, abs=0.05)
    assert piece["y"] + piece["height"] / 2 == pytest.approx(100, abs=0.05)
    assert piece["degrees"] == pytest.approx(-30.0, abs=0.05)
    assert view["layers"][1]["error_px"] < 0.5
    assert view["frame"]["ref"] == first.id and view["frame"]["north_up"] is False
    assert (view["frame"]["width"], view["frame"]["height"]) == (200, 200)


async def test_by_default_the_frame_is_north_up_whichever_image_comes_first(client, add_image):
    turned = await add_image("b.fits", size=160, rotation=30.0)
    upright = await add_image("a.fits", size=200)
    status, view = await api(client, f"{turned.id},{upright.id}")
    assert status == 200, view
    assert view["reference"] is None and view["warning"] is None
    frame = view["frame"]
    assert frame["north_up"] is True and frame["ref"] is None
    # the frame is at the images' pixel scale and holds the whole footprint: the upright image fills it
    [upright_piece] = view["layers"][1]["pieces"]
    assert upright_piece["degrees"] == pytest.approx(0, abs=0.05)
    assert upright_piece["scale"] == pytest.approx(1, abs=1e-3)
    assert upright_piece["x"] + 100 == pytest.approx(frame["width"] / 2, abs=1)
    assert upright_piece["y"] + 100 == pytest.approx(frame["height"] / 2, abs=1)
    [turned_piece] = view["layers"][0]["pieces"]
    assert turned_piece["degrees"] == pytest.approx(-30.0, abs=0.05)
    assert frame["celestial"]["nx"] >= 1 and frame["celestial"]["max_error_arcsec"] < 0.1


async def test_go_to_places_a_position_in_the_mosaic_frame(client, add_image):
    first = await add_image("a.fits", size=120)
    second = await add_image("b.fits", size=120, rotation=40.0)
    ids = f"{first.id},{second.id}"
    _, view = await api(client, ids)
    located = await client.get(f"/api/images/{first.id}/locate", query_string={"ra": "150.1", "dec": "2.2"})
    centre = await located.get_json()
    for options in ({}, {"ref": second.id}):
        response = await client.get("/api/mosaic/locate", query_string={"ids": ids, "ra": str(centre["ra"]),
                                                                       "dec": str(centre["dec"]), **options})
        answer = await response.get_json()
        assert response.status_code == 200, answer
        assert answer["ra"] == pytest.approx(centre["ra"])
    response = await client.get("/api/mosaic/locate", query_string={"ids": ids, "ra": "150.1", "dec": "89"})
    assert response.status_code == 422
    assert view["frame"]["north_up"] is True


async def test_images_too_far_apart_get_a_warning_naming_them(client, add_image):
    from app.samples import FIELD_DEC, FIELD_RA

    here = await add_image("here.fits", size=80, OBJECT=HOSTILE)
    far = await add_image("far.fits", size=80, CRVAL1=(FIELD_RA + 120.0) % 360, CRVAL2=-FIELD_DEC)
    status, view = await api(client, f"{here.id},{far.id}")
    assert status == 200
    assert view["layers"] == [] and view["frame"] is None
    warning = view["warning"]
    assert f"{HOSTILE} ({here.id})" in warning and f"Test field ({far.id})" in warning
    assert "too far apart on the sky to show together" in warning and "120°" in warning
    html = await text_of(await client.get(f"/mosaic?ids={here.id},{far.id}"))
    assert 'id="mosaic-warning"' in html and "<script>alert(1)" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html and far.id in html
    assert 'id="mosaic-viewer"' not in html and "None of these images can be shown" not in html
    # the embed says the same in its frame
    embedded = await client.get(f"/embed/mosaic?ids={here.id},{far.id}")
    frame = await text_of(embedded)
    assert embedded.status_code == 400 and "too far apart on the sky to show together" in frame
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in frame and "<script>alert(1)" not in frame
    # with one of them as the reference, the other is left out with its reason
    _, chosen = await api(client, f"{here.id},{far.id}", ref=here.id)
    assert [layer["id"] for layer in chosen["layers"]] == [here.id]
    assert chosen["warning"] is None and chosen["notices"] == [
        f"Test field ({far.id}) is left out: it is too far from the reference to place in its projection"]


async def test_common_scaling_gives_every_image_the_same_interval_and_the_seam_shrinks(client, add_image):
    rng = np.random.default_rng(7)
    sky = rng.normal(100.0, 5.0, (96, 96))
    # the same sky, but half of the second image holds a bright nebula: its own interval is shifted up, so
    # its sky shows darker than the first image's, a seam where they overlap
    nebula = rng.normal(100.0, 5.0, (96, 96))
    nebula[:, :48] += 400.0
    plain = await add_image("plain.fits", size=96, data=sky)
    bright = await add_image("nebula.fits", size=96, data=nebula)
    ids = f"{plain.id},{bright.id}"
    _, own = await api(client, ids)
    assert own["scaling"] == "image" and own["common"] is None
    _, common = await api(client, ids, scaling="common")
    assert common["scaling"] == "common"
    low, high = common["common"]["low"], common["common"]["high"]
    assert low < 100 < high
    [first, second] = common["layers"]
    assert first["scaling"] == second["scaling"] and first["scaling"].startswith("m")

    async def sky_grey(view: dict[str, Any]) -> list[float]:
        """The mean grey of the sky-only half (display columns 56 to 96) of each image's full-size tile."""
        greys = []
        for layer in view["layers"]:
            full_size = f"{layer['tiles_url']}display/{layer['scaling']}~grey/image_files/7/0_0.jpeg"
            tile = await client.get(full_size)
            assert tile.status_code == 200
            greys.append(jpeg_mean(await tile.get_data(), 56, 40))
        return greys

    own_greys, common_greys = await sky_grey(own), await sky_grey(common)
    assert abs(common_greys[1] - common_greys[0]) < 3
    assert abs(common_greys[1] - common_greys[0]) < abs(own_greys[1] - own_greys[0]) / 4
    page = await text_of(await client.get(f"/mosaic?ids={ids}&scaling=common"))
    assert 'id="mosaic-common"' in page and 'value="common" selected' in page


def jpeg_mean(data: bytes, left: int, width: int) -> float:
    import pyvips

    image = pyvips.Image.new_from_buffer(data, "")
    return float(image.crop(left, 0, width, image.height).avg())


    return float(pyvips.Image.new_from_buffer(data, "").avg())


async def test_a_long_mosaic_placed_in_parallel_parts_is_placed_the_same(client, add_image, monkeypatch):
    from app.routes import mosaic

    images = [await add_image(f"{n}.fits", size=90, rotation=15.0 * n) for n in range(4)]
    ids = ",".join(image.id for image in images)
    _, whole = await api(client, ids)
    monkeypatch.setattr(mosaic, "_PART", 1)  # one image per pool task
    _, parts = await api(client, ids)
    assert parts == whole
    assert [round(layer["pieces"][0]["degrees"]) for layer in parts["layers"]] == [0, -15, -30, -45]


async def test_tile_urls_are_signed_for_each_image_and_load(client, add_image):
    images = [await add_image(f"{name}.fits", size=100, rotation=turn)
              for name, turn in (("a", 0.0), ("b", 20.0))]
    _, view = await api(client, ",".join(image.id for image in images))
    for image, layer in zip(images, view["layers"], strict=True):
        assert layer["tiles_url"].startswith(f"/tiles/{image.id}/") and layer["tiles_url"].endswith("/")
        tile = await client.get(layer["tiles_url"] + "image_files/0/0_0.jpeg")
        assert tile.status_code == 200
        assert tile.headers["Content-Type"] == "image/jpeg"
    assert view["tile_format"] == {"format": "jpeg", "tile_size": 254, "overlap": 1}
    # a colormap keeps the image's own interval and stretch: those of its default display
    for image, layer in zip(images, view["layers"], strict=True):
        record = await (await client.get(f"/api/images/{image.id}")).get_json()
        interval, stretch, colormap = record["display_default"].split("~")
        assert layer["scaling"] == f"{interval}~{stretch}" and colormap == "grey"
        display = await client.get(f"{layer['tiles_url']}display/{layer['scaling']}~viridis/image.dzi")
        assert display.status_code == 200
    # a token is bound to its image: one image's token does not open the other's tiles
    swapped = view["layers"][0]["tiles_url"].replace(images[0].id, images[1].id)
    assert (await client.get(swapped + "image_files/0/0_0.jpeg")).status_code == 403


async def test_a_private_image_is_left_out_exactly_like_a_missing_one(client, add_image):
    shown = await add_image("public.fits", size=80)
    hidden = await add_image("hidden.fits", size=80, owner="alice", visibility="private", rotation=10.0)
    assert len(hidden.id) == len(UNUSED_ID)
    status_hidden, with_hidden = await api(client, f"{shown.id},{hidden.id}")
    status_missing, with_missing = await api(client, f"{shown.id},{UNUSED_ID}")
    assert status_hidden == status_missing == 200
    assert (json.dumps(with_hidden).replace(hidden.id, "ID")
            == json.dumps(with_missing).replace(UNUSED_ID, "ID"))
    assert with_hidden["notices"] == [f"no such image: {hidden.id}"]
    assert [layer["id"] for layer in with_hidden["layers"]] == [shown.id]

    page_hidden = await text_of(await client.get(f"/mosaic?ids={shown.id},{hidden.id}"))
    page_missing = await text_of(await client.get(f"/mosaic?ids={shown.id},{UNUSED_ID}"))
    assert page_hidden.replace(hidden.id, "ID") == page_missing.replace(UNUSED_ID, "ID")
    assert "hidden.fits" not in page_hidden


async def test_the_owner_sees_their_private_image_in_the_mosaic(client, add_image, make_user):
    shown = await add_image("public.fits", size=80)
    hidden = await add_image("hidden.fits", size=80, owner="alice", visibility="private", rotation=10.0)
    await make_user("alice")
    assert (await log_in(client, "alice")).status_code == 302
    _, view = await api(client, f"{hidden.id},{shown.id}")
    assert [layer["id"] for layer in view["layers"]] == [hidden.id, shown.id]
    assert view["layers"][0]["public"] is False and view["layers"][1]["public"] is True


async def test_the_first_image_the_asker_may_not_see_is_not_the_reference(client, add_image):
    hidden = await add_image("hidden.fits", size=80, owner="alice", visibility="private")
    shown = await add_image("shown.fits", size=120)
    _, view = await api(client, f"{hidden.id},{shown.id}")
    assert view["frame"]["north_up"] is True and [layer["id"] for layer in view["layers"]] == [shown.id]
    # nor can it be chosen: asked for as the reference, it is refused as a missing one is
    status_hidden, refused = await api(client, f"{hidden.id},{shown.id}", ref=hidden.id)
    status_missing, missing = await api(client, f"{UNUSED_ID},{shown.id}", ref=UNUSED_ID)
    assert status_hidden == status_missing == 400
    assert refused["error"].replace(hidden.id, "ID") == missing["error"].replace(UNUSED_ID, "ID")


async def test_an_image_without_celestial_wcs_is_left_out_with_a_notice(client, archive, add_image, tmp_path):
    placed = await add_image("sky.fits", size=80)
    path = tmp_path / "in" / "lab.fits"
    header = fits.Header([("OBJECT", "Lab frame"), ("CTYPE1", "LINEAR"), ("CTYPE2", "LINEAR")])
    fits.PrimaryHDU(np.arange(64 * 64, dtype=np.float32).reshape(64, 64), header).writeto(path)
    [job] = await ingest(archive, path, visibility="public")
    [lab] = job.image_ids
    _, view = await api(client, f"{lab},{placed.id}")
    assert [layer["id"] for layer in view["layers"]] == [placed.id]
    assert view["frame"] is not None
    assert view["notices"] == [f"Lab frame ({lab}) is left out: it has no celestial WCS"]
    _, alone = await api(client, lab)
    assert alone["layers"] == [] and alone["frame"] is None
    page = await text_of(await client.get(f"/mosaic?ids={lab}"))
    assert "None of these images can be shown as a mosaic." in page


@pytest.mark.parametrize(("ids", "message"), [
    ("", "ids: name the images to show, separated by commas (e.g. ?ids=ID1,ID2)"),
    (" , ,", "ids: name the images to show, separated by commas (e.g. ?ids=ID1,ID2)"),
    ("abc", "ids: 'abc' is not an image id (6 to 32 letters and digits)"),
    ("Abcdefgh,../../etc/passwd", "ids: '../../etc/passwd' is not an image id (6 to 32 letters and digits)"),
    ("x" * 33, f"ids: {'x' * 33!r} is not an image id (6 to 32 letters and digits)"),
    ("y" * 100, f"ids: {'y' * 40 + '...'!r} is not an image id (6 to 32 letters and digits)"),
    ("abc def", "ids: 'abc def' is not an image id (6 to 32 letters and digits)"),
])
async def test_bad_ids_are_refused_with_a_precise_message(client, ids, message):
    status, body = await api(client, ids)
    assert status == 400
    assert body["error"] == message


async def test_missing_ids_parameter_is_refused(client):
    response = await client.get("/api/mosaic")
    assert response.status_code == 400
    assert (await response.get_json())["error"].startswith("ids: name the images to show")


async def test_hostile_ids_are_escaped_on_the_error_page(client):
    response = await client.get("/mosaic", query_string={"ids": HOSTILE})
    assert response.status_code == 400
    html = await text_of(response)
    assert "<script>alert(1)" not in html and "<img src=x>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html


async def test_too_many_ids_are_refused_and_the_limit_is_accepted(client):
    too_many = ",".join(f"Img{n:06d}" for n in range(MAX_IMAGES + 1))
    status, body = await api(client, too_many)
    assert status == 400
    assert body["error"] == (f"ids: a mosaic shows at most {MAX_IMAGES} images; "
                             f"{MAX_IMAGES + 1} were asked for")
    # duplicates count once
    status, view = await api(client, ",".join(["Img000001"] * (MAX_IMAGES + 5)))
    assert status == 200 and view["ids"] == ["Img000001"]
    at_limit = ",".join(f"Img{n:06d}" for n in range(MAX_IMAGES))
    status, view = await api(client, at_limit)
    assert status == 200
    assert view["layers"] == []
    [notice] = view["notices"]
    assert notice.startswith("no such images: Img000000, Img000001,")
    assert notice.endswith(f"and {MAX_IMAGES - 20} more")


async def test_the_page_carries_the_placements_and_escapes_hostile_names(client, add_image):
    first = await add_image("a.fits", size=100, OBJECT=HOSTILE)
    second = await add_image("b.fits", size=100, rotation=45.0)
    response = await client.get(f"/mosaic?ids={first.id},{second.id}")
    assert response.status_code == 200
    html = await text_of(response)
    assert "<script>alert(1)" not in html and "<img src=x>" not in html
    data = mosaic_data(html)
    _, view = await api(client, f"{first.id},{second.id}")
    assert data == view
    assert data["layers"][0]["name"] == HOSTILE
    assert 'src="/static/mosaic.js"' in html and 'id="mosaic-viewer"' in html
    # the page links its JSON twin and its embed
    assert f"/api/mosaic?ids={first.id}%2C{second.id}" in unescape(html)
    assert f"/embed/mosaic?ids={first.id}%2C{second.id}" in unescape(html)


async def test_guests_are_sent_to_log_in_when_guest_access_is_off(client, archive, add_image):
    image = await add_image("a.fits", size=80)
    await archive.store.save_site_settings({"guest_access": False})
    response = await client.get(f"/mosaic?ids={image.id}")
    assert response.status_code == 302
    status, body = await api(client, image.id)
    assert status == 401 and "guest access is off" in body["error"]
