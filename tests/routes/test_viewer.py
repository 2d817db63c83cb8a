"""The image page `/images/<id>`: the viewer element, the header table (escaped), and the original file."""

from __future__ import annotations

import hashlib
import re
from html import unescape
from pathlib import Path
from urllib.parse import quote, unquote

import pytest

from tests.routes.pages import attribute, dzi_facts, text_of

HOSTILE_OBJECT = "<script>alert(1)</script>"
HOSTILE_VALUE = '"><img src=x onerror=alert(1)>'
HOSTILE_HISTORY = "<b>x</b>"
HOSTILE_COMMENT = "<i>filter</i>"


def header_table(html: str) -> dict[str, list[tuple[str, str]]]:
    """Keyword -> [(value, comment), ...] as shown (unescaped) in the header table."""
    body = re.search(r'<table class="header">(.*?)</table>', html, re.S)
    assert body, "no header table"
    rows: dict[str, list[tuple[str, str]]] = {}
    for keyword, value, comment in re.findall(
            r'<tr><th scope="row">(.*?)</th><td>(.*?)</td><td>(.*?)</td></tr>', body.group(1), re.S):
        rows.setdefault(unescape(keyword), []).append((unescape(value), unescape(comment)))
    return rows


async def test_image_page_has_a_working_viewer_and_the_header(client, image):
    response = await client.get(f"/images/{image.id}")
    assert response.status_code == 200
    html = await text_of(response)
    assert f"<h1>{image.name}</h1>" in html

    dzi = attribute(html, "viewer", "data-dzi")
    assert dzi.startswith(f"/tiles/{image.id}/") and dzi.endswith("/image.dzi")
    assert attribute(html, "viewer", "data-width") == "300"
    assert attribute(html, "viewer", "data-height") == "300"
    assert attribute(html, "viewer", "data-fits") == "true"
    assert 'id="readout"' in html
    assert "vendor/openseadragon/openseadragon.min.js" in html and "viewer.js" in html
    served = await client.get(dzi)
    assert served.status_code == 200 and served.content_type == "application/xml"
    facts = dzi_facts(await text_of(served))
    assert (facts["width"], facts["height"], facts["format"]) == (300, 300, "jpeg")

    rows = header_table(html)
    assert rows["EXPTIME"] == [("42.0", "")]
    assert rows["DATE-OBS"][0][0] == "2026-03-14T21:05:00"
    assert rows["OBJECT"][0][0] == "Test field"
    ctype1, comment = rows["CTYPE1"][0]
    assert ctype1 == "RA---TAN" and comment == image.comments["CTYPE1"] and comment
    assert set(image.header) <= set(rows)
    assert image.sha256 in html and "<dt>File</dt><dd>field.fits</dd>" in html
    assert image.path not in unescape(html)  # the server's folders are for administrators


async def test_the_full_path_is_for_administrators_only(client, image, make_user):
    """Everyone who may see an image gets its file's name; administrators get where it lies."""
    from tests.helpers import log_in

    folder = image.path.rsplit("/", 1)[0]
    for who in ("guest", "mia", "root"):
        if who != "guest":
            await make_user(who, role="admin" if who == "root" else "user")
            assert (await log_in(client, who)).status_code == 302
        page = unescape(await text_of(await client.get(f"/images/{image.id}")))
        detail = await (await client.get(f"/api/images/{image.id}")).get_json()
        [listed] = (await (await client.get("/api/images")).get_json())["images"]
        if who == "root":
            assert f"<dt>Path</dt><dd>{image.path}</dd>" in page
            assert detail["path"] == listed["path"] == image.path
        else:
            assert "<dt>File</dt><dd>field.fits</dd>" in page and folder not in page, who
            assert detail["path"] == listed["path"] == "field.fits", who
            assert folder not in str(detail) + str(listed), who


async def test_original_link_and_static_assets_resolve(client, member, image):
    html = await text_of(await client.get(f"/images/{image.id}"))
    links = {unescape(link) for link in re.findall(r'(?:href|src)="(/[^"]*)"', html)}
    assert f"/images/{image.id}/original" in links and f"/api/images/{image.id}" in links
    for link in sorted(links):
        if link.startswith("/static/"):
            response = await client.get(link)
            assert response.status_code == 200, link
    prefix = attribute(html, "viewer", "data-prefix")
    assert (await client.get(prefix + "home_rest.png")).status_code == 200


async def test_hostile_header_text_is_escaped_on_the_page_and_in_the_portal(client, add_image):
    image = await add_image("hostile.fits", OBJECT=HOSTILE_OBJECT, OBSERVER=HOSTILE_VALUE,
                            HISTORY=HOSTILE_HISTORY, FILTER=("r", HOSTILE_COMMENT))
    assert image.name == HOSTILE_OBJECT
    assert image.header["OBSERVER"] == HOSTILE_VALUE and image.header["HISTORY"] == [HOSTILE_HISTORY]

    page = await text_of(await client.get(f"/images/{image.id}"))
    portal = await text_of(await client.get("/"))
    fragment = await text_of(await client.get("/", headers={"HX-Request": "true"}))
    for raw in (HOSTILE_OBJECT, "<script>alert", HOSTILE_VALUE, "<img src=x", HOSTILE_HISTORY, "<b>",
                HOSTILE_COMMENT, "<i>"):
        assert raw not in page, raw
    for html in (portal, fragment):
        assert "<script>alert" not in html
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html

    assert "<title>&lt;script&gt;alert(1)&lt;/script&gt; · ImageX</title>" in page
    assert "<h1>&lt;script&gt;alert(1)&lt;/script&gt;</h1>" in page
    assert "&#34;&gt;&lt;img src=x onerror=alert(1)&gt;" in page
    assert "&lt;b&gt;x&lt;/b&gt;" in page
    assert "&lt;i&gt;filter&lt;/i&gt;" in page
    rows = header_table(page)
    assert rows["OBSERVER"] == [(HOSTILE_VALUE, "")]
    assert (HOSTILE_HISTORY, "") in rows["HISTORY"]
    assert rows["FILTER"] == [("r", HOSTILE_COMMENT)]
    # the only <script> elements on the page are ours
    assert re.findall(r"<script[^>]*>", page) == [
        f'<script src="{src}" defer>' for src in re.findall(r'<script src="([^"]+)" defer>', page)]
    assert all(src.startswith("/static/") for src in re.findall(r'<script src="([^"]+)"', page))


async def test_unknown_image_is_a_404_page_with_a_message(client):
    response = await client.get("/images/nosuchimage")
    assert response.status_code == 404
    assert response.content_type.startswith("text/html")
    html = await text_of(response)
    assert "<h1>404</h1>" in html
    assert "there is no image" in html and "nosuchimage" in html

    hostile = await client.get("/images/" + quote("<img src=x onerror=alert(2)>", safe=""))
    assert hostile.status_code == 404
    hostile_html = await text_of(hostile)
    assert "<img src=x" not in hostile_html and "&lt;img src=x onerror=alert(2)&gt;" in hostile_html


async def test_unknown_image_asked_for_json_is_a_json_404(client):
    response = await client.get("/images/nosuchimage", headers={"Accept": "application/json"})
    assert response.status_code == 404
    payload = await response.get_json()
    assert payload["status"] == 404 and "there is no image" in payload["error"]


async def test_original_streams_the_exact_bytes_as_an_attachment(client, member, image):
    expected = hashlib.sha256(Path(image.path).read_bytes()).hexdigest()
    assert expected == image.sha256
    response = await client.get(f"/images/{image.id}/original")
    assert response.status_code == 200
    body = await response.get_data()
    assert hashlib.sha256(body).hexdigest() == expected and len(body) == image.size
    disposition = response.headers["Content-Disposition"]
    assert disposition.startswith("attachment") and "field.fits" in disposition
    assert response.content_type == "application/octet-stream"
    assert response.headers["Digest"] == f"sha-256={expected}"


async def test_original_of_a_deleted_file_is_gone(client, member, image):
    Path(image.path).unlink()
    response = await client.get(f"/images/{image.id}/original")
    assert response.status_code == 410
    html = await text_of(response)
    assert "<h1>410</h1>" in html and "no longer at" in html and "field.fits" in html
    # the rest of the image stays browsable
    assert (await client.get(f"/images/{image.id}")).status_code == 200


async def test_original_of_an_unknown_image_is_a_404(client):
    response = await client.get("/images/nosuchimage/original")
    assert response.status_code == 404
    assert "there is no image" in await text_of(response)


ODD_NAMES = ["line\nbreak.fits", 'quote"; semi.fits', "back\\slash.fits",
             "Überfeld ☉.fits", "tab\tand\rreturn.fits"]


@pytest.mark.parametrize("name", ODD_NAMES)
async def test_original_of_an_oddly_named_file_downloads_under_its_name(client, member, add_image, name):
    # a watched or batch file may be named anything the file system allows; its download must still work
    image = await add_image(name, size=64)
    response = await client.get(f"/images/{image.id}/original")
    assert response.status_code == 200
    assert hashlib.sha256(await response.get_data()).hexdigest() == image.sha256
    disposition = response.headers["Content-Disposition"]
    assert all(" " <= char <= "~" for char in disposition), disposition  # one clean ASCII header line
    plain = re.search(r'filename="([^"]*)"', disposition)
    assert plain is not None and len(plain.group(1)) == len(name)
    exact = re.search(r"filename\*=UTF-8''(\S+)$", disposition)
    assert exact is not None and unquote(exact.group(1)) == name
