"""The admin area: who may reach it, every post's CSRF and role checks, and the control panel (every
setting and its effect). Real SQLite, the real Quart test client, real files."""

from __future__ import annotations

from html import unescape
from typing import Any

import pytest

from app.identity import digest
from app.site_policy import SITE_SETTINGS, Site
from app.store.records import ApiToken, new_id
from tests.routes.admin_helpers import (
    HTMX,
    PAGES,
    admin_client,
    failed_job,
    field_html,
    post,
    settings_form,
    sign_in,
    stored_site,
    title_of,
)
from tests.routes.pages import text_of


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
