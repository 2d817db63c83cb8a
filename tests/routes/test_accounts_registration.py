"""Registration in each mode (open, invitation only, closed, demo) and invitation codes."""

from __future__ import annotations

import re
import time
from typing import Any

import pytest

from app import create_app
from app import identity as accounts
from app.store.records import Invitation, new_id
from tests.helpers import PASSWORD, csrf_from, csrf_of, log_in
from tests.routes.accounts_helpers import me, set_site
from tests.routes.pages import text_of


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
