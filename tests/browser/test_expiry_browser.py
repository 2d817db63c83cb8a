"""When the image page's signed tile links expire, the page says so and offers to reload (it used to show
"—" for every pixel value and ignore display changes without a word). A real `imagex serve` whose tile
links last seconds, headless Chromium."""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from astropy.io import fits

from app.samples import FIELD_DEC, FIELD_RA, celestial_wcs, star_field
from tests.browser.server_helpers import BIN, imagex_serve
from tests.processes import free_port

pytestmark = pytest.mark.browser
VIEWER_OPEN = "() => !!window.imagexViewer && window.imagexViewer.world.getItemCount() > 0"
# seconds a tile link lasts on this server (rounded up to a quarter of it: 20 to 25 s); the page must open
# well within it on a loaded machine (CI once took over 8 s), for its fresh links to be checked fresh
TTL = 20


@pytest.fixture(scope="module")
def short_links(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str, Path]]:
    root = tmp_path_factory.mktemp("expiring")
    wcs = celestial_wcs(FIELD_RA, FIELD_DEC, 200, 200)
    path = root / "field.fits"
    fits.PrimaryHDU(star_field(wcs, 200, 200), wcs.to_header()).writeto(path)
    env = {**os.environ, "IMAGEX_DATA": str(root / "var"), "IMAGEX_WORKERS": "1",
           "IMAGEX_PORT": str(free_port()), "IMAGEX_HOST": "127.0.0.1", "IMAGEX_TILE_TOKEN_TTL": str(TTL)}
    env.pop("IMAGEX_SAMPLES", None)
    command = [str(BIN / "imagex"), "ingest", "--no-progress", "--visibility", "public", str(path)]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stdout + done.stderr
    log = root / "serve.log"
    with imagex_serve(env, log) as url:
        with urllib.request.urlopen(url + "/api/images", timeout=10) as response:
            [image] = json.loads(response.read())["images"]
        yield url, image["id"], log


async def test_expired_tile_links_are_announced_with_a_reload(page: Any, short_links):
    url, image_id, _ = short_links
    await page.goto(f"{url}/images/{image_id}")
    await page.wait_for_function(VIEWER_OPEN)
    notice = page.locator("#links-expired")
    assert await notice.count() == 0  # fresh links: nothing to say
    tiles = await page.get_attribute("#viewer", "data-tiles")
    # the links' expiry, signed into them: /tiles/<id>/<expiry, hex>.<...>/
    expires = int(re.search(r"/tiles/[^/]+/([0-9a-f]+)\.", tiles).group(1), 16)
    assert time.time() < expires
    await notice.wait_for(state="visible", timeout=(TTL * 1.25 + 5) * 1000)
    assert time.time() >= expires  # said when the links lapsed, not before
    assert "links to the image's tiles have expired" in await notice.inner_text()
    # a pixel value asked for now is refused by the server (403), not shown as a value
    status = await page.evaluate("(base) => fetch(base + 'pixel/10_10').then((r) => r.status)", tiles)
    assert status == 403

    await notice.get_by_role("button", name="Reload the page").click()
    await page.wait_for_load_state("load")
    await page.wait_for_function(VIEWER_OPEN)
    assert await page.locator("#links-expired").count() == 0  # new links
    fresh = await page.get_attribute("#viewer", "data-tiles")
    assert fresh != tiles
    assert await page.evaluate("(base) => fetch(base + 'pixel/10_10').then((r) => r.status)", fresh) == 200


async def test_links_revoked_under_the_page_are_announced_at_the_next_pixel(page: Any, short_links):
    """The owner (here the administrator) makes the image visible to fewer people on its own page: its
    tile links are revoked at once, and the next pixel value the viewer asks for brings the notice,
    long before the links would have expired."""
    url, image_id, log = short_links
    password = re.search(r"Created administrator 'admin' with password '([^']+)'", log.read_text())
    assert password, "the server did not print the administrator's password"
    await page.goto(url + "/login")
    await page.fill("input[name=username]", "admin")
    await page.fill("input[name=password]", password.group(1))
    await page.click("form.panel button[type=submit]")
    await page.wait_for_url(url + "/")
    await page.goto(f"{url}/images/{image_id}")
    await page.wait_for_function(VIEWER_OPEN)
    await page.select_option("form.visibility select[name=visibility]", "registered")
    await page.click("form.visibility button[type=submit]")
    await page.locator("#access .message").wait_for(state="visible", timeout=30_000)  # "Saved: ..."
    await page.locator("#viewer").scroll_into_view_if_needed()  # the form is below it
    box = await page.locator("#viewer").bounding_box()
    await page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    await page.mouse.move(box["x"] + box["width"] / 2 + 5, box["y"] + box["height"] / 2 + 5)
    # within three quarters of the links' life: the notice is for their revocation, not their expiry
    await page.locator("#links-expired").wait_for(state="visible", timeout=TTL * 750)
