"""A new visitor and an administrator, in headless Chromium against a real server: the admin changes
switches in the control panel and sees their effect at once; a newcomer registers, logs in and sees only
what they may."""

from __future__ import annotations

import re
import subprocess

import pytest
from astropy.io import fits

from app.samples import FIELD_DEC, FIELD_RA, celestial_wcs, star_field
from tests.browser.accounts_helpers import admin_password, log_in
from tests.browser.server_helpers import BIN, Server

pytestmark = pytest.mark.browser
NEWCOMER_PASSWORD = "a long new password"


def add_private_image(server: Server) -> str:
    wcs = celestial_wcs(FIELD_RA, FIELD_DEC, 64, 64)
    header = wcs.to_header()
    header["OBJECT"] = "Secret field"
    path = server.data.parent / "secret.fits"
    fits.PrimaryHDU(star_field(wcs, 64, 64), header).writeto(path, overwrite=True)
    env = {"IMAGEX_DATA": str(server.data), "PATH": str(BIN)}
    done = subprocess.run([str(BIN / "imagex"), "ingest", "--no-progress", str(path)], env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    return path.name


async def test_admin_switches_apply_at_once_and_a_newcomer_sees_only_what_they_may(server, page):
    add_private_image(server)
    await log_in(page, server, "admin", admin_password(server))
    assert "Secret field" in await page.content()  # the admin sees the private image

    await page.goto(server.url + "/admin")
    await page.fill("input[name=site_title]", "Night Sky Lab")
    await page.select_option("select[name=registration]", "open")
    await page.check("input[name=demo_mode]")
    await page.click("text=Save settings")
    await page.wait_for_function("() => document.title.includes('Night Sky Lab')")
    assert await page.locator(".brand").inner_text() == "Night Sky Lab"
    assert await page.locator(".banner").count() == 1  # the demo banner, without a reload

    newcomer = await page.context.browser.new_context()
    visitor = await newcomer.new_page()
    await visitor.goto(server.url + "/register")
    assert "Night Sky Lab" in await visitor.title()
    # demo mode: the site is read-only, so nobody may register
    assert "no new accounts can be made" in await visitor.locator("main").inner_text()
    assert await visitor.locator("input[name=password2]").count() == 0

    await page.goto(server.url + "/admin")
    await page.uncheck("input[name=demo_mode]")
    await page.click("text=Save settings")
    await page.wait_for_function("() => document.querySelectorAll('.banner').length === 0")

    await visitor.goto(server.url + "/register")
    await visitor.fill("input[name=username]", "newcomer")
    await visitor.fill("input[name=password]", NEWCOMER_PASSWORD)
    await visitor.fill("input[name=password2]", NEWCOMER_PASSWORD)
    await visitor.click("form button[type=submit]")
    await visitor.wait_for_url(re.compile(re.escape(server.url) + r"/account\?done=registered$"))
    await visitor.goto(server.url + "/")
    portal = await visitor.content()
    assert "newcomer" in portal and "Log out" in portal
    assert "Browser field" in portal  # public
    assert "Secret field" not in portal  # private to the site's admins
    listed = await visitor.evaluate("fetch('/api/images').then(r => r.json())")
    assert [image["name"] for image in listed["images"]] == ["Browser field"] and listed["total"] == 1
    await newcomer.close()
