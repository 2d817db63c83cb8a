"""Password changes on the account page and through the API: sessions renewed, throttling, tokens revoked."""

from __future__ import annotations

from typing import Any

import pytest

from app import identity as accounts
from tests.helpers import PASSWORD, csrf_of, log_in
from tests.routes.accounts_helpers import NEW_PASSWORD, _token, cookie, me
from tests.routes.pages import text_of


# password changes --------------------------------------------------------------------------------------
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
