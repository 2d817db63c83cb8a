"""Security headers on every answer (pages, fragments, JSON, errors, tiles, static files) and pages that
run under the Content-Security-Policy: no inline script, no inline event handler, no inline style, no htmx
eval. Every GET route of the app is in the table below: a new route fails the test until it is added."""

from __future__ import annotations

import base64
import hashlib
import re
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from app import headers
from app.samples import FIELD_DEC, FIELD_RA
from tests.helpers import csrf_of
from tests.routes.pages import directives, text_of

STATIC = Path(__file__).resolve().parents[2] / "app" / "static"
TEMPLATES = Path(__file__).resolve().parents[2] / "app" / "templates"
UNUSED_ID = "Zz9Zz9Zz9Zz9"

# (path, expected status): every GET route, as an administrator sees it; {image}, {job} and {tiles} are
# filled in from a real ingested image. Errors must carry the headers as well.
GET_ROUTES: list[tuple[str, int]] = [
    ("/", 200),
    ("/account", 200),
    ("/admin", 200),
    ("/admin/invitations", 200),
    ("/admin/monitor", 200),
    ("/admin/search", 200),
    ("/admin/search/elements/{missing}/edit", 404),
    ("/admin/search/options?type=number", 200),
    ("/admin/users", 200),
    ("/api/admin/monitor", 200),
    ("/api/admin/search-elements", 200),
    ("/api/images", 200),
    ("/api/images/{image}", 200),
    ("/api/images/{image}/histogram", 200),
    (f"/api/images/{{image}}/locate?ra={FIELD_RA}&dec={FIELD_DEC}", 200),
    ("/api/images/{image}/position?x=3&y=4", 200),
    ("/api/images/{image}/readout", 200),
    ("/api/jobs", 200),
    ("/api/jobs/{job}", 200),
    ("/api/me", 200),
    ("/api/mosaic?ids={image}", 200),
    ("/api/search", 200),
    ("/api/search/footprints", 200),
    ("/api/mosaic/locate?ids={image}&ra=150.1&dec=2.2", 200),
    ("/api/openapi.json", 200),
    ("/api/search/suggest/{missing}", 404),
    ("/api/tokens", 200),
    ("/embed/images/{image}", 200),
    ("/embed/images/{missing}", 404),
    ("/embed/mosaic?ids={image}", 200),
    ("/healthz", 200),
    ("/hips/public/properties", 404),  # HiPS: the survey is off in these tests (tests/hips/ serves it)
    ("/hips/registered/forged/properties", 403),  # HiPS: a non-public survey needs its signed token
    ("/images/{image}", 200),
    ("/images/{image}/original", 200),
    ("/images/{image}/tiling", 200),  # pyramids built: nothing (htmx removes the notice)
    ("/images/{missing}", 404),
    ("/login", 200),
    ("/mosaic?ids={image}", 200),
    ("/register", 403),
    ("/search", 200),
    ("/sky", 200),
    ("/embed/sky", 200),
    ("/search/download?ids={image}", 200),
    ("/search/open?ids={image}", 303),
    ("/search/suggest/{missing}", 404),
    ("/static/imagex.js", 200),
    ("/tiles/{tiles}image.dzi", 200),
    ("/tiles/{image}/forged/image.dzi", 403),
    ("/upload", 200),
    ("/upload/jobs/{job}", 200),
    ("/upload/storage", 200),
    ("/no/such/page", 404),
]
EMBEDS = {"/embed/images/{image}", "/embed/images/{missing}", "/embed/mosaic?ids={image}"}


def check_headers(response: Any, *, framed_by: str = "'none'", sky: bool = False) -> None:
    policy = directives(response.headers["Content-Security-Policy"])
    expected = {
        "default-src": "'self'", "style-src": f"'self' '{headers.OPENSEADRAGON_STYLE_HASH}'",
        "img-src": "'self' data: blob:", "object-src": "'none'", "base-uri": "'none'",
        "form-action": "'self'", "frame-ancestors": framed_by}
    if sky:  # Aladin Lite: its WebAssembly (inline, as data:), its worker, its style element and attribute
        expected |= {"script-src": "'self' 'wasm-unsafe-eval'", "connect-src": "'self' data:",
                     "worker-src": "'self' blob:",
                     "style-src": "'self' 'unsafe-hashes' " + " ".join(headers.ALADIN_STYLE_HASHES)}
    assert policy == expected
    assert "'unsafe-inline'" not in response.headers["Content-Security-Policy"]
    assert "'unsafe-eval'" not in response.headers["Content-Security-Policy"]
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Referrer-Policy"] == "same-origin"
    if framed_by == "'none'":
        assert response.headers["X-Frame-Options"] == "DENY"
    else:
        assert "X-Frame-Options" not in response.headers


class InlineCode(HTMLParser):
    """Finds what a Content-Security-Policy without 'unsafe-inline' would block or what needs eval."""

    def __init__(self) -> None:
        super().__init__()
        self.found: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        names = dict(attrs)
        if tag == "script" and "src" not in names and names.get("type") != "application/json":
            self.found.append(f"inline <script {attrs}>")
        if tag == "style":
            self.found.append("<style> element")
        for name, value in attrs:
            if name.startswith(("on", "hx-on", "data-hx-on")) or name == "style" or \
                    (name in ("hx-vars", "hx-vals") and (value or "").lstrip().startswith("js:")):
                self.found.append(f"<{tag} {name}={value!r}>")
            if name in ("href", "src", "action", "formaction") and \
                    (value or "").strip().lower().startswith("javascript:"):
                self.found.append(f"<{tag} {name}={value!r}>")


def inline_code(html: str) -> list[str]:
    parser = InlineCode()
    parser.feed(html)
    parser.close()
    return parser.found


@pytest.fixture
async def filled(admin: Any, archive: Any, image: Any) -> dict[str, str]:
    """The placeholders of GET_ROUTES for a real ingested image, with the admin logged in."""
    [job] = await archive.store.list_jobs()
    mosaic = await (await admin.get(f"/api/mosaic?ids={image.id}")).get_json()
    tiles = mosaic["layers"][0]["tiles_url"].removeprefix("/tiles/")
    return {"image": image.id, "job": job.id, "tiles": tiles, "missing": UNUSED_ID}


def test_every_get_route_is_in_the_table(client: Any) -> None:
    tested = {re.sub(r"\?.*", "", path) for path, _ in GET_ROUTES}
    for rule in client.app.url_map.iter_rules():
        if "GET" not in rule.methods:
            continue
        pattern = re.sub(r"<[^>]+>", "[^/]+", rule.rule.replace("<path:", "<").replace(".", r"\."))
        pattern = pattern.replace("[^/]+", ".+") if "path:" in rule.rule else pattern
        assert any(re.fullmatch(pattern, path.format(image="x", job="x", tiles="x/t/", missing="x"))
                   for path in tested), f"add {rule.rule} to GET_ROUTES"


async def test_every_answer_carries_the_security_headers(admin: Any, filled: dict[str, str]) -> None:
    for template, status in GET_ROUTES:
        path = template.format(**filled)
        response = await admin.get(path)
        assert response.status_code == status, (path, await text_of(response))
        framed_by = "'self'" if template == "/embed/sky" else "*" if template in EMBEDS else "'none'"
        check_headers(response, framed_by=framed_by, sky=template in ("/sky", "/embed/sky"))
        if response.mimetype == "text/html":
            assert inline_code(await text_of(response)) == [], path


def check_cache_headers(path: str, response: Any) -> None:
    """Tiles and static files are the same for whoever holds the URL (a tile's URL is its permission);
    every other answer depends on who asks: never stored by a shared cache, varying on cookie and token."""
    control = response.headers.get("Cache-Control", "")
    shared = ("/tiles/", "/hips/")  # HiPS: the public survey's files are the same for everyone
    if path.startswith("/static/") or (path.startswith(shared) and response.status_code == 200):
        assert "private" not in control and "no-store" not in control, (path, control)
        if path.startswith(shared):
            assert control.startswith("public, max-age="), (path, control)
        return
    if path.startswith(shared):  # a refused tile URL is refused for everyone, and kept by no one
        assert "public" not in control and "max-age" not in control, (path, control)
        return
    assert "public" not in control and "max-age" not in control, (path, control)
    assert control in (headers.PER_ASKER, "no-store"), (path, control)
    vary = {part.strip().lower() for part in response.headers.get("Vary", "").split(",")}
    assert {"cookie", "authorization"} <= vary, (path, response.headers.get("Vary"))


async def test_answers_that_depend_on_the_asker_are_never_shared(admin: Any, filled: dict[str, str]) -> None:
    for template, status in GET_ROUTES:
        path = template.format(**filled)
        response = await admin.get(path)
        assert response.status_code == status, path
        check_cache_headers(path, response)
    # the same as a guest, and for posts and errors
    token = await csrf_of(admin, "/account")
    answers = {
        "/api/tokens (post)": await admin.post("/api/tokens", json={"name": "ci"},
                                               headers={"X-CSRF-Token": token}),
        "/api/images/x (delete)": await admin.delete(f"/api/images/{UNUSED_ID}",
                                                     headers={"X-CSRF-Token": token}),
        "/search/download (post)": await admin.post("/search/download", form={"ids": filled["image"],
                                                                                "csrf_token": token}),
    }
    for name, response in answers.items():
        check_cache_headers(name, response)
    assert answers["/api/tokens (post)"].headers["Cache-Control"] == "no-store"  # a secret shown once


async def test_a_private_original_is_not_publicly_cacheable(client: Any, add_image: Any,
                                                            make_user: Any) -> None:
    from tests.helpers import log_in

    hidden = await add_image("mine.fits", size=80, owner="alice", visibility="private")
    await make_user("alice")
    assert (await log_in(client, "alice")).status_code == 302
    response = await client.get(f"/images/{hidden.id}/original")
    assert response.status_code == 200
    check_cache_headers(f"/images/{hidden.id}/original", response)
    assert response.headers["Cache-Control"] == "private, no-cache"
    # a conditional request still gets its 304 (the browser revalidates; no shared cache keeps it)
    again = await client.get(f"/images/{hidden.id}/original",
                             headers={"If-None-Match": response.headers["ETag"]})
    assert again.status_code == 304 and again.headers["Cache-Control"] == "private, no-cache"


async def test_posts_fragments_and_json_errors_carry_them_too(admin: Any, filled: dict[str, str]) -> None:
    token = await csrf_of(admin, "/admin/invitations")
    answers = [
        await admin.post("/admin/invitations", form={"days": "3", "csrf_token": token},
                         headers={"HX-Request": "true"}),
        await admin.post("/admin/users", form={"username": "newbie", "role": "user", "csrf_token": token},
                         headers={"HX-Request": "true"}),
        await admin.post("/admin/users", form={"username": "newbie2", "csrf_token": "forged"}),
        await admin.post("/api/tokens", json={"name": "x" * 200}, headers={"X-CSRF-Token": token}),
        await admin.delete(f"/api/images/{UNUSED_ID}", headers={"X-CSRF-Token": token}),
    ]
    assert [response.status_code for response in answers] == [201, 201, 403, 400, 404]
    for response in answers:
        check_headers(response)
    # the fragments with a value shown once use the data attributes of imagex.js, not inline handlers
    for response, field in zip(answers[:2], ("invitation-link", "new-password"), strict=True):
        html = await text_of(response)
        assert inline_code(html) == []
        assert f'id="{field}"' in html and "data-select-on-focus" in html and f'data-copy="{field}"' in html


async def test_search_results_select_all_without_inline_script(admin: Any, filled: dict[str, str]) -> None:
    html = await text_of(await admin.get("/search"))
    assert 'data-select-all="#selection input[name=ids]"' in html
    assert inline_code(html) == []


async def test_a_private_image_embed_may_be_framed_by_this_site_only(client: Any, add_image: Any,
                                                                     make_user: Any) -> None:
    from tests.helpers import log_in

    hidden = await add_image("hidden.fits", size=80, owner="alice", visibility="private")
    await make_user("alice")
    assert (await log_in(client, "alice")).status_code == 302
    check_headers(await client.get(f"/embed/images/{hidden.id}"), framed_by="'self'")


def test_no_template_holds_inline_code() -> None:
    """Every template and fragment, rendered or not by the tests above."""
    for template in sorted(TEMPLATES.glob("*.html")):
        source = re.sub(r"{#.*?#}", "", template.read_text(), flags=re.S)  # Jinja comments
        assert inline_code(source) == [], template.name


def test_htmx_is_configured_for_the_policy() -> None:
    base = (TEMPLATES / "base.html").read_text()
    assert '"allowEval":false' in base and '"includeIndicatorStyles":false' in base


def test_the_openseadragon_style_hash_matches_the_vendored_library() -> None:
    library = (STATIC / "vendor" / "openseadragon" / "openseadragon.min.js").read_text()
    assert f'textContent="{headers.OPENSEADRAGON_STYLE}"' in library, "OpenSeadragon's injected style changed"
    digest = base64.b64encode(hashlib.sha256(headers.OPENSEADRAGON_STYLE.encode()).digest()).decode()
    assert headers.OPENSEADRAGON_STYLE_HASH == f"sha256-{digest}"
