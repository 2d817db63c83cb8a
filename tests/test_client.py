"""`app.client` against a real `imagex serve`: a real user with a real API token uploads a FITS file and an
array with a WCS, finds them, downloads them, shows an array twice under one name (one image left, the
second array's), and gets the server's own messages for a bad token, a missing image, a full quota, a
failed ingest and a job waited for too short a time."""

from __future__ import annotations

import io
from collections.abc import Iterator
from html.parser import HTMLParser

import numpy as np
import pytest
from astropy.io import fits

from app.client import SHOW_CARD, Client, ImageXClientError, JobTimeout, TileView, fits_bytes, show_name
from app.notebook import Embed
from app.samples import FIELD_DEC, FIELD_RA
from tests.client_helpers import SIZE, Served, field, serving


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    with serving(tmp_path_factory.mktemp("client")) as running:
        yield running


@pytest.fixture
def client(served: Served) -> Iterator[Client]:
    with Client(served.url, served.token, timeout=120) as made:
        yield made


def pixels(content: bytes) -> np.ndarray:
    with fits.open(io.BytesIO(content)) as hdus:
        return np.array(hdus[0].data)


class Frames(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.frames: list[dict[str, str | None]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "iframe":
            self.frames.append(dict(attrs))

    @classmethod
    def of(cls, html: str) -> list[dict[str, str | None]]:
        parser = cls()
        parser.feed(html)
        return parser.frames


def iframe_source(html: str) -> str | None:
    [frame] = Frames.of(html)
    return frame["src"]


def test_a_file_uploaded_is_found_and_downloaded_as_it_was(client, tmp_path):
    data, wcs = field(1)
    header = wcs.to_header()
    header["OBJECT"] = "Client file"
    path = tmp_path / "file.fits"
    fits.PrimaryHDU(data, header).writeto(path)
    image = client.upload(path)
    assert image["name"] == "Client file" and image["owner"] == "alice"
    assert image["visibility"] == "private" and (image["width"], image["height"]) == (SIZE, SIZE)
    assert [found["id"] for found in client.search(keyword="OBJECT", eq="Client file")] == [image["id"]]
    assert client.download(image["id"]) == path.read_bytes()
    copy = client.download(image["id"], tmp_path / "copy.fits")
    assert copy == tmp_path / "copy.fits" and copy.read_bytes() == path.read_bytes()


def test_an_array_with_a_wcs_is_catalogued_with_its_sky_position(client):
    data, wcs = field(2)
    image = client.upload(data, "array field", wcs=wcs, header={"EXPTIME": 30.0, "OBJECT": "Array field"})
    assert image["name"] == "Array field"
    sky = image["sky"]
    assert sky["center_ra"] == pytest.approx(FIELD_RA, abs=1e-3)
    assert sky["center_dec"] == pytest.approx(FIELD_DEC, abs=1e-3)
    near = client.search(ra=FIELD_RA, dec=FIELD_DEC, radius="1arcmin", mode="overlaps")
    assert image["id"] in [found["id"] for found in near]
    record = client.image(image["id"])
    assert record["header"]["EXPTIME"] == 30.0 and record["header"]["CTYPE1"] == "RA---TAN"
    assert np.array_equal(pixels(client.download(image["id"])), data)


def test_showing_a_name_again_replaces_its_image(client, served):
    first, wcs = field(3)
    second = first * 2 + 7
    shown = client.show(first, "evolving", wcs=wcs, visibility="public", display=False)
    again = client.show(second, "evolving", wcs=wcs, visibility="public", display=False)
    assert again.display_id == shown.display_id  # the notebook updates the same output
    [current] = client.search(keyword=SHOW_CARD, eq="evolving")
    assert current["id"] == again.image["id"] != shown.image["id"]
    assert np.array_equal(pixels(client.download(current["id"])), second)
    with pytest.raises(ImageXClientError, match="404") as gone:
        client.image(shown.image["id"])
    assert gone.value.status == 404
    assert iframe_source(again._repr_html_()) == f"{served.url}/embed/images/{current['id']}"
    # the same array again is the same content: the archive keeps that one image, and show says so
    same = client.show(second, "evolving", wcs=wcs, visibility="public", display=False)
    assert same.image["id"] == current["id"]
    assert [found["id"] for found in client.search(keyword=SHOW_CARD, eq="evolving")] == [current["id"]]


def test_show_of_an_id_embeds_a_public_image_and_draws_a_private_one_from_signed_tiles(client, served):
    data, wcs = field(4)
    public = client.upload(data, "public field", wcs=wcs, visibility="public")
    shown = client.show(public["id"], display=False, width=640, height=480)
    assert isinstance(shown.view, Embed)
    assert iframe_source(shown._repr_html_()) == f"{served.url}/embed/images/{public['id']}"
    assert 'width="640"' in shown._repr_html_()
    private = client.upload(data + 1, "private field", wcs=wcs)
    view = client.show(private["id"], display=False).view
    assert isinstance(view, TileView)
    [frame] = Frames.of(view._repr_html_())
    assert "src" not in frame and frame["sandbox"] == "allow-scripts"  # no access to the notebook's page
    page = str(frame["srcdoc"])
    folder = served.url + str(client.image(private["id"])["dzi_url"]).removesuffix("image.dzi")
    assert f'"Url": "{folder}image_files/"' in page
    assert f'<script src="{served.url}/static/vendor/openseadragon/openseadragon.min.js">' in page
    assert view.source["Image"]["Size"] == {"Width": str(SIZE), "Height": str(SIZE)}


def test_nothing_in_a_tile_view_ends_its_script_early():
    view = TileView("http://x", "Abc123", {"Image": {"Url": "</script><script>alert(1)</script>"}}, 10, 10)
    assert view.page().count("</script>") == 2  # the vendor script's and the viewer's own
    assert '"Url": "\\u003c/script>\\u003cscript>alert(1)\\u003c/script>"' in view.page()


def test_a_bad_token_is_refused_with_the_servers_message(served):
    with Client(served.url, "not-a-token") as stranger, pytest.raises(ImageXClientError) as refused:
        stranger.search()
    assert refused.value.status == 403
    assert "this API token is not valid (revoked, mistyped, or its account is disabled)" in str(refused.value)


def test_no_token_at_all_says_where_to_make_one(served, monkeypatch):
    monkeypatch.delenv("IMAGEX_TOKEN", raising=False)
    with pytest.raises(ValueError, match=f"make one on {served.url}/account"):
        Client(served.url)
    monkeypatch.setenv("IMAGEX_TOKEN", served.token)
    with Client(served.url) as from_environment:
        assert from_environment.me()["username"] == "alice"


def test_a_missing_image_is_a_clear_error_and_changes_no_file(client, tmp_path):
    with pytest.raises(ImageXClientError, match=r"GET /images/NoSuchImage1/original: 404 ") as missing:
        client.download("NoSuchImage1")
    assert missing.value.status == 404
    kept = tmp_path / "kept.fits"
    kept.write_bytes(b"mine")
    with pytest.raises(ImageXClientError, match="404"):
        client.download("NoSuchImage1", kept)
    assert kept.read_bytes() == b"mine" and [path.name for path in tmp_path.iterdir()] == ["kept.fits"]
    with pytest.raises(ImageXClientError, match=r"GET /api/images/NoSuchImage1: 404 "):
        client.show("NoSuchImage1", display=False)
    with pytest.raises(ValueError, match="an image id is letters and digits"):
        client.download("../../etc/passwd")


def test_hostile_names_are_cleaned_as_the_upload_route_cleans_them(client, tmp_path):
    data, _ = field(5)
    path = tmp_path / "plain.fits"
    fits.PrimaryHDU(data).writeto(path)
    image = client.upload(path, name="../../etc/passwd.fits")
    assert image["name"] == "passwd.fits"
    shown = client.show(data + 3, "../../tricky", visibility="public", display=False)
    assert shown.image["name"] == "tricky.fits"
    assert client.image(shown.image["id"])["header"][SHOW_CARD] == "../../tricky"


@pytest.mark.parametrize(("name", "message"), [
    ("", "name must be some text"),
    ("line\nbreak", "printable ASCII"),
    ("caf\u00e9", "printable ASCII"),
    ("x" * 61, "1-60 printable ASCII"),
    ("42", "must not read as a number"),
    ("T", "must not read as a number or a FITS boolean"),
])
def test_bad_show_names_are_refused_before_anything_is_sent(name, message):
    with pytest.raises(ValueError, match=message):
        show_name(name)


@pytest.mark.parametrize(("array", "message"), [
    (np.arange(10.0), "at least two axes"),
    (np.array([["a", "b"]]), "must hold numbers"),
])
def test_arrays_that_are_no_image_are_refused_before_anything_is_sent(array, message):
    with pytest.raises(ValueError, match=message):
        fits_bytes(array)


def test_a_full_quota_is_the_servers_413_with_its_figures(served):
    data, _ = field(6)
    with Client(served.url, served.tiny_token) as tiny, pytest.raises(ImageXClientError) as refused:
        tiny.upload(data, "big")
    assert refused.value.status == 413
    message = str(refused.value)
    assert message.startswith("PUT /api/uploads/big.fits: 413 big.fits (")
    assert "does not fit in your quota of 1,000 bytes" in message


def test_a_refused_upload_raises_the_servers_message(client, tmp_path):
    path = tmp_path / "line.fits"
    fits.PrimaryHDU(np.arange(100.0)).writeto(path)  # a valid FITS file, but one axis: no image
    with pytest.raises(ImageXClientError, match=r"PUT /api/uploads/line\.fits: 422 line\.fits: FITS "
                                                r"file with no 2-D image data") as refused:
        client.upload(path)
    assert refused.value.status == 422


def test_a_failed_ingest_raises_the_jobs_message(client, tmp_path):
    buffer = io.BytesIO()
    pixels = np.arange(32 * 32, dtype=np.int16).reshape(32, 32)
    fits.HDUList([fits.PrimaryHDU(), fits.CompImageHDU(pixels, compression_type="RICE_1")]).writeto(buffer)
    body = bytearray(buffer.getvalue())
    heap = len(body) - 2880  # the compressed tiles: the upload's check reads headers, not these
    body[heap:heap + 200] = bytes(range(200))
    path = tmp_path / "broken.fits.fz"
    path.write_bytes(bytes(body))
    with pytest.raises(ImageXClientError, match=r"ingest job \w+ failed: broken.fits.fz: HDU 1: the "
                                                r"compressed pixel data cannot be read \(.*; the upload was "
                                                r"not kept$"):
        client.upload(path)


def test_waiting_too_short_names_the_job_and_the_time(served):
    data, _ = field(7)
    with Client(served.url, served.token, timeout=0) as hasty, pytest.raises(JobTimeout) as late:
        hasty.upload(data, "hasty")
    assert "(hasty.fits) is still queued after" in str(late.value) or "is still running" in str(late.value)
    assert "timeout 0 s" in str(late.value) and "/api/jobs/" in str(late.value)


def test_in_ipython_showing_a_name_again_updates_its_one_output(client, tmp_path, monkeypatch):
    pytest.importorskip("IPython")
    from IPython.core.interactiveshell import InteractiveShell
    from IPython.display import display
    from IPython.utils.capture import capture_output

    monkeypatch.setenv("IPYTHONDIR", str(tmp_path / "ipython"))
    InteractiveShell.instance()
    try:
        data, wcs = field(8)
        with capture_output() as captured:
            first = client.show(data, "live", wcs=wcs, visibility="public")  # IPython runs: displayed
            second = client.show(data + 9, "live", wcs=wcs, visibility="public")
            display(second)  # as a cell ending with show(...) does: nothing more is shown
    finally:
        InteractiveShell.clear_instance()
    assert first.displayed and second.displayed and first.display_id == second.display_id
    assert [(output.transient, output.update) for output in captured.outputs] == [
        ({"display_id": first.display_id}, False), ({"display_id": first.display_id}, True)]
    assert [output.data["text/html"] for output in captured.outputs] == [first._repr_html_(),
                                                                          second._repr_html_()]
    assert iframe_source(second._repr_html_()).endswith(f"/embed/images/{second.image['id']}")
