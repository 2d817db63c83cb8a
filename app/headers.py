"""The security headers every response carries, set once by `create_app` after each request.

The Content-Security-Policy lets pages load scripts, styles, fonts and data only from this site: no inline
script (page behaviour lives in app/static/*.js; `<script type="application/json">` data blocks are not
run), no eval (htmx is told `allowEval: false`), no plugins, no `<base>` and no form posting elsewhere.
Framing is refused (`frame-ancestors 'none'` and `X-Frame-Options: DENY`) except for the embeds, whose
route names who may frame them with `allow_framing()`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import quote

# Quart is imported where a request is at hand: the tile layer and the nginx site take `TILE_HEADERS` from
# here, and the commands that write them (and the pool processes) need no web framework
if TYPE_CHECKING:
    from quart import Response

# OpenSeadragon (6.x) adds this one <style> to the page when a viewer opens (no outline around the focused
# canvas on touch screens); it is allowed by its hash instead of allowing inline styles.
# tests/test_headers.py checks the vendored file still holds exactly this text.
OPENSEADRAGON_STYLE = ("@media (hover: none) {    .openseadragon-canvas:focus {        "
                       "outline: none !important;    }}")
OPENSEADRAGON_STYLE_HASH = "sha256-9xTiqzfwFaL2SGb1rmr8gysEwVVjIvqWAgmZgqFqpEE="

# data: images: the favicon placeholder (`data:,`); blob: images: OpenSeadragon turns tiles fetched as data
# (its ajax loading) into images through blob: URLs, which only scripts of this page can make
POLICY = ("default-src 'self'; "
          f"style-src 'self' '{OPENSEADRAGON_STYLE_HASH}'; "
          "img-src 'self' data: blob:; "
          "object-src 'none'; base-uri 'none'; form-action 'self'")
NO_FRAMING = "'none'"
# The sky page's Aladin Lite (npm `aladin-lite`, its version pinned in package-lock.json) compiles the
# WebAssembly it carries inline as a data: URL (`wasm-unsafe-eval`, `connect-src data:`), starts a worker
# from a blob: URL, and adds one <style> element and a style attribute, allowed by their hashes.
# tests/browser/test_sky_browser.py loads the page and fails on any policy violation.
ALADIN_STYLE_HASHES = ("'sha256-cEnY4wnnUdAaYodEHQq0zu+362EwEHHSAlawP4BBKmw='",
                       "'sha256-wkY2X5hecQzbhnFCqvTpwrUJ1f4X8LH5WFjYUzv1wmU='")
SKY_POLICY = ("default-src 'self'; script-src 'self' 'wasm-unsafe-eval'; connect-src 'self' data:; "
              "worker-src 'self' blob:; "
              f"style-src 'self' 'unsafe-hashes' {' '.join(ALADIN_STYLE_HASHES)}; "
              "img-src 'self' data: blob:; "
              "object-src 'none'; base-uri 'none'; form-action 'self'")


def content_disposition(name: str) -> str:
    """An attachment header for a file of any name (RFC 6266): a plain-ASCII `filename` for old clients
    (anything else, quotes and backslashes become `_`) and the exact name, percent-encoded UTF-8, as
    `filename*`. A line break or a non-ASCII character in a name can then never break the answer."""
    fallback = "".join(char if " " <= char <= "~" and char not in '"\\' else "_" for char in name) or "file"
    exact = quote(name, safe="")
    if exact == fallback:
        return f'attachment; filename="{fallback}"'
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{exact}"


def allow_framing(sources: str) -> None:
    """Let the sites of `sources` (CSP frame-ancestors sources) frame this request's answer."""
    from quart import g

    g.frame_ancestors = sources


def use_sky_policy() -> None:
    """This request's answer is the sky page: the policy Aladin Lite needs (`SKY_POLICY`)."""
    from quart import g

    g.policy = SKY_POLICY


def content_security_policy(frame_ancestors: str = NO_FRAMING, policy: str = POLICY) -> str:
    """The policy of a page that the sites of `frame_ancestors` may frame."""
    return f"{policy}; frame-ancestors {frame_ancestors}"


# What every tile answer carries besides its own headers, in the tile layer (app/tiles/server.py) and the
# nginx site alike: tiles are never framed.
TILE_HEADERS: tuple[tuple[str, str], ...] = (
    ("Content-Security-Policy", content_security_policy()), ("X-Frame-Options", "DENY"),
    ("X-Content-Type-Options", "nosniff"), ("Referrer-Policy", "same-origin"))


async def add_security_headers(response: Response) -> Response:
    """After every request (pages, JSON, errors, tiles and static files alike)."""
    from quart import g

    frame_ancestors: str = g.get("frame_ancestors") or NO_FRAMING
    headers = response.headers
    headers["Content-Security-Policy"] = content_security_policy(frame_ancestors, g.get("policy") or POLICY)
    if frame_ancestors == NO_FRAMING:
        headers["X-Frame-Options"] = "DENY"  # for browsers without frame-ancestors
    else:
        headers.pop("X-Frame-Options", None)
    headers["X-Content-Type-Options"] = "nosniff"
    headers["Referrer-Policy"] = "same-origin"
    return response


# Answers that are the same for whoever holds the URL: static files, and tiles, whose URL carries the
# permission (a signed, expiring token for one tile generation). Every other answer may depend on who asks.
SHARED_ENDPOINTS = frozenset({"static", "tiles.tile", "hips.file"})  # hips.file: only the public survey
PER_ASKER = "private, no-cache"
ASKER_HEADERS = ("Cookie", "Authorization")


async def add_cache_headers(response: Response) -> Response:
    """After every request: an answer that depends on who asks (pages, JSON, originals, zip downloads,
    errors) is never stored by a shared cache (a proxy_cache in front would otherwise hand one user's
    private original to the next asker) and is revalidated by the browser: `private, no-cache` (an answer
    that said `no-store` keeps it), varying on the cookie and the Authorization header."""
    from quart import request

    if request.endpoint in SHARED_ENDPOINTS:
        return response
    if "no-store" not in response.headers.get("Cache-Control", ""):
        response.headers["Cache-Control"] = PER_ASKER
    for name in ASKER_HEADERS:
        response.vary.add(name)
    return response
