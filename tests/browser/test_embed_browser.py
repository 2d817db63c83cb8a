"""Embedding from another origin: a plain HTML page served by a second tiny HTTP server (another port, so
another origin) holds `<script src=".../static/embed.js" data-imagex-image="ID">` tags; the script puts
iframes after them, the public image's tiles load inside, and the private one shows "not available". The
embed of a FITS cube steps through its planes (slider, keys, Play) and opens at the plane its URL names."""

from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import parse_qs, urlsplit

import pytest

from tests.browser.embed_helpers import FRAME_LOADED, other_site
from tests.browser.mosaic_helpers import FIELDS, Served, serving
from tests.browser.planes_helpers import PLANES, bright_quarter, play_until, shows, write_cube
from tests.browser.server_helpers import Server, ingest_and_serve, screenshot
from tests.browser.viewer_helpers import Recorder

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    with serving(tmp_path_factory.mktemp("embed")) as running:
        yield running


def blog_page(imagex: str, public_id: str, private_id: str, mosaic_ids: str) -> str:
    script = f'<script src="{imagex}/static/embed.js"'
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>A blog</title></head>
<body>
  <h1>Our observations</h1>
  <p id="before-public">The field:</p>
  {script} data-imagex-image="{public_id}" data-width="480" data-height="360"></script>
  <p id="before-private">A secret:</p>
  {script} data-imagex-image="{private_id}" data-width="300" data-height="200"></script>
  <p id="before-mosaic">All together:</p>
  {script} data-imagex-mosaic="{mosaic_ids}" data-width="50%" data-height="bad"></script>
  <p id="end">The end.</p>
</body></html>
"""


async def test_an_embed_on_another_origin_shows_the_image_and_not_the_private_one(page, served, tmp_path):
    public = served.images["Reference"]
    mosaic_ids = ",".join(served.images[name]["id"] for name in FIELDS)
    (tmp_path / "post.html").write_text(blog_page(served.url, public["id"], served.private["id"], mosaic_ids))
    tiles: list[tuple[str, int]] = []
    page.on("response", lambda response: tiles.append((response.url, response.status))
            if "/tiles/" in response.url else None)
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    with other_site(tmp_path) as blog:
        assert blog.split(":")[-1] != served.url.split(":")[-1]  # another port: another origin
        response = await page.goto(f"{blog}/post.html")
        assert response is not None and response.status == 200

        # each script tag is followed by its iframe, sized by its data attributes, pointing at ImageX
        frames = page.locator("iframe.imagex-embed")
        assert await frames.count() == 3
        for before, src, width, height in [
                ("before-public", f"{served.url}/embed/images/{public['id']}", "480px", "360px"),
                ("before-private", f"{served.url}/embed/images/{served.private['id']}", "300px", "200px"),
                ("before-mosaic", f"{served.url}/embed/mosaic?ids={mosaic_ids}", "50%", "480px")]:
            frame = page.locator(f"#{before} + script + iframe")
            assert await frame.get_attribute("src") == src
            style = await frame.get_attribute("style")
            assert f"width: {width}" in style and f"height: {height}" in style

        public_frame = page.frame_locator("#before-public + script + iframe")
        await public_frame.locator("#mosaic-viewer canvas").first.wait_for(timeout=30_000)
        frame = next(f for f in page.frames if f.url.endswith(f"/embed/images/{public['id']}"))
        await frame.wait_for_function(FRAME_LOADED, timeout=60_000)
        loaded = [url for url, status in tiles if status == 200 and f"/tiles/{public['id']}/" in url]
        assert any("/image_files/" in url for url in loaded)
        # the drawn image is not blank
        shot = await page.locator("#before-public + script + iframe").screenshot()
        import numpy as np
        import pyvips

        grey = pyvips.Image.new_from_buffer(shot, "").colourspace("b-w")[0].numpy()
        assert np.ptp(grey) > 50

        private_frame = page.frame_locator("#before-private + script + iframe")
        await private_frame.locator("text=This view is not available.").wait_for(timeout=30_000)
        assert await private_frame.locator("#mosaic-viewer").count() == 0
        assert not [url for url, _ in tiles if served.private["id"] in url]

        # the mosaic's frame loads last (it is further down the page): found once its viewer is there
        mosaic_frame = page.frame_locator("#before-mosaic + script + iframe")
        await mosaic_frame.locator("#mosaic-viewer").wait_for(state="attached", timeout=60_000)
        mosaic = next(f for f in page.frames if "/embed/mosaic?" in f.url)
        await mosaic.wait_for_function(FRAME_LOADED, timeout=60_000)
        assert await mosaic.evaluate("() => window.imagexMosaic.layers.length") == 3
        await screenshot(page, "embed.png")
    assert errors == []


async def test_a_page_other_than_an_embed_refuses_to_be_framed_by_another_origin(page, served, tmp_path):
    public = served.images["Reference"]
    (tmp_path / "frame.html").write_text(
        f'<!doctype html><iframe id="page" src="{served.url}/images/{public["id"]}"></iframe>'
        f'<iframe id="embed" src="{served.url}/embed/images/{public["id"]}"></iframe>')
    with other_site(tmp_path) as blog:
        await page.goto(f"{blog}/frame.html")
        embed = page.frame_locator("#embed")
        await embed.locator("#mosaic-viewer").wait_for(timeout=30_000)
        await page.wait_for_timeout(1000)
        framed = next((f for f in page.frames if f.url.endswith(f"/images/{public['id']}")
                       and "/embed/" not in f.url), None)
        # Chromium blocks the page (frame-ancestors 'none'): no document of ours is in that frame
        if framed is not None:
            assert await framed.locator("#viewer").count() == 0


@pytest.fixture(scope="module")
def cube_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """The FITS cube of test_planes_browser (plane k bright in the k-th vertical quarter), served."""
    root = tmp_path_factory.mktemp("embed-cube")
    with ingest_and_serve(root, write_cube(root), options=("--interval", "minmax")) as server:
        yield server


def plane_tiles(recorder: Recorder, image_id: str, start: int = 0) -> dict[int, int]:
    """How many tiles of each plane (0: the static pyramid) the page asked for since response `start`."""
    counts: dict[int, int] = {}
    for url, status in recorder.responses[start:]:
        path = urlsplit(url).path
        if not path.startswith(f"/tiles/{image_id}/") or "/image_files/" not in path:
            continue
        assert status == 200, url
        plane = int(path.split("/planes/")[1].split("/")[0]) if "/planes/" in path else 0
        counts[plane] = counts.get(plane, 0) + 1
    return counts


async def test_the_embed_of_a_cube_steps_through_its_planes(page, cube_server: Server, tmp_path):
    cube = cube_server.image
    assert cube["planes"]["count"] == PLANES
    recorder = Recorder(page)
    embed = f"{cube_server.url}/embed/images/{cube['id']}"
    response = await page.goto(embed)
    assert response is not None and response.status == 200
    await page.wait_for_function(FRAME_LOADED, timeout=30_000)
    label = page.locator("#plane-label")
    assert await label.text_content() == "1 of 4: FREQ 1.4204 GHz"
    assert await bright_quarter(page, "#mosaic-viewer") == 0
    assert set(plane_tiles(recorder, cube["id"])) == {0}

    # the slider shows plane 3 (index 2) with that plane's tiles, named by its frequency, kept in the URL
    seen = len(recorder.responses)
    await page.locator("#plane-controls input[name=plane]").fill("2")
    await shows(page, "/planes/2/display/minmax~linear~grey/")
    assert await label.text_content() == "3 of 4: FREQ 1.4209 GHz"
    assert await bright_quarter(page, "#mosaic-viewer") == 2
    assert set(plane_tiles(recorder, cube["id"], seen)) == {2}
    assert parse_qs(urlsplit(page.url).query)["plane"] == ["3"]
    await screenshot(page, "embed-planes.png")

    # keys step: ] to the last plane, [ back to the first (the static pyramid again, no plane in the URL)
    seen = len(recorder.responses)
    await page.locator("body").press("]")
    await shows(page, "/planes/3/display/")
    assert await label.text_content() == "4 of 4: FREQ 1.42115 GHz"
    assert await bright_quarter(page, "#mosaic-viewer") == 3
    assert set(plane_tiles(recorder, cube["id"], seen)) == {3}
    for _ in range(PLANES):
        await page.locator("body").press("[")
    static = await page.evaluate("() => window.imagexMosaic.layers[0].data.tiles_url + 'image_files/'")
    await shows(page, static)
    assert await label.text_content() == "1 of 4: FREQ 1.4204 GHz"
    assert await bright_quarter(page, "#mosaic-viewer") == 0
    assert "plane" not in parse_qs(urlsplit(page.url).query)

    # Play moves on by itself; Pause stops it
    play = await play_until(page, "3 of")
    assert await play.get_attribute("aria-pressed") == "false"

    # ?plane=2 (from 1, as on the image page) opens at the second plane: no tile of another plane is asked for
    seen = len(recorder.responses)
    response = await page.goto(embed + "?plane=2")
    assert response is not None and response.status == 200
    await page.wait_for_function(FRAME_LOADED, timeout=30_000)
    await shows(page, "/planes/1/display/")
    assert await label.text_content() == "2 of 4: FREQ 1.42065 GHz"
    assert await page.locator("#plane-controls input[name=plane]").input_value() == "1"
    assert await bright_quarter(page, "#mosaic-viewer") == 1
    assert set(plane_tiles(recorder, cube["id"], seen)) == {1}

    # a bad plane is a 400 whose message shows in the page
    response = await page.goto(embed + "?plane=9")
    assert response is not None and response.status == 400
    assert await page.locator(".embed-unavailable").text_content() == (
        "there is no plane 9 in this image: it has 4 (counted from 1)")
    assert recorder.errors == []
    assert not [url for url in recorder.failed if "/tiles/" in url], recorder.failed


async def test_embed_js_data_plane_opens_another_sites_frame_at_that_plane(page, cube_server: Server,
                                                                           tmp_path):
    cube = cube_server.image
    (tmp_path / "cube.html").write_text(
        f'<!doctype html><p id="before">A cube:</p><script src="{cube_server.url}/static/embed.js" '
        f'data-imagex-image="{cube["id"]}" data-plane="3"></script>')
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    with other_site(tmp_path) as blog:
        await page.goto(f"{blog}/cube.html")
        frame = page.locator("#before + script + iframe")
        assert await frame.get_attribute("src") == f"{cube_server.url}/embed/images/{cube['id']}?plane=3"
        inside = page.frame_locator("#before + script + iframe")
        await inside.locator("#plane-label").wait_for(timeout=30_000)
        embedded = next(f for f in page.frames if "/embed/images/" in f.url)
        await embedded.wait_for_function(FRAME_LOADED, timeout=30_000)
        assert await inside.locator("#plane-label").text_content() == "3 of 4: FREQ 1.4209 GHz"
    assert errors == []
