"""Dynamic tiles and pixel values through the real routes: `/tiles/<id>/<token>/display/<spec>/...` and
`/tiles/<id>/<token>/pixel/<x>_<y>`. Same token as the static pyramid, same geometry, cached on disk,
built lazily for images that have no science pyramid yet."""

from __future__ import annotations

import asyncio
import time
from html import unescape
from pathlib import Path

import numpy as np
import pytest
import pyvips

from app import tokens
from app.ingest.removal import delete_image
from app.tiles import render, science
from tests.helpers import ingest, log_in
from tests.routes.pages import attribute, dzi_facts, text_of

DEEPEST = 9  # the 300x300 `image` fixture: levels 0-9, 2x2 tiles at the deepest
SPEC = "zscale~asinh~viridis"


@pytest.fixture
def base(archive, image) -> str:
    return f"/tiles/{image.id}/{archive.tile_token(image.id)}"


def decode(body: bytes) -> np.ndarray:
    tile = pyvips.Image.new_from_buffer(body, "")
    return np.ndarray(buffer=tile.write_to_memory(), dtype=np.uint8,
                      shape=(tile.height, tile.width, tile.bands))


async def test_ingest_writes_the_science_pyramid_beside_the_dzi(archive, image):
    folder = archive.tile_folder(image.id)
    path = folder / science.NAME
    assert path.is_file() and (folder / "image.dzi").is_file()
    full = science.open_page(str(path), 0)
    assert (full.width, full.height, str(full.format)) == (300, 300, "float")
    assert not (archive.settings.tiles_dir / ".work").exists() or \
        not list((archive.settings.tiles_dir / ".work").iterdir())


EXACT_VALUES = [
    # (FITS data type, a value that a 32-bit float would round, whether an exact copy is kept)
    ("int32", 16777217, True),
    ("float64", 1.0000000001, True),
    ("int16", -32768, False),
    ("float32", np.float32(0.1), False),
]


@pytest.mark.parametrize(("dtype", "value", "exact"), EXACT_VALUES, ids=[row[0] for row in EXACT_VALUES])
async def test_the_pixel_readout_gives_the_value_in_the_file_exactly(client, archive, add_image, dtype, value,
                                                                    exact):
    data = np.arange(48 * 40, dtype=dtype).reshape(40, 48)
    data[30, 7] = value  # FITS pixel x 8, y 31
    image = await add_image("exact.fits", data=data, dtype=dtype)
    assert (archive.tile_folder(image.id) / science.EXACT_NAME).is_file() is exact
    token = archive.tile_token(image.id)
    # the display has the top row first: FITS row 31 of 40 is display row 9
    answer = await (await client.get(f"/tiles/{image.id}/{token}/pixel/7_9")).get_json()
    assert answer == {"x": 8, "y": 31, "value": float(value)}
    # and a dynamic tile renders from the 64-bit values as from 32-bit ones
    response = await client.get(f"/tiles/{image.id}/{token}/display/minmax~linear~grey/image.dzi")
    assert response.status_code == 200


async def test_the_pixel_table_gives_the_5x5_values_around_a_pixel(client, archive, add_image):
    data = np.arange(40 * 48, dtype=np.float32).reshape(40, 48)
    data[20, 10] = np.nan
    image = await add_image("table.fits", data=data)
    base = f"/tiles/{image.id}/{archive.tile_token(image.id)}"
    # display row 19 is FITS row 21 (the 20th from the bottom, 0-based)
    answer = await (await client.get(f"{base}/block/10_19")).get_json()
    assert (answer["x"], answer["y"]) == (11, 21)
    assert answer["columns"] == [9, 10, 11, 12, 13] and answer["rows"] == [23, 22, 21, 20, 19]
    expected = [[None if np.isnan(data[row - 1, column - 1]) else float(data[row - 1, column - 1])
                 for column in answer["columns"]] for row in answer["rows"]]
    assert answer["values"] == expected and answer["values"][2][2] is None  # the NaN at the centre
    # cut at the image's corner: 3x3
    corner = await (await client.get(f"{base}/block/0_39")).get_json()
    assert corner["columns"] == [1, 2, 3] and corner["rows"] == [3, 2, 1]
    assert corner["values"][2] == [0.0, 1.0, 2.0]
    outside = await client.get(f"{base}/block/48_0")
    assert outside.status_code == 404 and "outside the image" in await outside.get_data(as_text=True)
    forged = await client.get(f"/tiles/{image.id}/{archive.tile_token(image.id)[:-1]}x/block/1_1")
    assert forged.status_code == 403


async def test_each_plane_of_a_cube_has_its_own_tiles_and_values(client, archive, write_fits):
    cube = np.zeros((3, 40, 48), dtype=np.float32)
    for k in range(3):
        cube[k, :, 16 * k:16 * (k + 1)] = 100.0 * (k + 1)  # plane k is bright in its own third
    path = write_fits("cube.fits", data=cube)
    [job] = await ingest(archive, path, visibility="public")
    image = await archive.store.get_image(job.image_ids[0])
    base = f"/tiles/{image.id}/{archive.tile_token(image.id)}"
    listed = await (await client.get(f"/api/images/{image.id}")).get_json()
    assert listed["planes"]["count"] == 3
    # display row 9 is FITS row 31; FITS x 40 lies in the last third
    for k in (0, 2):
        prefix = f"planes/{k}/" if k else ""
        answer = await (await client.get(f"{base}/{prefix}pixel/39_9")).get_json()
        assert answer["value"] == (300.0 if k == 2 else 0.0)
    response = await client.get(f"{base}/planes/2/display/minmax~linear~grey/image_files/6/0_0.jpeg")
    assert response.status_code == 200
    shown = decode(await response.get_data())[:, :, 0].astype(int)
    assert shown[:, 34:46].mean() > 240 and shown[:, 2:30].mean() < 15
    folder = archive.tile_folder(image.id)
    assert (folder / "planes" / "2" / science.NAME).is_file()  # built on first use
    assert not (folder / "planes" / "1").exists()  # and only for the planes asked for
    answer = await (await client.get(f"{base}/planes/1/pixel/20_9")).get_json()
    assert answer == {"x": 21, "y": 31, "value": 200.0}
    missing = await client.get(f"{base}/planes/3/pixel/0_0")
    assert missing.status_code == 404 and "it has 3" in await missing.get_data(as_text=True)
    assert (await client.get(f"{base}/planes/0/pixel/0_0")).status_code == 404  # plane 0 has no prefix


async def test_the_display_controls_offer_exactly_what_the_server_renders(client, image):
    """One list of stretches, colormaps and intervals: the page's controls (which its script reads) are
    made from the server's, and every stretch and colormap offered renders."""
    import re

    html = await text_of(await client.get(f"/images/{image.id}"))
    selects = {name: re.search(rf'<select name="{name}">(.*?)</select>', html, re.S).group(1)
               for name in ("interval", "stretch", "cmap")}
    offered = {name: re.findall(r'<option value="([^"]+)"', options) for name, options in selects.items()}
    assert offered["stretch"] == list(render.STRETCHES)
    assert offered["cmap"] == list(render.colormaps.NAMES)
    assert offered["interval"] == ["zscale", "minmax", "percentile", "manual"]
    assert "adaptive histogram equalisation" in html and "min\u2013max" in html
    for stretch in offered["stretch"]:
        assert render.parse(f"zscale~{stretch}~grey").stretch == stretch
    for cmap in offered["cmap"]:
        assert render.parse(f"minmax~linear~{cmap}_r").colormap == f"{cmap}_r"


async def test_the_dynamic_dzi_is_the_static_one(client, base):
    static = await text_of(await client.get(f"{base}/image.dzi"))
    response = await client.get(f"{base}/display/{SPEC}/image.dzi")
    assert response.status_code == 200 and response.content_type == "application/xml"
    assert await text_of(response) == static
    assert dzi_facts(static) == {"format": "jpeg", "tile_size": 254, "overlap": 1, "width": 300,
                                 "height": 300}


@pytest.mark.parametrize(("level", "name", "size"), [
    (DEEPEST, "0_0", (255, 255)), (DEEPEST, "1_0", (47, 255)), (DEEPEST, "0_1", (255, 47)),
    (DEEPEST, "1_1", (47, 47)), (8, "0_0", (150, 150)), (0, "0_0", (1, 1)),
])
async def test_dynamic_tiles_have_the_static_tiles_geometry(client, base, level, name, size):
    static = await client.get(f"{base}/image_files/{level}/{name}.jpeg")
    dynamic = await client.get(f"{base}/display/{SPEC}/image_files/{level}/{name}.jpeg")
    assert dynamic.status_code == 200 and dynamic.content_type == "image/jpeg"
    assert dynamic.headers["Cache-Control"].startswith("public, max-age=")
    ours, theirs = decode(await dynamic.get_data()), decode(await static.get_data())
    assert ours.shape[:2] == theirs.shape[:2] == (size[1], size[0])
    assert ours.shape[2] == 3 and theirs.shape[2] == 1  # viridis is in colour, the static pyramid grey


async def test_another_stretch_gives_other_pixels_and_a_cached_tile_is_served_identically(client, archive,
                                                                                         image, base):
    name = f"image_files/{DEEPEST}/0_0.jpeg"
    static = decode(await (await client.get(f"{base}/{name}")).get_data())
    cold = await client.get(f"{base}/display/zscale~sqrt~grey/{name}")
    body = await cold.get_data()
    dynamic = decode(body)
    assert np.abs(dynamic.astype(int) - static.astype(int)).mean() > 10
    cached = archive.tile_folder(image.id) / "display" / "zscale~sqrt~grey" / name
    assert cached.read_bytes() == body
    again = await client.get(f"{base}/display/zscale~sqrt~grey/{name}")
    assert await again.get_data() == body and again.headers["ETag"] == cold.headers["ETag"]
    unchanged = await client.get(f"{base}/display/zscale~sqrt~grey/{name}",
                                 headers={"If-None-Match": cold.headers["ETag"]})
    assert unchanged.status_code == 304 and await unchanged.get_data() == b""
    scale = archive.tile_folder(image.id) / "display" / "zscale~sqrt~grey" / "scale.json"
    assert scale.is_file()


async def test_the_default_spec_looks_like_the_static_pyramid(client, archive, image, base):
    spec = render.default_spec(image.display).text
    assert spec == "zscale~linear~grey"
    name = f"image_files/{DEEPEST}/0_0.jpeg"
    static = decode(await (await client.get(f"{base}/{name}")).get_data()).astype(int)
    dynamic = decode(await (await client.get(f"{base}/display/{spec}/{name}")).get_data()).astype(int)
    assert np.abs(dynamic - static).mean() < 3  # JPEG noise only


async def test_concurrent_requests_for_one_cold_tile_agree(client, archive, image, base):
    name = f"image_files/{DEEPEST}/1_1.jpeg"
    responses = await asyncio.gather(*(client.get(f"{base}/display/p99.5~histeq~magma/{name}")
                                       for _ in range(6)))
    bodies = {await response.get_data() for response in responses}
    assert [r.status_code for r in responses] == [200] * 6 and len(bodies) == 1
    folder = archive.tile_folder(image.id) / "display" / "p99.5~histeq~magma"
    assert (folder / name).read_bytes() in bodies
    leftovers = [p for p in folder.rglob(".*") if not p.name.endswith(".lock")]
    assert leftovers == []


async def test_a_cached_tile_needs_no_catalog(client, archive, image, base):
    name = f"display/{SPEC}/image_files/{DEEPEST}/0_0.jpeg"
    first = await (await client.get(f"{base}/{name}")).get_data()
    await archive.store.delete_images([image.id])  # the record gone, the files still there
    again = await client.get(f"{base}/{name}")
    assert again.status_code == 200 and await again.get_data() == first


async def test_an_image_without_a_science_pyramid_gets_one_on_first_use(client, archive, image, base):
    folder = archive.tile_folder(image.id)
    (folder / science.NAME).unlink()  # as an image ingested before science pyramids existed
    response = await client.get(f"{base}/display/minmax~log~heat/image_files/{DEEPEST}/1_0.jpeg")
    assert response.status_code == 200
    assert (folder / science.NAME).is_file()
    assert decode(await response.get_data()).shape == (255, 47, 3)
    (folder / science.NAME).unlink()
    pixel = await client.get(f"{base}/pixel/0_0")
    assert pixel.status_code == 200 and (folder / science.NAME).is_file()


async def test_without_science_pyramid_or_original_the_answer_says_why(client, archive, image, base):
    (archive.tile_folder(image.id) / science.NAME).unlink()
    Path(image.path).unlink()
    response = await client.get(f"{base}/display/{SPEC}/image_files/{DEEPEST}/0_0.jpeg")
    assert response.status_code == 410
    assert f"the original file is no longer at {image.path}" in await text_of(response)


async def test_deleting_the_image_removes_its_display_cache(client, archive, image, base):
    assert (await client.get(f"{base}/display/{SPEC}/image_files/{DEEPEST}/0_0.jpeg")).status_code == 200
    folder = archive.tile_folder(image.id)
    assert (folder / "display" / SPEC).is_dir()
    await delete_image(archive, image)
    assert not folder.exists()
    response = await client.get(f"{base}/display/{SPEC}/image_files/{DEEPEST}/1_1.jpeg")
    assert response.status_code == 403  # the link died with the image: nothing is rendered for it
    assert "revoked" in await response.get_data(as_text=True)
    assert not folder.exists() and not archive.tile_root(image.id).exists()


# --- tokens and permissions -------------------------------------------------------------------------------

async def test_forged_expired_and_foreign_tokens_are_refused(client, archive, image, add_image):
    ttl = archive.settings.tile_token_ttl
    good = archive.tile_token(image.id)
    expires, gen, digest = good.split(".")
    other = await add_image("other.fits", OBJECT="Other")
    bad = [f"{expires}.{gen}.{digest[:-1]}{'0' if digest[-1] != '0' else '1'}",
           tokens.make(archive.secret, image.id, gen, ttl, at=time.time() - 2 * ttl),
           tokens.make(b"another site's secret key", image.id, gen, ttl),
           archive.tile_token(other.id), "x"]
    for token in bad:
        for name in (f"display/{SPEC}/image.dzi", f"display/{SPEC}/image_files/{DEEPEST}/0_0.jpeg",
                     "pixel/3_4"):
            response = await client.get(f"/tiles/{image.id}/{token}/{name}")
            assert response.status_code == 403, (token, name)
            assert "expired or is not valid" in await text_of(response)
    assert not (archive.tile_folder(image.id) / "display").exists()  # nothing rendered for them


async def test_a_private_image_gives_others_no_display_url(client, archive, add_image, make_user):
    await make_user("alice")
    await make_user("bob")
    private = await add_image("mine.fits", owner="alice", visibility="private")
    # a guest and another user: the page and the API answer as for a missing image, with no token
    for who in (None, "bob"):
        if who:
            assert (await log_in(client, who)).status_code == 302
        for path in (f"/images/{private.id}", f"/api/images/{private.id}"):
            response = await client.get(path)
            assert response.status_code == 404
            body = await text_of(response)
            assert "/tiles/" not in body and "display-controls" not in body
    await client.post("/logout", form={})
    assert (await log_in(client, "alice")).status_code == 302
    page = await text_of(await client.get(f"/images/{private.id}"))
    display_base = attribute(page, "display-controls", "data-base")
    assert display_base == f"/tiles/{private.id}/{archive.tile_token(private.id)}/display/"
    assert attribute(page, "display-controls", "data-default") == "zscale~linear~grey"
    response = await client.get(f"{display_base}{SPEC}/image_files/6/0_0.jpeg")
    assert response.status_code == 200


async def test_the_api_gives_the_display_url_with_the_other_tile_urls(client, archive, image):
    detail = await (await client.get(f"/api/images/{image.id}")).get_json()
    assert detail["display_url"] == f"/tiles/{image.id}/{archive.tile_token(image.id)}/display/"
    assert detail["display_default"] == "zscale~linear~grey"


# --- bad paths --------------------------------------------------------------------------------------------

TRICKS = [
    ("display/zscale~asinh~jet/image.dzi", "unknown colormap"),
    ("display/zscale~bogus~grey/image.dzi", "unknown stretch"),
    ("display/p99.50~linear~grey/image.dzi", "write p99.5~linear~grey"),
    ("display/m300:-1~linear~grey/image.dzi", "low < high"),
    ("display/p100~linear~grey/image_files/9/0_0.jpeg", "50 < N < 100"),
    ("display/..~linear~grey/image.dzi", "unknown interval"),
    ("display/../image.dzi", "no such display: a display spec is <interval>~<stretch>~<colormap>"),
    ("display/../../secret.key", "no such tile"),
    ("display/%2e%2e/%2e%2e/%2e%2e/secret.key", "no such tile"),
    ("display/zscale~linear~grey/../../../secret.key", "no such tile"),
    ("display/zscale~linear~grey%2f..%2f..%2fsecret.key/image.dzi", "no such tile"),
    ("display/zscale~linear~grey/scale.json", "no such tile"),
    ("display/zscale~linear~grey/image_files/9/0_0.png", "no such tile"),
    ("display/zscale~linear~grey/image_files/09/0_0.jpeg", "no such tile"),
    ("display/zscale~linear~grey/image_files/9/00_0.jpeg", "no such tile"),
    ("display/zscale~linear~grey/image_files/9/-1_0.jpeg", "no such tile"),
    ("display/zscale~linear~grey/image_files/9/0_0.jpeg%00", "no such tile"),
    ("display/zscale~linear~grey/image_files/123/0_0.jpeg", "no such tile"),
    ("display/zscale~linear~grey/image_files/9/1234567_0.jpeg", "no such tile"),
    ("display/zscale~linear~grey/image_files/9/2_0.jpeg", "no such tile"),
    ("display/zscale~linear~grey/image_files/10/0_0.jpeg", "no such tile"),
    ("display/zscale~linear~grey/image_files/99/0_0.jpeg", "no such tile"),
    ("display/zscale~linear~grey/image_files/9/999999_999999.jpeg", "no such tile"),
    ("display/zscale~linear~grey", "no such tile"),
    ("display/", "no such tile"),
    ("display", "no such tile"),
    ("pixel/300_0", "outside the image"),
    ("pixel/0_300", "outside the image"),
    ("pixel/-1_0", "no such pixel"),
    ("pixel/1.5_2", "no such pixel"),
    ("pixel/01_2", "no such pixel"),
    ("pixel/1_2/x", "no such pixel"),
    ("pixel/../../secret.key", "no such pixel"),
    ("pixel/", "no such pixel"),
]


@pytest.mark.parametrize(("name", "message"), TRICKS)
async def test_bad_specs_levels_tiles_and_pixels_are_404_with_a_message(client, archive, base, name, message):
    secret_hex = (archive.settings.data / "secret.key").read_text().strip()
    response = await client.get(f"{base}/{name}")
    assert response.status_code == 404, name
    body = unescape(await text_of(response))
    assert message in body
    assert secret_hex not in body and "SQLite format" not in body


# --- pixel values -----------------------------------------------------------------------------------------

async def test_pixel_values_in_fits_coordinates(client, archive, add_image):
    data = np.arange(50 * 40, dtype=np.float32).reshape(50, 40) - 500.0  # 40 wide, 50 high
    data[0, 0] = np.nan  # FITS pixel (1, 1): the bottom-left corner
    image = await add_image("values.fits", data=data)
    base = f"/tiles/{image.id}/{archive.tile_token(image.id)}"
    # display (x, y) counts from the top left; FITS (x, y) from 1 at the bottom left
    for x, y in [(0, 0), (39, 0), (7, 13), (39, 48)]:
        response = await client.get(f"{base}/pixel/{x}_{y}")
        assert response.status_code == 200
        assert await response.get_json() == {"x": x + 1, "y": 50 - y, "value": float(data[49 - y, x])}
    assert await (await client.get(f"{base}/pixel/0_49")).get_json() == {"x": 1, "y": 1, "value": None}
    outside = await client.get(f"{base}/pixel/40_0")
    assert outside.status_code == 404
    assert "pixel (40, 0) is outside the image (40x50 pixels" in await text_of(outside)


async def test_pixel_values_of_a_raster_are_grey_levels_as_shown(client, archive, tmp_path):
    grey = np.zeros((30, 20), dtype=np.uint8)
    grey[5, 7] = 201
    path = tmp_path / "in" / "grey.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    pyvips.Image.new_from_array(grey).cast("uchar").pngsave(str(path))
    [job] = await ingest(archive, path, visibility="public")
    assert job.state == "done", job.error
    [image_id] = job.image_ids
    base = f"/tiles/{image_id}/{archive.tile_token(image_id)}"
    assert await (await client.get(f"{base}/pixel/7_5")).get_json() == {"x": 7, "y": 5, "value": 201.0}
    assert await (await client.get(f"{base}/pixel/0_0")).get_json() == {"x": 0, "y": 0, "value": 0.0}
