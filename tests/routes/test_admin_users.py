"""The admin area's users and invitations: counts, roles, quotas, disabling, new accounts and invitation
links. Real SQLite, the real Quart test client, real files."""

from __future__ import annotations

import asyncio
import re
import time
from html import unescape

import pytest

from app.identity import digest
from app.site_policy import SITE_SETTINGS
from app.store.records import Invitation
from tests.helpers import csrf_of, ingest, log_in
from tests.routes.admin_helpers import (
    HTMX,
    admin_client,
    post,
    sign_in,
)
from tests.routes.pages import text_of


# users -----------------------------------------------------------------------------------------------
def row_of(html: str, user_id: str) -> str:
    match = re.search(rf'<tr id="user-{user_id}"[^>]*>(.*?)</tr>', html, re.S)
    assert match, f"no row for {user_id}"
    return match.group(1)


def cells(row: str) -> list[str]:
    return [re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", cell)).strip()
            for cell in re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)]


async def test_the_users_page_counts_images_and_bytes(archive, client, account, write_fits):
    root = await admin_client(client, account)
    alice = await account("alice", email="alice@example.org")
    bob = await account("bob")
    await archive.store.update_user(bob.id, quota=5 * 10**9)
    first = write_fits("a.fits", size=64)
    second = write_fits("b.fits", size=96)
    jobs = await ingest(archive, first, second, owner="alice")
    assert [job.state for job in jobs] == ["done", "done"]
    expected = first.stat().st_size + second.stat().st_size

    html = await text_of(await client.get("/admin/users"))
    alice_cells = cells(row_of(html, alice.id))
    assert alice_cells[0].startswith("alice") and "alice@example.org" in alice_cells[0]
    assert alice_cells[2] == "2"
    from app.formatting import human_bytes

    assert alice_cells[3].startswith(human_bytes(expected))
    assert "10.0 GB (site default)" in alice_cells[4]
    assert alice_cells[5].startswith("active")
    assert alice_cells[7] == "never"
    bob_cells = cells(row_of(html, bob.id))
    assert bob_cells[2] == "0" and bob_cells[3].startswith("0 B")
    assert "5.0 GB" in bob_cells[4] and "site default" not in bob_cells[4]
    root_cells = cells(row_of(html, root.id))
    assert "(you)" in root_cells[0] and root_cells[7] != "never"
    assert 'name="role"' in row_of(html, root.id)
    usage = await archive.store.usage()
    assert usage["alice"].images == 2 and usage["alice"].bytes == expected


async def test_role_changes(archive, client, account):
    await admin_client(client, account)
    bob = await account("bob")
    response = await post(client, f"/admin/users/{bob.id}/role", {"role": "admin"}, headers=HTMX)
    assert response.status_code == 200
    html = await text_of(response)
    assert html.lstrip().startswith(f'<tr id="user-{bob.id}"') and "bob is now an administrator" in html
    assert (await archive.store.get_user(bob.id)).role == "admin"
    response = await post(client, f"/admin/users/{bob.id}/role", {"role": "admin"})
    assert "already an administrator" in await text_of(response)
    response = await post(client, f"/admin/users/{bob.id}/role", {"role": "user"})
    assert response.status_code == 200 and "bob is now a user" in await text_of(response)
    assert (await archive.store.get_user(bob.id)).role == "user"
    response = await post(client, f"/admin/users/{bob.id}/role", {"role": "owner"})
    assert response.status_code == 422 and "must be one of" in await text_of(response)
    assert (await archive.store.get_user(bob.id)).role == "user"
    assert (await post(client, "/admin/users/nobody/role", {"role": "user"})).status_code == 404


async def test_an_admin_cannot_demote_or_disable_themself(archive, client, account):
    root = await admin_client(client, account)
    response = await post(client, f"/admin/users/{root.id}/role", {"role": "user"}, headers=HTMX)
    assert response.status_code == 409
    assert "cannot demote your own account" in await text_of(response)
    response = await post(client, f"/admin/users/{root.id}/disable", {})
    assert response.status_code == 409
    html = await text_of(response)
    assert "cannot disable your own account" in row_of(html, root.id)  # the message sits by the row
    fresh = await archive.store.get_user(root.id)
    assert fresh.role == "admin" and not fresh.disabled
    assert (await client.get("/admin")).status_code == 200


async def test_two_admins_demoting_each_other_at_once_leave_one(archive, client, account):
    first = await admin_client(client, account, "first")
    other = client.app.test_client()
    second = await admin_client(other, account, "second")
    first_token, second_token = await csrf_of(client), await csrf_of(other)
    await asyncio.gather(
        client.post(f"/admin/users/{second.id}/disable", form={"csrf_token": first_token}),
        other.post(f"/admin/users/{first.id}/disable", form={"csrf_token": second_token}))
    admins = [user for user in await archive.store.list_users() if user.is_admin]
    assert admins


async def test_the_last_enabled_admin_is_kept(archive, client, account):
    root = await admin_client(client, account)
    other = await account("other", role="admin")
    await archive.store.update_user(other.id, disabled=True)
    # a disabled admin does not count: root is the last enabled one, and cannot leave
    response = await post(client, f"/admin/users/{root.id}/role", {"role": "user"})
    assert response.status_code == 409
    # re-enabling and demoting the other admin is fine while root stays
    assert (await post(client, f"/admin/users/{other.id}/enable", {})).status_code == 200
    assert (await post(client, f"/admin/users/{other.id}/role", {"role": "user"})).status_code == 200


@pytest.mark.parametrize(("typed", "stored", "shown"), [
    ("5 GB", 5 * 10**9, "Quota set to 5.0 GB"),
    ("1073741824", 2**30, "Quota set to 1.1 GB"),
    ("0", 0, "Quota set to 0 B"),
    ("", None, "Quota follows the site default (10.0 GB)"),
])
async def test_quota(archive, client, account, typed, stored, shown):
    await admin_client(client, account)
    bob = await account("bob")
    await archive.store.update_user(bob.id, quota=123)
    response = await post(client, f"/admin/users/{bob.id}/quota", {"quota": typed}, headers=HTMX)
    assert response.status_code == 200
    html = await text_of(response)
    assert shown in html
    assert (await archive.store.get_user(bob.id)).quota == stored
    if stored is None:
        assert "(site default)" in html


@pytest.mark.parametrize("typed", ["-5", "lots", "1.5 bytes", "1.5", "5 parsecs"])
async def test_an_invalid_quota_is_refused(archive, client, account, typed):
    await admin_client(client, account)
    bob = await account("bob")
    response = await post(client, f"/admin/users/{bob.id}/quota", {"quota": typed}, headers=HTMX)
    assert response.status_code == 422
    assert "Quota not changed" in await text_of(response)
    assert (await archive.store.get_user(bob.id)).quota is None


async def test_disabling_ends_sessions_and_refuses_logins(archive, client, account):
    await admin_client(client, account)
    alice = await account("alice")
    browser = client.app.test_client()
    await sign_in(browser, "alice")
    assert "Log out" in await text_of(await browser.get("/"))

    response = await post(client, f"/admin/users/{alice.id}/disable", {}, headers=HTMX)
    assert response.status_code == 200
    html = await text_of(response)
    assert "disabled and logged out everywhere" in html and "Re-enable" in html
    assert (await archive.store.get_user(alice.id)).disabled
    assert "Log out" not in await text_of(await browser.get("/"))
    response = await log_in(browser, "alice")
    assert response.status_code == 403 and "disabled" in await text_of(response)

    response = await post(client, f"/admin/users/{alice.id}/enable", {})
    assert response.status_code == 200 and "may log in again" in await text_of(response)
    assert not (await archive.store.get_user(alice.id)).disabled
    assert (await log_in(browser, "alice")).status_code == 302


async def test_adding_an_account_shows_its_password_once(archive, client, account):
    await admin_client(client, account)
    response = await post(client, "/admin/users", {"username": "carol", "email": "carol@example.org",
                                                   "role": "user"}, headers=HTMX)
    assert response.status_code == 201
    html = await text_of(response)
    assert html.lstrip().startswith('<section id="users"')
    password = re.search(r'id="new-password" value="([^"]+)"', html).group(1)
    carol = await archive.store.get_user_by_name("carol")
    assert carol.role == "user" and carol.email == "carol@example.org"
    assert password not in await text_of(await client.get("/admin/users"))
    browser = client.app.test_client()
    assert (await log_in(browser, "carol", password)).status_code == 302

    for form, message in [({"username": "carol"}, "is taken"),
                          ({"username": "no spaces"}, "A username has"),
                          ({"username": "dave", "email": "x@"}, "not an email address"),
                          ({"username": "dave", "role": "root"}, "must be one of")]:
        response = await post(client, "/admin/users", form)
        assert response.status_code == 422, form
        assert message in unescape(await text_of(response)), form
    assert await archive.store.get_user_by_name("dave") is None


# invitations -----------------------------------------------------------------------------------------
async def test_an_invitation_link_is_shown_once_and_works_once(archive, client, account):
    root = await admin_client(client, account)
    before = time.time()
    response = await post(client, "/admin/invitations", {"days": "3"}, headers=HTMX)
    assert response.status_code == 201
    html = await text_of(response)
    link = re.search(r'id="invitation-link" value="([^"]+)"', html).group(1)
    assert link.startswith("http://localhost/register?invite=")
    code = link.split("invite=", 1)[1]
    invitation = await archive.store.get_invitation(digest(code))
    assert invitation is not None and invitation.created_by == root.username
    assert before + 3 * 86400 - 5 < invitation.expires < time.time() + 3 * 86400 + 5
    page = await text_of(await client.get("/admin/invitations"))
    assert code not in page
    assert f'id="invitation-{invitation.id}"' in page and ">unused<" in page

    assert await archive.store.use_invitation(digest(code), "dave")
    assert not await archive.store.use_invitation(digest(code), "erin")
    page = await text_of(await client.get("/admin/invitations"))
    assert "used by <strong>dave</strong>" in page


async def test_invitations_list_expired_ones_and_default_to_seven_days(archive, client, account):
    await admin_client(client, account)
    await archive.store.add_invitation(Invitation(id="old", code_hash=digest("old"), created_by="root",
                                                  expires=time.time() - 60))
    response = await post(client, "/admin/invitations", {})
    assert response.status_code == 201
    newest = (await archive.store.list_invitations())[0]
    assert abs(newest.expires - time.time() - 7 * 86400) < 10
    page = await text_of(await client.get("/admin/invitations"))
    assert re.search(r'id="invitation-old".*?class="state-expired">expired<', page, re.S)
    assert not await archive.store.use_invitation(digest("old"), "late")
    assert "Registration is currently <strong>closed</strong>" in page


async def test_a_revoked_invitation_stops_working_at_once(archive, client, account):
    await admin_client(client, account)
    response = await post(client, "/admin/invitations", {"days": "3"}, headers=HTMX)
    code = re.search(r'invite=([^"]+)"', await text_of(response)).group(1)
    invitation = await archive.store.get_invitation(digest(code))
    page = await text_of(await client.get("/admin/invitations"))
    assert f"/admin/invitations/{invitation.id}/revoke" in page
    response = await post(client, f"/admin/invitations/{invitation.id}/revoke", {}, headers=HTMX)
    assert response.status_code == 200
    assert re.search(rf'id="invitation-{invitation.id}".*?class="state-expired">expired<',
                     await text_of(response), re.S)
    assert not await archive.store.use_invitation(digest(code), "mallory")
    again = await post(client, f"/admin/invitations/{invitation.id}/revoke", {}, headers=HTMX)
    assert again.status_code == 409
    assert "already used or had expired" in await text_of(again)


@pytest.mark.parametrize("days", ["0", "366", "soon", "-1", "1.5"])
async def test_an_invalid_expiry_is_refused(archive, client, account, days):
    await admin_client(client, account)
    response = await post(client, "/admin/invitations", {"days": days}, headers=HTMX)
    assert response.status_code == 422
    assert "The expiry must be 1 to 365 days" in await text_of(response)
    assert await archive.store.list_invitations() == []


def test_the_readme_documents_every_site_setting():
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    section = readme.split("## Administration\n", 1)[1].split("\n## ", 1)[0]
    for setting in SITE_SETTINGS:
        assert f"| {setting.label} |" in section, setting.name
