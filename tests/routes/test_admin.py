"""The admin area: who may reach it, the control panel (every setting and its effect), users and
invitations. Real SQLite, the real Quart test client, real files."""

from __future__ import annotations

import asyncio
import re
import secrets
import time
from collections.abc import Awaitable, Callable
from html import unescape
from typing import Any

import pytest

from app.identity import SESSION_COOKIE, digest, hash_password
from app.site_policy import SITE_SETTINGS, Site
from app.store.base import ApiToken, Invitation, NewJob, User, new_id
from tests.helpers import PASSWORD, csrf_of, ingest, log_in
from tests.routes.conftest import text_of

PAGES = ["/admin", "/admin/users", "/admin/invitations", "/admin/monitor"]
HTMX = {"HX-Request": "true"}


@pytest.fixture
def account(archive: Any) -> Callable[..., Awaitable[User]]:
    """`await account("alice", role="user")`: a real account with the password PASSWORD. Its argon2 hash is
    made once per run with the real hasher (argon2id is slow by design)."""

    async def make(username: str, *, role: str = "user", **fields: Any) -> User:
        if not _HASH:
            _HASH.append(await hash_password(PASSWORD))
        user = User(id=new_id(), username=username, role=role, password_hash=_HASH[0],
                    display_name=username, **fields)
        await archive.store.add_user(user)
        return user

    return make


_HASH: list[str] = []


async def sign_in(client: Any, username: str) -> None:
    """A login session as the login form starts it (a random key, its digest stored, the key in the
    cookie), without the deliberately slow password check; the form itself is used where it matters."""
    store = client.app.extensions["imagex"].store
    user = await store.get_user_by_name(username)
    key = secrets.token_urlsafe(32)
    await store.add_session(digest(key), user.id, time.time() + 3600)
    await store.update_user(user.id, last_login=time.time())
    client.set_cookie("localhost", SESSION_COOKIE, key)


async def admin_client(client: Any, account: Any, name: str = "root") -> User:
    """Sign `client` in as a new administrator; returns the account."""
    user = await account(name, role="admin")
    await sign_in(client, name)
    return user


async def post(client: Any, path: str, form: dict[str, str] | None = None, *, csrf: bool = True,
               headers: dict[str, str] | None = None) -> Any:
    data = dict(form or {})
    if csrf:
        data["csrf_token"] = await csrf_of(client, "/")
    return await client.post(path, form=data, headers=headers or {})


def settings_form(site: Site | None = None, **changes: Any) -> dict[str, str]:
    """The control panel's form as a browser sends it: every field, checkboxes only when checked."""
    values = {setting.name: getattr(site or Site(), setting.name) for setting in SITE_SETTINGS}
    values.update(changes)
    form: dict[str, str] = {}
    for setting in SITE_SETTINGS:
        value = values[setting.name]
        if setting.kind == "bool":
            if value is True or (isinstance(value, str) and value):  # a string: sent as typed
                form[setting.name] = "on" if value is True else value
        else:
            form[setting.name] = str(value)
    return form


async def stored_site(archive: Any) -> Site:
    return Site.from_stored(await archive.store.site_settings())


def field_html(html: str, name: str) -> str:
    """The markup of one control-panel field."""
    match = re.search(rf'<div class="field[^"]*" id="field-{name}">(.*?)</div>', html, re.S)
    assert match, f"no field {name}"
    return match.group(1)


def title_of(html: str) -> str:
    match = re.search(r"<title>(.*?)</title>", html, re.S)
    assert match
    return unescape(match.group(1))


# access ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("path", PAGES)
async def test_pages_are_for_admins_only(archive, client, account, path):
    response = await client.get(path)
    assert response.status_code == 302
    assert response.headers["Location"] == f"/login?next={path}"

    await account("alice")
    await sign_in(client, "alice")
    response = await client.get(path)
    assert response.status_code == 403
    assert "for administrators only" in await text_of(response)

    await admin_client(client, account)
    response = await client.get(path)
    assert response.status_code == 200


async def test_a_guest_keeps_the_query_string_and_htmx_gets_a_redirect_header(archive, client):
    response = await client.get("/admin/users?x=1&y=2")
    assert response.headers["Location"] == "/login?next=/admin/users%3Fx%3D1%26y%3D2"
    response = await client.get("/admin/monitor", headers=HTMX)
    assert response.status_code == 401
    assert response.headers["HX-Redirect"] == "/login?next=/admin/monitor"


async def test_the_json_twin_is_for_admins_only(archive, client, account):
    response = await client.get("/api/admin/monitor")
    assert response.status_code == 401
    assert "administrator" in (await response.get_json())["error"]

    alice = await account("alice")
    await sign_in(client, "alice")
    response = await client.get("/api/admin/monitor")
    assert response.status_code == 403
    assert (await response.get_json())["status"] == 403

    root = await account("root", role="admin")
    for user, status in ((alice, 403), (root, 200)):
        secret = f"token-{user.username}"
        await archive.store.add_token(ApiToken(id=new_id(), user_id=user.id, name="t",
                                               token_hash=digest(secret)))
        response = await client.get("/api/admin/monitor", headers={"Authorization": f"Bearer {secret}"})
        assert response.status_code == status


async def failed_job(archive: Any, name: str = "broken.fits", error: str = "broken.fits: not a FITS file",
                     owner: str = "bob") -> str:
    """A job that failed, made through the store's own queue operations."""
    path = f"/data/{name}"
    [job] = await archive.store.enqueue([NewJob(key=path, path=path, owner=owner)])
    claimed = await archive.store.claim_job("test-worker", 60.0)
    assert claimed is not None and claimed.id == job.id
    assert await archive.store.finish_job(job.id, "test-worker", state="failed", error=error)
    return str(job.id)


async def post_routes(archive: Any, account: Any) -> list[tuple[str, dict[str, str]]]:
    """Every state-changing admin route, each with a valid form."""
    bob = await account("bob")
    job_id = await failed_job(archive)
    return [("/admin", settings_form(site_title="Changed")),
            ("/admin/users", {"username": "carol"}),
            (f"/admin/users/{bob.id}/role", {"role": "admin"}),
            (f"/admin/users/{bob.id}/quota", {"quota": "1 GB"}),
            (f"/admin/users/{bob.id}/disable", {}),
            (f"/admin/users/{bob.id}/enable", {}),
            ("/admin/invitations", {"days": "3"}),
            (f"/admin/jobs/{job_id}/retry", {})]


async def nothing_changed(archive: Any) -> None:
    assert await archive.store.site_settings() == {}
    users = {user.username: user for user in await archive.store.list_users()}
    assert "carol" not in users
    assert users["bob"].role == "user" and users["bob"].quota is None and not users["bob"].disabled
    assert await archive.store.list_invitations() == []
    assert (await archive.store.job_counts())["failed"] == 1


async def test_every_post_refuses_users_guests_and_a_missing_csrf_token(archive, client, account):
    routes = await post_routes(archive, account)
    for path, form in routes:  # a guest
        response = await post(client, path, form)
        assert response.status_code == 302, path
        assert response.headers["Location"] == "/login?next=/admin", path
    await account("alice")
    await sign_in(client, "alice")
    for path, form in routes:
        response = await post(client, path, form)
        assert response.status_code == 403, path
    await admin_client(client, account)
    for path, form in routes:
        response = await post(client, path, form, csrf=False)
        assert response.status_code == 403, path
        assert "security token" in await text_of(response)
        response = await client.post(path, form={**form, "csrf_token": "0" * 40})
        assert response.status_code == 403, path
    await nothing_changed(archive)


async def test_admin_posts_with_the_token_work(archive, client, account):
    routes = await post_routes(archive, account)
    await admin_client(client, account)
    for path, form in routes:
        response = await post(client, path, form, headers=HTMX)
        assert response.status_code in (200, 201), (path, await text_of(response))
    site = await stored_site(archive)
    assert site.site_title == "Changed"
    users = {user.username: user for user in await archive.store.list_users()}
    assert "carol" in users and users["bob"].role == "admin" and users["bob"].quota == 10**9
    assert len(await archive.store.list_invitations()) == 1
    assert (await archive.store.job_counts())["queued"] == 1


async def test_a_disabled_admins_session_stops_working(archive, client, account):
    root = await admin_client(client, account)
    assert (await client.get("/admin")).status_code == 200
    await archive.store.update_user(root.id, disabled=True)
    response = await client.get("/admin")
    assert response.status_code == 302 and response.headers["Location"].startswith("/login")
    await archive.store.update_user(root.id, disabled=False)
    assert (await client.get("/admin")).status_code == 200


async def test_a_demoted_admin_loses_access_at_once(archive, client, account):
    await admin_client(client, account)
    other = client.app.test_client()
    second = await admin_client(other, account, "second")
    assert (await other.get("/admin/users")).status_code == 200
    response = await post(client, f"/admin/users/{second.id}/role", {"role": "user"})
    assert response.status_code == 200
    assert (await other.get("/admin/users")).status_code == 403


# control panel ---------------------------------------------------------------------------------------
async def test_the_control_panel_has_a_field_for_every_setting(archive, client, account):
    await admin_client(client, account)
    html = await text_of(await client.get("/admin"))
    for setting in SITE_SETTINGS:
        field = field_html(html, setting.name)
        assert setting.label in unescape(field)
        assert f'name="{setting.name}"' in field
        if setting.kind == "bool":
            assert 'type="checkbox"' in field
        if setting.kind == "choice":
            assert "<select" in field
            for choice in setting.choices:
                assert f'value="{choice}"' in field
    quota = field_html(html, "default_quota")
    assert 'value="10000000000"' in quota and "(10.0 GB)" in quota
    assert 'name="csrf_token"' in html and 'hx-post="/admin"' in html


async def test_site_title_shows_at_once(archive, client, account):
    await admin_client(client, account)
    response = await post(client, "/admin", settings_form(site_title="  Star Lab  "))
    assert response.status_code == 200
    html = await text_of(response)
    assert title_of(html) == "Control panel · Star Lab"
    assert "Saved: Site title" in html
    assert (await stored_site(archive)).site_title == "Star Lab"
    guest = client.app.test_client()
    assert title_of(await text_of(await guest.get("/"))) == "Star Lab"


async def test_admin_email_shows_in_the_footer(archive, client, account):
    await admin_client(client, account)
    await post(client, "/admin", settings_form(admin_email="help@example.org"))
    guest = client.app.test_client()
    html = await text_of(await guest.get("/"))
    assert '<footer>' in html and 'href="mailto:help@example.org"' in html
    await post(client, "/admin", settings_form(admin_email=""))
    assert "<footer>" not in await text_of(await guest.get("/"))


async def test_demo_mode_shows_a_banner_and_refuses_changes_by_users(archive, client, account):
    await admin_client(client, account)
    await account("alice")
    user = client.app.test_client()
    await sign_in(user, "alice")
    response = await post(user, "/", {})
    assert response.status_code == 405  # the portal takes no POST; nothing stood in the way

    response = await post(client, "/admin", settings_form(demo_mode=True))
    assert 'class="banner"' in await text_of(response)  # the page that confirms it already shows it
    assert "Demo mode" in await text_of(await user.get("/"))
    response = await post(user, "/", {})
    assert response.status_code == 403
    assert "demo mode" in await text_of(response)
    # administrators still change things, including switching it off
    response = await post(client, "/admin", settings_form(demo_mode=False))
    assert response.status_code == 200 and 'class="banner"' not in await text_of(response)
    assert (await post(user, "/", {})).status_code == 405


async def test_guest_access_off_sends_guests_to_login(archive, client, account):
    await admin_client(client, account)
    guest = client.app.test_client()
    assert (await guest.get("/")).status_code == 200
    await post(client, "/admin", settings_form(guest_access=False))
    response = await guest.get("/")
    assert response.status_code == 302 and response.headers["Location"] == "/login?next=/"
    assert (await guest.get("/api/images")).status_code == 401
    await post(client, "/admin", settings_form(guest_access=True))
    assert (await guest.get("/")).status_code == 200


@pytest.mark.parametrize(("registration", "link"), [("open", True), ("invite", False), ("closed", False)])
async def test_registration_shows_on_the_login_page(archive, client, account, registration, link):
    await admin_client(client, account)
    await post(client, "/admin", settings_form(registration=registration))
    guest = client.app.test_client()
    html = await text_of(await guest.get("/login"))
    main = html.split("<main>", 1)[1].split("</main>", 1)[0]
    assert ('href="/register"' in main) is link  # the login form's own "register" link
    assert ('href="/register"' in html) is (registration != "closed")  # the header's link


@pytest.mark.parametrize(("name", "typed", "stored", "shown"), [
    ("sharing", "none", "none", 'value="none" selected'),
    ("sharing", "all", "all", 'value="all" selected'),
    ("guest_search", False, False, "unchecked"),
    ("guest_download", True, True, "checked"),
    ("users_may_delete", False, False, "unchecked"),
    ("users_may_upload", False, False, "unchecked"),
    ("default_quota", "10 GB", 10 * 10**9, 'value="10000000000"'),
    ("default_quota", "2 GiB", 2 * 2**30, "(2.1 GB)"),
    ("max_file_size", "500MB", 500 * 10**6, 'value="500000000"'),
    ("max_file_size", "0", 0, "(0 B)"),
])
async def test_each_setting_is_stored_and_shown_again(archive, client, account, name, typed, stored, shown):
    await admin_client(client, account)
    response = await post(client, "/admin", settings_form(**{name: typed}))
    assert response.status_code == 200
    assert getattr(await stored_site(archive), name) == stored
    field = field_html(await text_of(await client.get("/admin")), name)
    if setting_kind(name) == "bool":
        assert (" checked" in field) is (shown == "checked")
    else:
        assert shown in field


async def test_every_setting_changed_in_one_form(archive, client, account):
    await admin_client(client, account)
    changes = {"site_title": "Lab", "admin_email": "a@b.org", "demo_mode": True, "guest_access": False,
               "guest_search": False, "guest_download": True, "registration": "invite",
               "users_may_upload": False, "users_may_delete": False, "default_quota": "1 GB",
               "max_file_size": "2 MB", "sharing": "all", "keep_patient_data": True,
               "default_stretch": "ahisteq", "user_surveys": False}
    assert set(changes) == {setting.name for setting in SITE_SETTINGS}
    response = await post(client, "/admin", settings_form(**changes))
    html = await text_of(response)
    for setting in SITE_SETTINGS:
        assert setting.label in unescape(html.split("Saved:", 1)[1].split("</p>", 1)[0])
    assert await stored_site(archive) == Site(
        site_title="Lab", admin_email="a@b.org", demo_mode=True, guest_access=False, guest_search=False,
        guest_download=True, registration="invite", users_may_upload=False, users_may_delete=False,
        default_quota=10**9, max_file_size=2 * 10**6, sharing="all", keep_patient_data=True,
        default_stretch="ahisteq", user_surveys=False)
    response = await post(client, "/admin", settings_form(await stored_site(archive)))
    assert "Nothing changed." in await text_of(response)


@pytest.mark.parametrize(("name", "typed", "message"), [
    ("default_quota", "-5", "is not a size"),
    ("default_quota", "lots", "is not a size"),
    ("max_file_size", "1.5 bytes", "is not a size"),
    ("max_file_size", "1.5", "not a whole number of bytes"),
    ("default_quota", "2000 PB", "is not a size"),
    ("default_quota", "99999999999999999999", "too large"),
    ("site_title", "", "1-100 characters"),
    ("site_title", "x" * 101, "1-100 characters"),
    ("admin_email", "x@", "not an email address"),
    ("sharing", "everyone", "is not one of"),
    ("registration", "maybe", "is not one of"),
    ("demo_mode", "perhaps", "not yes or no"),
])
async def test_invalid_values_are_refused_and_nothing_is_saved(archive, client, account, name, typed,
                                                               message):
    await admin_client(client, account)
    form = settings_form(guest_download=True, **{name: typed})
    if name != "site_title":
        form["site_title"] = "Would change"
    response = await post(client, "/admin", form)
    assert response.status_code == 422
    html = await text_of(response)
    assert "Nothing was saved" in html
    field = field_html(html, name)
    assert message in unescape(field) and 'role="alert"' in field
    if setting_kind(name) in ("text", "bytes"):
        assert f'value="{typed}"' in field  # what was typed stays, to be corrected
    assert await archive.store.site_settings() == {}
    assert title_of(html).endswith("· ImageX")


def setting_kind(name: str) -> str:
    return next(setting.kind for setting in SITE_SETTINGS if setting.name == name)


async def test_an_htmx_save_answers_the_whole_page_for_the_body(archive, client, account):
    await admin_client(client, account)
    response = await post(client, "/admin", settings_form(site_title="Htmx Lab"), headers=HTMX)
    assert response.status_code == 200
    html = await text_of(response)
    assert "<title>Control panel · Htmx Lab</title>" in html and "<body" in html
    response = await post(client, "/admin", settings_form(site_title=""), headers=HTMX)
    assert response.status_code == 422
    # every page tells htmx to swap 4xx answers (here: the form with its messages)
    assert '{"code":"[45]..","swap":true,"error":true}' in await text_of(await client.get("/admin"))


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
