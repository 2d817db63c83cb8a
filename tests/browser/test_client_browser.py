"""What a notebook displays for `app.client`'s `show`, in a page of another origin (as a Jupyter server on
another port is) and a browser not logged in to ImageX: a public image's embed viewer of the latest version
of the name, whose tiles load; a private image drawn in a sandboxed frame from its signed tiles; and that
private image's embed page still not available to this browser."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest

from app.client import Client
from app.notebook import show
from tests.browser.embed_helpers import FRAME_LOADED, notebook_page, other_site
from tests.browser.server_helpers import screenshot
from tests.browser.viewer_helpers import Recorder
from tests.client_helpers import Served, field, serving

pytestmark = pytest.mark.browser

DRAWN = """() => !!window.viewer && viewer.world.getItemCount() === 1 &&
  viewer.world.getItemAt(0).getFullyLoaded()"""


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    with serving(tmp_path_factory.mktemp("client-browser")) as running:
        yield running


async def test_the_html_of_show_displays_the_latest_version_and_a_private_image(page, served, tmp_path):
    data, wcs = field(11)
    with Client(served.url, served.token, timeout=120) as client:
        first = client.show(data, "evolving", wcs=wcs, visibility="public", display=False)
        latest = client.show(np.flipud(data) * 3, "evolving", wcs=wcs, visibility="public", display=False)
        private = client.show(data + 5, "secret", wcs=wcs, display=False)
    assert private.image["visibility"] == "private"
    embed = show(served.url, image=private.image["id"])
    (tmp_path / "notebook.html").write_text(notebook_page(latest._repr_html_(), private._repr_html_(),
                                                          embed._repr_html_()))
    recorder = Recorder(page)
    with other_site(tmp_path) as notebook:
        assert notebook.split(":")[-1] != served.url.split(":")[-1]  # another origin, as Jupyter is
        response = await page.goto(f"{notebook}/notebook.html")
        assert response is not None and response.status == 200
        viewer = page.frame_locator("#out0 iframe")
        await viewer.locator("#mosaic-viewer canvas").first.wait_for(timeout=30_000)
        frame = next(f for f in page.frames if f.url == f"{served.url}/embed/images/{latest.image['id']}")
        await frame.wait_for_function(FRAME_LOADED, timeout=60_000)
        mine = [(url, status) for url, status in recorder.tiles() if f"/tiles/{latest.image['id']}/" in url]
        assert any("/image_files/" in url and status == 200 for url, status in mine)
        assert all(status == 200 for _, status in mine), mine
        assert not [url for url, _ in recorder.responses if first.image["id"] in url]  # deleted: never asked
        # the image is drawn: the frame is not one flat colour
        shot = await page.locator("#out0 iframe").screenshot()
        import pyvips

        grey = pyvips.Image.new_from_buffer(shot, "").colourspace("b-w")[0].numpy()
        assert np.ptp(grey) > 50

        drawn = next(f for f in page.frames if f.url == "about:srcdoc")
        await drawn.wait_for_function(DRAWN, timeout=60_000)
        folder = f"/tiles/{private.image['id']}/"
        signed = [(url, status) for url, status in recorder.tiles() if folder in url]
        assert any("/image_files/" in url and status == 200 for url, status in signed)
        assert all(status == 200 for _, status in signed), signed
        shot = await page.locator("#out1 iframe").screenshot()
        assert np.ptp(pyvips.Image.new_from_buffer(shot, "").colourspace("b-w")[0].numpy()) > 50

        secret = page.frame_locator("#out2 iframe")
        await secret.locator("text=This view is not available.").wait_for(timeout=30_000)
        assert await secret.locator("#mosaic-viewer").count() == 0
        await screenshot(page, "notebook-show.png")
    assert recorder.errors == []
