"""The account page, API tokens on it and in the JSON API, cookies, sessions and CSRF on every form."""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from app import create_app
from app import identity as accounts
from app.settings import Settings
from app.store.records import ImageRecord, new_id
from tests.helpers import PASSWORD, QUICK_PASSWORDS, csrf_from, csrf_of, log_in
from tests.routes.accounts_helpers import NEW_PASSWORD, _token, cookie, me, set_site
from tests.routes.pages import text_of


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
    app = create_app(settings, run_jobs=False, pool=pool, passwords=QUICK_PASSWORDS)
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
    from app.store.records import ApiToken

    return ApiToken(id=new_id(), user_id=user_id, name="kept", token_hash=accounts.digest(new_id()))
