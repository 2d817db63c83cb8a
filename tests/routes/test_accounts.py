"""Registration in each mode, invitations, the account page (profile, password, API tokens, storage), the
JSON twins, cookies, session renewal, CSRF on every form and API-token authentication: real SQLite and the
real Quart test client."""

from __future__ import annotations

import re
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest

from app import create_app
from app import identity as accounts
from app.settings import Settings
from app.store.base import ImageRecord, Invitation, new_id
from tests.helpers import PASSWORD, csrf_from, csrf_of, log_in
from tests.routes.conftest import text_of

NEW_PASSWORD = "a much better passphrase"


def cookie(client: Any, name: str) -> str | None:
    for item in client.cookie_jar:
        if item.name == name:
            return str(item.value)
    return None


async def set_site(archive: Any, **values: Any) -> None:
    await archive.store.save_site_settings(values)


async def register(client: Any, username: str, *, password: str = PASSWORD, password2: str | None = None,
                   path: str = "/register", **fields: str) -> Any:
    page = await client.get(path)
    token = csrf_from(await text_of(page)) if page.status_code == 200 else await csrf_of(client, "/login")
    form = {"username": username, "password": password,
            "password2": password if password2 is None else password2, "csrf_token": token, **fields}
    invite = re.search(r"invite=([^&]+)", path)
    if invite:
        form["invite"] = invite.group(1)
    return await client.post("/register", form=form)


async def me(client: Any, **kwargs: Any) -> Any:
    return await client.get("/api/me", **kwargs)


async def invitation(archive: Any, *, expires_in: float = 3600.0) -> str:
    code = "inv-" + new_id()
    await archive.store.add_invitation(Invitation(id=new_id(), code_hash=accounts.digest(code),
                                                  created_by="admin", expires=time.time() + expires_in))
    return code


# registration --------------------------------------------------------------------------------------
async def test_open_registration_creates_the_account_and_logs_in(archive, client):
    await set_site(archive, registration="open")
    page = await client.get("/register")
    assert page.status_code == 200 and 'id="register"' in await text_of(page)
    response = await register(client, "newbie", email="new@example.org", display_name="New Bie")
    assert response.status_code == 302 and response.headers["Location"] == "/account?done=registered"
    answer = await me(client)
    assert answer.status_code == 200
    body = await answer.get_json()
    assert (body["username"], body["email"], body["display_name"], body["role"]) == (
        "newbie", "new@example.org", "New Bie", "user")
    page = await text_of(await client.get("/account?done=registered"))
    assert "Your account is ready" in page
    user = await archive.store.get_user_by_name("newbie")
    assert user is not None and user.last_login is not None


@pytest.mark.parametrize(("username", "fields", "password2", "status", "message"), [
    ("ok_name", {}, "something else entirely", 400, "The two passwords differ."),
    ("ok_name", {"password": "short"}, "short", 400, "at least 10 characters"),
    ("bad name!", {}, None, 400, "a username has 1-40 letters"),
    ("", {}, None, 400, "a username has 1-40 letters"),
    ("\u0430dmin", {}, None, 400, "a username has 1-40 letters"),  # a Cyrillic look-alike of "admin"
    ("x" * 41, {}, None, 400, "a username has 1-40 letters"),
    ("ok_name", {"email": "not-an-address"}, None, 400, "is not an email address"),
    ("ok_name", {"display_name": "d" * 81}, None, 400, "at most 80 characters"),
    ("Taken", {}, None, 409, "The username &#39;Taken&#39; is taken"),
    ("TAKEN", {}, None, 409, "is taken"),
    ("samepassword", {"password": "SamePassword"}, "SamePassword", 400, "must not be the username"),
])
async def test_registration_refuses_bad_input_with_a_message(archive, client, make_user, username, fields,
                                                              password2, status, message):
    await set_site(archive, registration="open")
    await make_user("taken")
    password = fields.pop("password", PASSWORD)
    response = await register(client, username, password=password, password2=password2, **fields)
    assert response.status_code == status
    text = await text_of(response)
    assert message.lower() in text.lower()
    assert (await me(client)).status_code == 401
    assert len(await archive.store.list_users()) == 1


@pytest.mark.parametrize(("registration", "demo", "offered"), [
    ("open", False, True), ("invite", False, True), ("closed", False, False), ("open", True, False)])
async def test_the_register_link_shows_only_where_registering_can_work(archive, client, registration, demo,
                                                                       offered):
    await set_site(archive, registration=registration, demo_mode=demo)
    page = await (await client.get("/")).get_data(as_text=True)
    assert ('href="/register"' in page) is offered


async def test_closed_registration_says_so(archive, client):
    await set_site(archive, registration="closed", admin_email="boss@example.org")
    for response in (await client.get("/register"),
                     await client.post("/register", form={"username": "x", "password": PASSWORD,
                                                          "password2": PASSWORD,
                                                          "csrf_token": await csrf_of(client, "/login")})):
        assert response.status_code == 403
        text = await text_of(response)
        assert "Registration is closed" in text and "boss@example.org" in text
    assert await archive.store.list_users() == []


async def test_demo_mode_refuses_registration(archive, client):
    await set_site(archive, registration="open", demo_mode=True)
    response = await client.get("/register")
    assert response.status_code == 403 and "demo mode" in await text_of(response)
    response = await client.post("/register", form={"username": "x", "password": PASSWORD,
                                                    "password2": PASSWORD,
                                                    "csrf_token": await csrf_of(client, "/login")})
    assert response.status_code == 403
    assert await archive.store.list_users() == []


async def test_invitations_are_needed_single_use_and_expire(archive, client, settings, pool):
    await set_site(archive, registration="invite")
    response = await client.get("/register")
    assert response.status_code == 403 and "by invitation only" in await text_of(response)
    response = await client.get("/register?invite=made-up")
    assert response.status_code == 403 and "not valid" in await text_of(response)

    code = await invitation(archive)
    page = await client.get(f"/register?invite={code}")
    assert page.status_code == 200 and f'name="invite" value="{code}"' in await text_of(page)
    response = await register(client, "invited", path=f"/register?invite={code}")
    assert response.status_code == 302
    used = await archive.store.get_invitation(accounts.digest(code))
    assert used is not None and used.used_by == "invited" and used.used_at is not None

    other = create_app(settings, run_jobs=False)
    other.extensions["imagex"].pool = pool
    async with other.test_app() as test_app:
        stranger = test_app.test_client()
        response = await stranger.get(f"/register?invite={code}")
        assert response.status_code == 403 and "already been used" in await text_of(response)
        response = await register(stranger, "second", path=f"/register?invite={code}")
        assert response.status_code == 403
        assert await archive.store.get_user_by_name("second") is None

        stale = await invitation(archive, expires_in=-1)
        response = await stranger.get(f"/register?invite={stale}")
        assert response.status_code == 403 and "expired" in await text_of(response)

        # a form that fails validation does not spend the invitation
        fresh = await invitation(archive)
        response = await register(stranger, "bad name!", path=f"/register?invite={fresh}")
        assert response.status_code == 400
        response = await register(stranger, "third", path=f"/register?invite={fresh}")
        assert response.status_code == 302


async def test_registration_while_logged_in_is_refused(archive, client, make_user):
    await set_site(archive, registration="open")
    await make_user("alice")
    await log_in(client, "alice")
    page = await client.get("/register")
    assert "log out first" in await text_of(page)
    response = await client.post("/register", form={"username": "other", "password": PASSWORD,
                                                    "password2": PASSWORD,
                                                    "csrf_token": await csrf_of(client, "/account")})
    assert response.status_code == 400
    assert await archive.store.get_user_by_name("other") is None


async def test_registration_stays_open_when_guest_access_is_off(archive, client):
    await set_site(archive, registration="open", guest_access=False)
    assert (await client.get("/register")).status_code == 200
    assert (await register(client, "newbie")).status_code == 302
    assert (await client.get("/")).status_code == 200


# the account page ----------------------------------------------------------------------------------
async def test_guests_are_sent_to_the_login_page(client):
    response = await client.get("/account")
    assert response.status_code == 302 and response.headers["Location"] == "/login?next=/account"
    response = await client.post("/account/profile", form={"csrf_token": await csrf_of(client, "/login")})
    assert response.status_code == 302
    # htmx is told to load the login page whole, not inside a section
    response = await client.post("/account/tokens", form={"csrf_token": await csrf_of(client, "/login")},
                                 headers={"HX-Request": "true"})
    assert response.headers["HX-Redirect"] == "/login?next=/account"


async def test_profile_is_editable_and_validated(archive, client, make_user):
    await make_user("alice")
    await log_in(client, "alice")
    page = await text_of(await client.get("/account"))
    assert "alice" in page and 'id="profile"' in page
    token = csrf_from(page)
    response = await client.post("/account/profile", form={"display_name": "  Alice   Smith ",
                                                           "email": "alice@example.org", "csrf_token": token})
    assert response.status_code == 200 and "Saved." in await text_of(response)
    user = await archive.store.get_user_by_name("alice")
    assert (user.display_name, user.email) == ("Alice Smith", "alice@example.org")

    # htmx gets the section only (status 200 so that it swaps); without script the page and a 400
    response = await client.post("/account/profile", form={"display_name": "A", "email": "nope",
                                                           "csrf_token": token},
                                 headers={"HX-Request": "true"})
    text = await text_of(response)
    assert response.status_code == 200 and "is not an email address" in text and "<html" not in text
    response = await client.post("/account/profile", form={"display_name": "A", "email": "nope",
                                                           "csrf_token": token})
    assert response.status_code == 400 and "<html" in await text_of(response)
    user = await archive.store.get_user_by_name("alice")
    assert user.email == "alice@example.org"
    # an empty display name falls back to the username
    await client.post("/account/profile", form={"display_name": "", "email": "", "csrf_token": token})
    user = await archive.store.get_user_by_name("alice")
    assert (user.display_name, user.email) == ("alice", "")


async def test_storage_shows_usage_and_quota_in_human_units(archive, client, make_user):
    await make_user("alice")
    image = ImageRecord(id=new_id(), sha256="a" * 64, hdu=0, path="/x/a.fits", name="a.fits",
                        size=2_500_000, owner="alice", provenance="upload", format="fits", width=10,
                        height=10, bitpix=-32, header={})
    await archive.store.add_images([image])
    await set_site(archive, default_quota=10_000_000)
    await log_in(client, "alice")
    page = await text_of(await client.get("/account"))
    assert "2.5 MB of 10.0 MB used (25.0%)" in page and "1 image." in page and "default quota" in page
    user = await archive.store.get_user_by_name("alice")
    await archive.store.update_user(user.id, quota=5_000_000)
    page = await text_of(await client.get("/account"))
    assert "2.5 MB of 5.0 MB used (50.0%)" in page and "set for your account" in page
    storage = (await (await me(client)).get_json())["storage"]
    assert storage == {"images": 1, "bytes": 2_500_000, "quota": 5_000_000, "quota_source": "account",
                       "percent": 50.0}


async def test_the_account_page_lists_the_users_own_images_newest_first(archive, client, make_user,
                                                                         monkeypatch):
    from app.routes import views

    await make_user("alice")
    await make_user("bob")
    await log_in(client, "alice")
    page = await text_of(await client.get("/account"))
    assert "You have no images yet" in page and 'href="/upload"' in page

    def record(name: str, owner: str, created: float, hdu: int = 0, size: int = 1_500_000) -> ImageRecord:
        return ImageRecord(id=new_id(), sha256=name.ljust(64, "0"), hdu=hdu, path=f"/x/{name}", name=name,
                           size=size, owner=owner, provenance="upload", format="fits", width=10, height=10,
                           bitpix=-32, header={}, created=created, visibility="registered")

    await archive.store.add_images([record("old.fits", "alice", 1000.0), record("new.fits", "alice", 2000.0),
                                    record("cube.fits", "alice", 1500.0, hdu=2),
                                    record("bobs<b>.fits", "bob", 3000.0)])
    page = await text_of(await client.get("/account"))
    table = page[page.index('<table id="own-images">'):]
    table = table[:table.index("</table>")]
    assert table.index("new.fits") < table.index("cube.fits") < table.index("old.fits")  # newest first
    assert "bobs" not in table and "HDU 2" in table and table.count("1.5 MB") == 3
    assert "registered" in table and "You have no images" not in page
    monkeypatch.setattr(views, "OWN_IMAGES_SHOWN", 2)
    page = await text_of(await client.get("/account"))
    assert "The newest 2 of your 3 images." in page and "old.fits" not in page


async def test_demo_mode_makes_the_account_read_only_for_users(archive, client, make_user):
    await make_user("alice")
    await make_user("root", role="admin")
    await set_site(archive, demo_mode=True)
    await log_in(client, "alice")
    page = await text_of(await client.get("/account"))
    assert "cannot be changed while the site is read-only" in page and "<fieldset disabled>" in page
    token = csrf_from(page)
    response = await client.post("/account/profile", form={"display_name": "X", "csrf_token": token})
    assert response.status_code == 403 and "demo mode" in await text_of(response)
    assert (await client.post("/account/tokens", form={"name": "x", "csrf_token": token})).status_code == 403
    assert (await archive.store.get_user_by_name("alice")).display_name == "alice"
    # administrators are not held back
    await log_in(client, "root")
    page = await text_of(await client.get("/account"))
    assert "<fieldset disabled>" not in page
    token = csrf_from(page)
    response = await client.post("/account/profile", form={"display_name": "Root", "csrf_token": token})
    assert response.status_code == 200


async def test_password_change_ends_other_sessions_and_renews_this_one(archive, client, make_user):
    await make_user("alice")
    other = client.app.test_client()
    await log_in(other, "alice")
    assert (await me(other)).status_code == 200
    await log_in(client, "alice")
    before = cookie(client, accounts.SESSION_COOKIE)
    token = await csrf_of(client, "/account")

    async def change(current: str, new: str, new2: str) -> Any:
        return await client.post("/account/password", form={"current": current, "new": new, "new2": new2,
                                                            "csrf_token": token})

    for args, message in [((PASSWORD + "x", NEW_PASSWORD, NEW_PASSWORD), "current password is wrong"),
                          ((PASSWORD, NEW_PASSWORD, NEW_PASSWORD + "x"), "two new passwords differ"),
                          ((PASSWORD, "short", "short"), "at least 10 characters")]:
        response = await change(*args)
        assert response.status_code == 400
        assert message in await text_of(response)
    assert (await me(other)).status_code == 200  # nothing changed yet

    response = await change(PASSWORD, NEW_PASSWORD, NEW_PASSWORD)
    assert response.status_code == 302 and response.headers["Location"] == "/account?done=password"
    after = cookie(client, accounts.SESSION_COOKIE)
    assert after and after != before
    assert await archive.store.session_user(accounts.digest(before)) is None
    assert (await me(client)).status_code == 200
    assert "Every other session" in await text_of(await client.get("/account?done=password"))
    assert (await me(other)).status_code == 401
    # the new CSRF token works at once
    token = await csrf_of(client, "/account")
    response = await client.post("/account/profile", form={"display_name": "A", "csrf_token": token})
    assert response.status_code == 200
    fresh = client.app.test_client()
    assert (await log_in(fresh, "alice")).status_code == 401
    assert (await log_in(fresh, "alice", NEW_PASSWORD)).status_code == 302


async def test_wrong_current_passwords_are_throttled(archive, client, make_user):
    await make_user("alice")
    await log_in(client, "alice")
    token = await csrf_of(client, "/account")
    statuses = []
    for _ in range(accounts.FREE_FAILURES + 2):
        response = await client.post("/account/password", form={
            "current": "guess", "new": NEW_PASSWORD, "new2": NEW_PASSWORD, "csrf_token": token})
        statuses.append(response.status_code)
    assert statuses == [400] * (accounts.FREE_FAILURES + 1) + [429]
    assert "try again in" in await text_of(response)


# API tokens --------------------------------------------------------------------------------------------
async def test_tokens_are_shown_once_listed_and_revoked_on_the_page(archive, client, make_user):
    alice = await make_user("alice")
    await log_in(client, "alice")
    token = await csrf_of(client, "/account")
    response = await client.post("/account/tokens", form={"name": "nightly script", "csrf_token": token},
                                 headers={"HX-Request": "true"})
    fragment = await text_of(response)
    assert response.status_code == 200 and fragment.startswith('<div id="tokens">')
    assert response.headers["Cache-Control"] == "no-store"
    secret = re.search(r'id="new-token" readonly size="50" value="([^"]+)"', fragment).group(1)
    assert secret.startswith("ix_") and len(secret) > 40
    [stored] = await archive.store.list_tokens(alice.id)
    assert stored.name == "nightly script" and stored.token_hash == accounts.digest(secret)
    page = await text_of(await client.get("/account"))
    assert "nightly script" in page and secret not in page and "never" in page

    # the token works, and its use is noted on the page
    bearer = {"Authorization": f"Bearer {secret}"}
    assert (await me(client.app.test_client(), headers=bearer)).status_code == 200
    page = await text_of(await client.get("/account"))
    row = re.search(rf'<tr id="token-{stored.id}">.*?</tr>', page, re.S).group(0)
    assert "never" not in row

    response = await client.post("/account/tokens", form={"name": "   ", "csrf_token": token})
    assert response.status_code == 400 and "give the token a name" in (await text_of(response)).lower()

    response = await client.post(f"/account/tokens/{stored.id}/revoke", form={"csrf_token": token},
                                 headers={"HX-Request": "true"})
    assert response.status_code == 200 and "No tokens yet" in await text_of(response)
    assert await archive.store.list_tokens(alice.id) == []
    response = await client.post(f"/account/tokens/{stored.id}/revoke", form={"csrf_token": token})
    assert response.status_code == 404 and "no such token" in await text_of(response)
    response = await client.post(f"/account/tokens/{stored.id}/revoke", form={"csrf_token": token},
                                 headers={"HX-Request": "true"})
    assert response.status_code == 200 and "revoked already" in await text_of(response)
    assert (await me(client.app.test_client(), headers=bearer)).status_code == 403


async def test_one_user_cannot_revoke_another_users_token(archive, client, make_user):
    bob = await make_user("bob")
    await make_user("alice")
    bearer = {"Authorization": f"Bearer {await _token(archive, bob)}"}
    created = await client.app.test_client().post("/api/tokens", json={"name": "bob's"}, headers=bearer)
    assert created.status_code == 201
    token_id = (await created.get_json())["id"]
    await log_in(client, "alice")
    token = await csrf_of(client, "/account")
    response = await client.post(f"/account/tokens/{token_id}/revoke", form={"csrf_token": token})
    assert response.status_code == 404
    response = await client.delete(f"/api/tokens/{token_id}", headers={"X-CSRF-Token": token})
    assert response.status_code == 404
    assert len(await archive.store.list_tokens(bob.id)) == 2


async def _token(archive: Any, user: Any) -> str:
    from app.routes.accounts import create_token

    return str((await create_token(archive, user, "made in the test"))["token"])


async def test_json_twins_for_tokens_and_me(archive, client, make_user):
    alice = await make_user("alice", email="alice@example.org")
    answer = await me(client)
    assert answer.status_code == 401 and (await answer.get_json())["status"] == 401
    secret = await _token(archive, alice)
    bearer = {"Authorization": f"Bearer {secret}"}
    body = await (await me(client, headers=bearer)).get_json()
    assert body["username"] == "alice" and body["via"] == "token" and "password_hash" not in body

    # tokens manage tokens, with no CSRF token
    response = await client.post("/api/tokens", json={"name": "ci"}, headers=bearer)
    assert response.status_code == 201
    created = await response.get_json()
    assert created["name"] == "ci" and created["token"].startswith("ix_")
    assert response.headers["Cache-Control"] == "no-store"
    listed = (await (await client.get("/api/tokens", headers=bearer)).get_json())["tokens"]
    assert [t["name"] for t in listed] == ["made in the test", "ci"]
    assert all("token" not in t and "token_hash" not in t for t in listed)
    response = await client.post("/api/tokens", json={"name": ""}, headers=bearer)
    assert response.status_code == 400
    response = await client.post("/api/tokens", json=["not", "an", "object"], headers=bearer)
    assert response.status_code == 400

    response = await client.patch("/api/me", json={"display_name": "Alice S."}, headers=bearer)
    assert response.status_code == 200 and (await response.get_json())["display_name"] == "Alice S."
    response = await client.patch("/api/me", json={"email": "bad"}, headers=bearer)
    assert response.status_code == 400 and "not an email address" in (await response.get_json())["error"]

    response = await client.delete(f"/api/tokens/{created['id']}", headers=bearer)
    assert response.status_code == 200 and (await response.get_json()) == {"revoked": created["id"]}
    assert (await client.delete(f"/api/tokens/{created['id']}", headers=bearer)).status_code == 404
    assert (await me(client, headers={"Authorization": f"Bearer {created['token']}"})).status_code == 403

    # a session may use them too, with the CSRF header for changes
    await log_in(client, "alice")
    assert (await (await me(client)).get_json())["via"] == "session"
    assert (await client.post("/api/tokens", json={"name": "x"})).status_code == 403
    assert (await client.patch("/api/me", json={"display_name": "B"})).status_code == 403
    token = await csrf_of(client, "/account")
    response = await client.post("/api/tokens", json={"name": "x"}, headers={"X-CSRF-Token": token})
    assert response.status_code == 201
    made = (await response.get_json())["id"]
    assert (await client.delete(f"/api/tokens/{made}")).status_code == 403
    assert (await client.delete(f"/api/tokens/{made}", headers={"X-CSRF-Token": "0" * 40})).status_code == 403
    assert (await client.delete(f"/api/tokens/{made}", headers={"X-CSRF-Token": token})).status_code == 200


async def test_token_limit(archive, client, make_user):
    from app.routes.accounts import MAX_TOKENS

    alice = await make_user("alice")
    secret = await _token(archive, alice)
    for _ in range(MAX_TOKENS - 2):
        await archive.store.add_token(_api_token(alice.id))
    bearer = {"Authorization": f"Bearer {secret}"}
    assert (await client.post("/api/tokens", json={"name": "last"}, headers=bearer)).status_code == 201
    response = await client.post("/api/tokens", json={"name": "one too many"}, headers=bearer)
    assert response.status_code == 409 and "at most" in (await response.get_json())["error"]
    assert len(await archive.store.list_tokens(alice.id)) == MAX_TOKENS


@pytest.mark.parametrize("case", ["unknown", "revoked", "disabled", "empty"])
async def test_bad_bearer_tokens_are_refused(archive, client, make_user, case):
    alice = await make_user("alice")
    secret = await _token(archive, alice)
    if case == "unknown":
        secret = "ix_" + "A" * 43
    elif case == "revoked":
        [stored] = await archive.store.list_tokens(alice.id)
        await archive.store.delete_token(alice.id, stored.id)
    elif case == "disabled":
        await archive.store.update_user(alice.id, disabled=True)
    else:
        secret = ""
    for method, path in [("GET", "/api/me"), ("GET", "/api/tokens"), ("POST", "/api/tokens"),
                         ("GET", "/account")]:
        response = await client.open(path, method=method, json={"name": "x"},
                                     headers={"Authorization": f"Bearer {secret}"})
        assert response.status_code == 403, (case, path)
    assert len(await archive.store.list_tokens(alice.id)) == (0 if case == "revoked" else 1)


# cookies, sessions and CSRF ------------------------------------------------------------------------------
def set_cookies(response: Any) -> dict[str, str]:
    return {header.split("=", 1)[0]: header for header in response.headers.getlist("Set-Cookie")}


async def test_session_cookies_are_http_only_and_lax_and_secure_over_https(archive, client, make_user):
    await make_user("alice")
    response = await log_in(client, "alice")
    cookies = set_cookies(response)
    for name in (accounts.SESSION_COOKIE, accounts.VISITOR_COOKIE):
        assert "HttpOnly" in cookies[name] and "SameSite=Lax" in cookies[name] and "Path=/" in cookies[name]
        assert "Secure" not in cookies[name]

    secure = client.app.test_client()
    page = await secure.get("/login", scheme="https")
    assert "Secure" in set_cookies(page)[accounts.VISITOR_COOKIE]
    response = await secure.post("/login", scheme="https", form={
        "username": "alice", "password": PASSWORD, "csrf_token": csrf_from(await text_of(page))})
    assert response.status_code == 302
    cookies = set_cookies(response)
    assert all("Secure" in cookies[name] and "HttpOnly" in cookies[name]
               for name in (accounts.SESSION_COOKIE, accounts.VISITOR_COOKIE))


async def test_secure_cookies_setting_marks_them_secure_over_http(tmp_path: Path, pool):
    settings = Settings.load(environ={}, hips=False, data=str(tmp_path / "secure"), secure_cookies="true")
    app = create_app(settings, run_jobs=False, pool=pool)
    async with app.test_app() as test_app:
        await accounts.new_user(app.extensions["imagex"], "alice", PASSWORD)
        browser = test_app.test_client()
        page = await browser.get("/login")
        assert "Secure" in set_cookies(page)[accounts.VISITOR_COOKIE]
        response = await browser.post("/login", form={"username": "alice", "password": PASSWORD,
                                                      "csrf_token": csrf_from(await text_of(page))})
        assert response.status_code == 302
        assert "Secure" in set_cookies(response)[accounts.SESSION_COOKIE]


async def test_the_session_key_changes_at_login(archive, client, make_user):
    await make_user("alice")
    await make_user("bob")
    # a key planted before login (session fixation) is not kept
    client.set_cookie("localhost", accounts.SESSION_COOKIE, "planted-by-an-attacker")
    await log_in(client, "alice")
    first = cookie(client, accounts.SESSION_COOKIE)
    assert first and first != "planted-by-an-attacker"
    assert (await archive.store.session_user(accounts.digest(first))).username == "alice"
    await log_in(client, "bob")
    second = cookie(client, accounts.SESSION_COOKIE)
    assert second and second != first
    assert await archive.store.session_user(accounts.digest(first)) is None
    assert (await (await me(client)).get_json())["username"] == "bob"
    # the old key, sent by another browser, is no longer a session
    thief = client.app.test_client()
    thief.set_cookie("localhost", accounts.SESSION_COOKIE, first)
    assert (await me(thief)).status_code == 401
    # only the key's digest is stored
    with sqlite3.connect(archive.settings.data / "catalog.sqlite") as db:
        rows = db.execute("SELECT key_hash FROM sessions").fetchall()
    assert [row[0] for row in rows] == [accounts.digest(second)]


async def test_logout_ends_the_session(archive, client, make_user):
    await make_user("alice")
    await log_in(client, "alice")
    key = cookie(client, accounts.SESSION_COOKIE)
    await client.post("/logout", form={"csrf_token": await csrf_of(client, "/account")})
    assert await archive.store.session_user(accounts.digest(key)) is None
    assert (await me(client)).status_code == 401


FORMS = ["/login", "/logout", "/register", "/account/profile", "/account/password", "/account/tokens",
         "/account/tokens/{token_id}/revoke"]


@pytest.mark.parametrize("path", FORMS)
@pytest.mark.parametrize("sent", [None, "wrong", "stale"])
async def test_every_form_needs_the_right_csrf_token(archive, client, make_user, path, sent):
    await set_site(archive, registration="open")
    alice = await make_user("alice")
    stored = _api_token(alice.id)
    await archive.store.add_token(stored)
    stale = await csrf_of(client, "/login")  # the guest's token: logging in renews it
    await log_in(client, "alice")
    good = await csrf_of(client, "/account")
    assert stale != good
    token = {"wrong": "0" * 40, "stale": stale, None: None}[sent]
    form = {"username": "zed", "password": PASSWORD, "password2": PASSWORD, "current": PASSWORD,
            "new": NEW_PASSWORD, "new2": NEW_PASSWORD, "name": "t", "display_name": "Z"}
    if token is not None:
        form["csrf_token"] = token
    response = await client.post(path.format(token_id=stored.id), form=form)
    assert response.status_code == 403
    assert "security token" in await text_of(response)
    headers = {"HX-Request": "true"} if sent is None else {"HX-Request": "true", "X-CSRF-Token": token}
    response = await client.post(path.format(token_id=stored.id), form=form, headers=headers)
    assert response.status_code == 403
    # nothing happened
    user = await archive.store.get_user_by_name("alice")
    assert user.display_name == "alice" and user.password_hash == alice.password_hash
    assert [t.id for t in await archive.store.list_tokens(alice.id)] == [stored.id]
    assert (await me(client)).status_code == 200


def _api_token(user_id: str) -> Any:
    from app.store.base import ApiToken

    return ApiToken(id=new_id(), user_id=user_id, name="kept", token_hash=accounts.digest(new_id()))


@pytest.mark.parametrize("revoke", [False, True])
async def test_a_password_change_on_the_page_may_sign_out_all_api_tokens(archive, client, make_user, revoke):
    alice = await make_user("alice")
    bearer = {"Authorization": f"Bearer {await _token(archive, alice)}"}
    await log_in(client, "alice")
    page = await text_of(await client.get("/account"))
    assert 'name="revoke_tokens"' in page and "Sign out all API tokens" in page
    form = {"current": PASSWORD, "new": NEW_PASSWORD, "new2": NEW_PASSWORD,
            "csrf_token": await csrf_of(client, "/account")}
    if revoke:
        form["revoke_tokens"] = "1"
    response = await client.post("/account/password", form=form)
    assert response.status_code == 302
    scripted = client.app.test_client()  # a script: the token alone, no session
    # a revoked token is refused as every bad bearer token is (test_bad_bearer_tokens_are_refused)
    assert (await me(scripted, headers=bearer)).status_code == (403 if revoke else 200)
    assert len(await archive.store.list_tokens(alice.id)) == (0 if revoke else 1)
    if revoke:
        assert "every API token" in await text_of(await client.get(response.headers["Location"]))


async def test_the_api_changes_the_password_and_revokes_tokens_when_asked(archive, client, make_user):
    alice = await make_user("alice")
    bob = await make_user("bob")
    kept = {"Authorization": f"Bearer {await _token(archive, alice)}"}
    bobs = {"Authorization": f"Bearer {await _token(archive, bob)}"}
    url = "/api/me/password"
    # a token needs no CSRF token; a wrong current password, a short new one: 400 with the reason
    wrong = await client.post(url, json={"current": "nope", "new": NEW_PASSWORD}, headers=kept)
    assert wrong.status_code == 400 and "current password is wrong" in (await wrong.get_json())["error"]
    short = await client.post(url, json={"current": PASSWORD, "new": "short"}, headers=kept)
    assert short.status_code == 400 and "at least" in (await short.get_json())["error"]
    bad = await client.post(url, json={"current": PASSWORD, "new": NEW_PASSWORD, "revoke_tokens": "maybe!"},
                            headers=kept)
    assert bad.status_code == 400
    # a guest: refused (no session, so no CSRF token either)
    assert (await client.post(url, json={"current": PASSWORD, "new": NEW_PASSWORD})).status_code in (401, 403)

    # without revoke_tokens, tokens keep working
    response = await client.post(url, json={"current": PASSWORD, "new": NEW_PASSWORD}, headers=kept)
    assert (response.status_code, await response.get_json()) == (200, {"changed": True, "tokens_revoked": 0})
    assert (await me(client, headers=kept)).status_code == 200
    # with it, every token of the account stops working; another user's stays
    second = {"Authorization": f"Bearer {await _token(archive, alice)}"}
    response = await client.post(url, json={"current": NEW_PASSWORD, "new": PASSWORD, "revoke_tokens": True},
                                 headers=kept)
    assert (response.status_code, await response.get_json()) == (200, {"changed": True, "tokens_revoked": 2})
    assert (await me(client, headers=kept)).status_code == 403
    assert (await me(client, headers=second)).status_code == 403
    assert (await me(client, headers=bobs)).status_code == 200


async def test_the_api_password_change_in_a_session_needs_csrf_and_keeps_it(archive, client, make_user):
    await make_user("alice")
    await log_in(client, "alice")
    body = {"current": PASSWORD, "new": NEW_PASSWORD}
    assert (await client.post("/api/me/password", json=body)).status_code == 403
    csrf = await csrf_of(client, "/account")
    response = await client.post("/api/me/password", json=body, headers={"X-CSRF-Token": csrf})
    assert response.status_code == 200
    assert (await me(client)).status_code == 200
