"""Accounts in the browser tests: the administrator's first password, as the first start printed it, and
logging in through the login page."""

from __future__ import annotations

import re

from tests.browser.server_helpers import Server


def admin_password(server: Server) -> str:
    match = re.search(r"Created administrator 'admin' with password '([^']+)'", server.log.read_text())
    assert match, "the first start did not print the administrator's password"
    return match.group(1)


async def log_in(page, server: Server, username: str, password: str) -> None:
    await page.goto(server.url + "/login")
    await page.fill("input[name=username]", username)
    await page.fill("input[name=password]", password)
    await page.click("form.panel button[type=submit]")
    await page.wait_for_url(server.url + "/")
