"""A real `imagex serve` (Hypercorn in its own process) on a data folder filled by a real `imagex ingest`,
and headless Debian Chromium driven by Playwright."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import urllib.request
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from astropy.io import fits

from app.samples import FIELD_DEC, FIELD_RA, celestial_wcs, star_field
from tests.browser.server_helpers import BIN, CHROMIUM, CHROMIUM_ARGS, SIZE, Server, imagex_serve
from tests.processes import free_port


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """Ingest a 600x600 FITS star field with the CLI, then serve it; SIGTERM (then kill) at teardown."""
    root = tmp_path_factory.mktemp("served")
    data = root / "var"
    wcs = celestial_wcs(FIELD_RA, FIELD_DEC, SIZE, SIZE)
    header = wcs.to_header()
    header["OBJECT"] = "Browser field"
    path = root / "field.fits"
    fits.PrimaryHDU(star_field(wcs, SIZE, SIZE), header).writeto(path)

    port = free_port()
    env = {**os.environ, "IMAGEX_DATA": str(data), "IMAGEX_WORKERS": "1", "IMAGEX_PORT": str(port),
           "IMAGEX_HOST": "127.0.0.1"}
    env.pop("IMAGEX_SAMPLES", None)
    command = [str(BIN / "imagex"), "ingest", "--no-progress", "--visibility", "public", str(path)]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 ingested (1 image(s))" in done.stdout, done.stdout

    log = root / "serve.log"
    with imagex_serve(env, log) as url:
        with urllib.request.urlopen(url + "/api/images", timeout=10) as response:
            [image] = json.loads(response.read())["images"]
        yield Server(url=url, data=data, image=image, log=log)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The asynchronous tests of each browser test module run in one event loop, the module's, where the
    module's one Chromium lives (`chromium`)."""
    here = Path(__file__).resolve().parent
    in_module_loop = pytest.mark.asyncio(loop_scope="module")
    for item in items:
        if pytest_asyncio.is_async_test(item) and Path(str(item.path)).resolve().parent == here:
            item.add_marker(in_module_loop, append=False)


class Chromium:
    """A test module's headless Chromium, launched at first use and again should it have crashed: a crash
    fails the test it happened in, not every test after it in the module."""

    def __init__(self, playwright: Any) -> None:
        self.playwright = playwright
        self.browser: Any = None

    async def get(self) -> Any:
        if self.browser is None or not self.browser.is_connected():
            self.browser = await self.playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS,
                                                                 headless=True)
        return self.browser


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def chromium() -> AsyncIterator[Chromium]:
    """Headless Chromium for a test module: launched once, each test's page in a context of its own."""
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        browsers = Chromium(playwright)
        try:
            yield browsers
        finally:
            if browsers.browser is not None:
                with contextlib.suppress(Exception):
                    await browsers.browser.close()


@pytest_asyncio.fixture(loop_scope="module")
async def page(chromium: Chromium) -> AsyncIterator[Any]:
    """A fresh page in a fresh browser context (no cookies, storage or cache from another test; no network
    beyond the local server)."""
    context = await (await chromium.get()).new_context(viewport={"width": 1000, "height": 800})
    try:
        yield await context.new_page()
    finally:
        with contextlib.suppress(Exception):
            await context.close()
