"""The Content-Security-Policy in headless Chromium against a real server: the viewer, search, upload,
admin and mosaic pages (and an embed) run with no policy violation, and the behaviours moved out of inline
handlers into static/imagex.js still work (select all, select on focus, copy)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.browser.accounts_helpers import admin_password, log_in
from tests.browser.server_helpers import Server

pytestmark = pytest.mark.browser

# Records violations as the page sees them (an init script runs before the page's own scripts, and the
# policy does not apply to it).
WATCH_VIOLATIONS = """
window.__violations = [];
document.addEventListener("securitypolicyviolation", function (event) {
  window.__violations.push(event.violatedDirective + " " + event.blockedURI + " " + event.sourceFile + ":" +
                           event.lineNumber);
});
"""
IDLE = 30_000  # a loaded machine (CI) once took over 15 s to settle the viewer page


class Violations:
    """Console messages about the Content-Security-Policy, and violation events, of one page."""

    def __init__(self, page: Any) -> None:
        self.page = page
        self.console: list[str] = []
        self.errors: list[str] = []
        page.on("console", lambda message: self.console.append(message.text)
                if "Content Security Policy" in message.text or "Content-Security-Policy" in message.text
                else None)
        page.on("pageerror", lambda error: self.errors.append(str(error)))

    async def seen(self) -> list[str]:
        events = await self.page.evaluate("() => window.__violations || []")
        return [*self.console, *events, *self.errors]


async def visit(page: Any, url: str) -> None:
    response = await page.goto(url)
    assert response is not None and response.status == 200, url
    assert "default-src 'self'" in (await response.all_headers())["content-security-policy"]
    await page.wait_for_load_state("networkidle", timeout=IDLE)


async def test_pages_run_under_the_policy_without_violations(server: Server, page: Any) -> None:
    await page.add_init_script(WATCH_VIOLATIONS)
    violations = Violations(page)
    await log_in(page, server, "admin", admin_password(server))
    image_id = server.image["id"]

    # the viewer: OpenSeadragon draws tiles, its style is allowed by hash
    await visit(page, server.url + server.image["url"])
    await page.wait_for_function("() => { const v = window.imagexViewer; return !!v && "
                                 "v.world.getItemCount() > 0 && v.world.getItemAt(0).getFullyLoaded(); }",
                                 timeout=30_000)
    await page.mouse.move(500, 400)
    assert await violations.seen() == []

    # the mosaic and an embed of the same image
    for path in (f"/mosaic?ids={image_id}", f"/embed/images/{image_id}"):
        await visit(page, server.url + path)
        await page.wait_for_function("() => !!window.imagexMosaic", timeout=30_000)
        assert await violations.seen() == [], path

    # search: results update in place (htmx without eval); "select all" checks every box
    await visit(page, server.url + "/search")
    await page.click("#results th a:text-is('Name')")
    await page.wait_for_selector("#results th a[aria-sort]", timeout=IDLE)
    await page.wait_for_function("() => location.search.includes('sort=name')", timeout=IDLE)
    await page.check("#select-all")
    boxes = page.locator("#selection input[name=ids]")
    assert await boxes.count() >= 1
    assert all([await boxes.nth(n).is_checked() for n in range(await boxes.count())])
    await page.uncheck("#select-all")
    assert not any([await boxes.nth(n).is_checked() for n in range(await boxes.count())])
    assert await violations.seen() == []

    # upload and the admin pages (the monitor polls with htmx)
    for path in ("/upload", "/admin", "/admin/monitor", "/admin/search", "/account", "/admin/users"):
        await visit(page, server.url + path)
        assert await violations.seen() == [], path

    # a new account's password, shown once: focus selects it, Copy puts it on the clipboard
    await page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=server.url)
    await page.fill("#users input[name=username]", "csp-check")
    await page.click("#users form[action='/admin/users'] button[type=submit]")
    await page.wait_for_selector("#new-password")
    password = await page.input_value("#new-password")
    await page.focus("#new-password")
    selected = await page.evaluate(
        "() => { const f = document.getElementById('new-password'); return f.value.substring("
        "f.selectionStart, f.selectionEnd); }")
    assert selected == password
    await page.click("button[data-copy=new-password]")
    await page.wait_for_function("(expected) => navigator.clipboard.readText().then(t => t === expected)",
                                 arg=password, timeout=IDLE)
    # and an invitation link
    await visit(page, server.url + "/admin/invitations")
    await page.click("#invitations form[action='/admin/invitations'] button[type=submit]")
    await page.wait_for_selector("#invitation-link")
    assert await violations.seen() == []
