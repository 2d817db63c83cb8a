"""The sky page in headless Chromium against a real `imagex serve`: Aladin Lite (vendored from npm) shows the
outlines of the images a visitor may see, names them under the cursor, opens one on a click, shows a
search's results on the sky, and searches the circle in view; with no Content-Security-Policy violation."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import numpy as np
import pytest
import pyvips
from astropy.io import fits

from app.samples import celestial_wcs
from app.search.elements import element_from
from app.store import open_store
from tests.browser.server_helpers import Server, ingest_and_serve, screenshot

pytestmark = pytest.mark.browser

HOSTILE = "<img src=x onerror=alert(1)> Orion"
FIELDS = {"north.fits": (150.0, 20.0, "NGC 1"), "south.fits": (152.0, 17.0, HOSTILE)}
READY = "() => document.getElementById('sky').dataset.ready === 'true'"


def write_field(root: Path, name: str, ra: float, dec: float, obj: str) -> Path:
    header = celestial_wcs(ra, dec, 300, 300, scale_arcsec=6.0).to_header()
    header["OBJECT"] = obj
    data = np.random.default_rng(len(name)).normal(100, 10, (300, 300)).astype(np.float32)
    path = root / name
    fits.PrimaryHDU(data, header).writeto(path)
    return path


@pytest.fixture(scope="module")
def sky_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    root = tmp_path_factory.mktemp("sky")
    paths = [write_field(root, name, *spec) for name, spec in FIELDS.items()]
    pyvips.Image.black(40, 30).write_to_file(str(root / "plain.png"))  # no sky position: not drawn
    with ingest_and_serve(root, *paths, root / "plain.png", hips=True) as server:
        asyncio.run(add_elements(server.data / "catalog.sqlite"))
        yield server


async def add_elements(catalog: Path) -> None:
    """The search fields an administrator would build: an object name and a sky position."""
    store = open_store(f"sqlite:///{catalog}")
    await store.open()
    try:
        for data in ({"id": "object", "type": "text", "label": "Object", "keywords": ["OBJECT"]},
                     {"id": "sky", "type": "cone", "label": "Sky position",
                      "options": {"radius": "10arcmin"}}):
            await store.add_element(element_from(data))
    finally:
        await store.close()


def ids(server: Server) -> dict[str, str]:
    return {image["name"]: image["id"] for image in server.get("/api/images")["images"]}


async def open_sky(page: Any, url: str) -> list[str]:
    violations: list[str] = []
    page.on("console", lambda message: violations.append(message.text)
            if "Content Security Policy" in message.text else None)
    response = await page.goto(url)
    assert response is not None and response.status == 200
    await page.wait_for_function(READY, timeout=30_000)
    return violations


async def screen_point(page: Any, ra: float, dec: float) -> tuple[float, float]:
    box = await page.locator("#sky").bounding_box()
    assert box is not None
    x, y = await page.evaluate("([ra, dec]) => window.imagexSky.aladin.world2pix(ra, dec)", [ra, dec])
    return box["x"] + x, box["y"] + y


async def test_the_sky_outlines_names_and_opens_the_images(page, sky_server: Server):
    survey: list[tuple[str, int]] = []
    page.on("response", lambda response: survey.append((urlsplit(response.url).path, response.status))
            if "/hips/public/" in response.url else None)
    violations = await open_sky(page, sky_server.url + "/sky")
    known = ids(sky_server)
    names = await page.locator("#sky-list a").all_text_contents()
    assert sorted(names) == sorted(["NGC 1", HOSTILE])  # the PNG has no sky position
    assert await page.locator("#sky-list img").count() == 0  # a header's markup stays text
    assert await page.text_content("#sky-status") == "2 images outlined"
    image_at = "([ra, dec]) => window.imagexSky.imageAt(ra, dec)?.name ?? null"
    assert await page.evaluate(image_at, [150.0, 20.0]) == "NGC 1"
    assert await page.evaluate(image_at, [151.0, 18.5]) is None

    await page.evaluate("() => window.imagexSky.aladin.gotoRaDec(150.0, 20.0)")
    await page.evaluate("() => window.imagexSky.aladin.setFoV(2.0)")
    await page.wait_for_timeout(500)
    x, y = await screen_point(page, 150.0, 20.0)
    await page.mouse.move(x + 3, y + 3)
    await page.mouse.move(x, y)
    await page.wait_for_function("() => document.getElementById('sky-hover').textContent === 'NGC 1'",
                                 timeout=30_000)
    await screenshot(page, "sky.png")
    # beneath the outlines, the archive's own survey of its public images (built by imagex serve)
    await page.wait_for_function("() => true")
    assert ("/hips/public/properties", 200) in survey
    assert any(path.startswith("/hips/public/Norder") and status == 200 for path, status in survey), survey
    async with page.expect_navigation():
        await page.mouse.click(x, y)
    assert urlsplit(page.url).path == f"/images/{known['NGC 1']}"
    # Aladin Lite asks CDS for its default survey when the archive has none yet: the page's policy refuses
    # it (nothing leaves the site); nothing else is refused (its WebAssembly, worker and styles run)
    refused = [text for text in violations if "connect-src" not in text and "Refused to connect" not in text]
    assert refused == []


async def test_search_results_on_the_sky_and_a_search_of_the_view(page, sky_server: Server):
    await page.goto(sky_server.url + "/search?object=NGC")
    link = page.locator("#show-on-sky")
    assert await link.count() == 1
    async with page.expect_navigation():
        await link.click()
    await page.wait_for_function(READY, timeout=30_000)
    assert await page.locator("#sky-list a").all_text_contents() == ["NGC 1"]
    assert await page.text_content("#sky-status") == "1 image outlined"

    await page.evaluate("() => { window.imagexSky.aladin.gotoRaDec(152.0, 17.0); "
                        "window.imagexSky.aladin.setFoV(1.0); }")
    async with page.expect_navigation():
        await page.click("#sky-search")
    query = parse_qs(urlsplit(page.url).query)
    assert float(query["sky_ra"][0]) == pytest.approx(152.0, abs=0.01)
    assert float(query["sky_dec"][0]) == pytest.approx(17.0, abs=0.01)
    assert query["sky_radius"][0].endswith("deg")
    assert "1 image found" in (await page.text_content("#results") or "")
    assert HOSTILE in (await page.text_content("#results") or "")


async def test_bad_search_parameters_are_said_on_the_page(page, sky_server: Server):
    response = await page.goto(sky_server.url + "/sky?sky_ra=nowhere&sky_dec=1")
    assert response is not None and response.status == 200
    await page.wait_for_function("() => document.getElementById('sky-status').textContent.startsWith("
                                 "'The images cannot be shown')", timeout=30_000)
    assert "Sky position: RA 'nowhere' is not a coordinate" in (await page.text_content("#sky-status") or "")


async def test_a_notebooks_sky_view_shows_the_survey_and_opens_an_image_in_a_new_tab(page, sky_server: Server,
                                                                                     tmp_path: Path):
    """`app.notebook.sky`'s HTML in a page of another origin (a Jupyter server's), in a browser not logged
    in: the sky embed looks where it was told, outlines the public images over the public survey, and a
    click opens the image in a new tab, the notebook staying where it is."""
    from app.notebook import sky
    from tests.browser.embed_helpers import notebook_page, other_site

    survey: list[tuple[str, int]] = []
    page.on("response", lambda response: survey.append((urlsplit(response.url).path, response.status))
            if "/hips/public/" in response.url else None)
    violations: list[str] = []
    page.on("console", lambda message: violations.append(message.text)
            if "Content Security Policy" in message.text else None)
    view = sky(sky_server.url, target=(151.0, 18.5), fov=6, width=900, height=500)  # between the two
    (tmp_path / "notebook.html").write_text(notebook_page(view._repr_html_()))
    with other_site(tmp_path) as notebook:
        response = await page.goto(f"{notebook}/notebook.html")
        assert response is not None and response.status == 200
        ready = page.frame_locator("#out0 iframe").locator('#sky[data-ready="true"]')
        await ready.wait_for(state="attached", timeout=30_000)
        frame = await (await page.locator("#out0 iframe").element_handle()).content_frame()
        assert frame is not None and frame.url.startswith(f"{sky_server.url}/embed/sky?target=151")
        assert await frame.text_content("#sky-status") == "2 images outlined"
        ra, dec = await frame.evaluate("() => window.imagexSky.aladin.getRaDec()")
        assert (ra, dec) == (pytest.approx(151.0, abs=1e-3), pytest.approx(18.5, abs=1e-3))
        assert await frame.evaluate("() => window.imagexSky.aladin.getFov()[0]") == pytest.approx(6, rel=0.05)
        await page.wait_for_timeout(1000)
        assert ("/hips/public/properties", 200) in survey
        tiles = [status for path, status in survey if path.startswith("/hips/public/Norder")]
        assert 200 in tiles, survey  # (tiles where no image lies are missing: 404, as HiPS allows)
        box = await page.locator("#out0 iframe").bounding_box()
        assert box is not None
        await frame.evaluate("() => window.imagexSky.aladin.gotoRaDec(150.0, 20.0)")
        await page.wait_for_timeout(500)
        x, y = await frame.evaluate("() => window.imagexSky.aladin.world2pix(150.0, 20.0)")
        await page.mouse.move(box["x"] + x + 3, box["y"] + y + 3)
        await page.mouse.move(box["x"] + x, box["y"] + y)
        await frame.wait_for_function("() => document.getElementById('sky-hover').textContent === 'NGC 1'",
                                      timeout=30_000)
        async with page.context.expect_page() as opened:
            await page.mouse.click(box["x"] + x, box["y"] + y)
        tab = await opened.value
        await tab.wait_for_load_state()
        assert urlsplit(tab.url).path == f"/images/{ids(sky_server)['NGC 1']}"
        assert page.url == f"{notebook}/notebook.html"
        await screenshot(page, "notebook-sky.png")
    refused = [text for text in violations if "connect-src" not in text and "Refused to connect" not in text]
    assert refused == []
