"""Logging in and out, registering, the account page (profile, password, API tokens, storage) and its JSON
twins `/api/me` and `/api/tokens`."""

from __future__ import annotations

import logging
import math
import secrets
import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from quart import Blueprint, g, jsonify, redirect, render_template, request
from werkzeug.exceptions import BadRequest, NotFound, Unauthorized
from werkzeug.exceptions import Conflict as HTTPConflict

from app import identity as accounts
from app.archive import Archive, get_archive
from app.exceptions import Conflict, ImageXError
from app.openapi import BOOLEAN, ERROR, INTEGER, STRING, Param, RequestBody, array, described, obj, text
from app.routes import schemas
from app.routes.views import htmx, own_images, storage
from app.site_policy import Site, clean_email
from app.store.records import ApiToken, User, new_id

bp = Blueprint("accounts", __name__)


log = logging.getLogger(__name__)

TOKEN_PREFIX = "ix_"  # noqa: S105 (a prefix that marks ImageX tokens, not a secret)
MAX_TOKENS = 50
MAX_NAME = 80


class TooManyTokens(ValueError):
    """An account holds MAX_TOKENS tokens already."""

# What a redirect to /account may announce (fixed texts: nothing from the query string is shown).
NOTICES = {
    "registered": "Welcome! Your account is ready.",
    "password": "Your password was changed. Every other session of your account was logged out.",
    "password_tokens": "Your password was changed. Every other session of your account was logged out and "
                       "every API token of your account was revoked.",
}


def safe_next(target: str | None) -> str:
    """Only same-site paths: never redirect to another host after login."""
    if not target:
        return "/"
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/") or target.startswith("//") \
            or "\\" in target:
        return "/"
    return target


# login and logout ------------------------------------------------------------------------------------
@bp.route("/login", methods=["GET", "POST"])
async def login() -> Any:
    archive = get_archive()
    next_url = safe_next(request.args.get("next"))
    if request.method == "GET":
        return await render_template("login.html", next_url=next_url, error="", username="")
    form = await request.form
    username = form.get("username", "").strip()
    password = form.get("password", "")
    wait = await accounts.login_wait(archive, username)
    if wait > 0:
        return await render_template("login.html", next_url=next_url, error=_wait_message(wait),
                                     username=username), 429, {"Retry-After": str(math.ceil(wait))}
    user = await archive.store.get_user_by_name(username) if username else None
    if not await accounts.verify_password(archive, user, password) or user is None:
        await accounts.note_login_failure(archive, username)
        return await render_template("login.html", next_url=next_url, error="Wrong username or password.",
                                     username=username), 401
    if user.disabled:
        return await render_template("login.html", next_url=next_url, username=username,
                                     error="This account is disabled; ask an administrator."), 403
    response = redirect(next_url)
    await accounts.log_in(response, user)
    return response


def _wait_message(wait: float) -> str:
    return f"Too many failed logins from this address: try again in {math.ceil(wait)} s."


@bp.post("/logout")
async def logout() -> Any:
    response = redirect("/")
    await accounts.log_out(response)
    return response


# registration ----------------------------------------------------------------------------------------
async def registration_refusal(archive: Archive, site: Site, code: str) -> str:
    """Why this visitor may not register now (empty when they may)."""
    if site.demo_mode:
        return "This site is in demo mode: it is read-only, so no new accounts can be made."
    if site.registration == "closed":
        contact = f" ({site.admin_email})" if site.admin_email else ""
        return f"Registration is closed on this site: ask an administrator{contact} for an account."
    if site.registration == "open":
        return ""
    if not code:
        return ("Registration on this site is by invitation only: open the invitation link an "
                "administrator gave you.")
    invitation = await archive.store.get_invitation(accounts.digest(code))
    if invitation is None:
        return ("This invitation link is not valid: check that it was copied whole, or ask an "
                "administrator for a new one.")
    if invitation.used_by is not None:
        return "This invitation has already been used: ask an administrator for a new one."
    if invitation.expires <= time.time():
        expired = time.strftime("%Y-%m-%d %H:%M", time.localtime(invitation.expires))
        return f"This invitation expired on {expired}: ask an administrator for a new one."
    return ""


def clean_display_name(text: str) -> str:
    text = " ".join(text.split())
    if len(text) > MAX_NAME:
        raise ValueError(f"the display name may have at most {MAX_NAME} characters")
    return text


@bp.route("/register", methods=["GET", "POST"])
async def register() -> Any:
    archive = get_archive()
    site, user = accounts.current_site(), accounts.current_user()
    form: Mapping[str, str] = await request.form if request.method == "POST" else {}
    code = (form.get("invite") or request.args.get("invite") or "").strip()
    fields = {"username": form.get("username", "").strip(), "email": form.get("email", "").strip(),
              "display_name": form.get("display_name", "").strip()}

    async def page(status: int, *, refusal: str = "", error: str = "") -> Any:
        return await render_template("register.html", refusal=refusal, error=error, invite=code,
                                     fields=fields), status

    refusal = await registration_refusal(archive, site, code)
    if refusal:
        return await page(403, refusal=refusal)
    if user is not None:
        return await page(200 if request.method == "GET" else 400, refusal=(
            f"You are logged in as {user.username}: log out first to register another account."))
    if request.method == "GET":
        return await page(200)

    password = form.get("password", "")
    try:
        if password != form.get("password2", ""):
            raise ValueError("the two passwords differ")
        accounts.check_username(fields["username"])
        email = clean_email(fields["email"])
        display_name = clean_display_name(fields["display_name"])
        accounts.check_new_password(password, fields["username"])
        if await archive.store.get_user_by_name(fields["username"]) is not None:
            raise Conflict(f"the username {fields['username']!r} is taken: choose another")
        # The invitation is spent only once everything else is known to be fine; only a race for the same
        # username between the check above and the insert below can still waste it.
        if site.registration == "invite" and not await archive.store.use_invitation(
                accounts.digest(code), fields["username"]):
            return await page(403, refusal="This invitation has just been used or has expired: ask an "
                                           "administrator for a new one.")
        new = await accounts.new_user(archive, fields["username"], password, email=email,
                                      display_name=display_name)
    except ValueError as error:
        return await page(400, error=_sentence(str(error)))
    except Conflict as error:
        return await page(409, error=_sentence(str(error)))
    log.info("account %r registered (%s)", new.username, site.registration)
    response = redirect("/account?done=registered")
    await accounts.log_in(response, new)
    return response


def _sentence(text: str) -> str:
    text = text[:1].upper() + text[1:]
    return text if text.endswith((".", "!", "?")) else text + "."


# the account page ------------------------------------------------------------------------------------
def page_user() -> User | None:
    """The logged-in user of a page, or None: the caller redirects to the login page."""
    return accounts.current_user()


def api_user() -> User:
    """The user a JSON request acts as (API token or session); guests get 401."""
    user = accounts.current_user()
    if user is None:
        raise Unauthorized("log in or send an API token (Authorization: Bearer ...)")
    return user


def _to_login() -> Any:
    response = redirect("/login?next=/account")
    if htmx():  # a whole page, not a login form inside a section
        response.headers["HX-Redirect"] = "/login?next=/account"
    return response


def token_view(token: ApiToken) -> dict[str, Any]:
    return {"id": token.id, "name": token.name, "created": token.created, "last_used": token.last_used}


async def token_list(archive: Archive, user: User) -> list[dict[str, Any]]:
    return [token_view(token) for token in await archive.store.list_tokens(user.id)]


async def create_token(archive: Archive, user: User, name: str) -> dict[str, Any]:
    """A new personal API token: the stored record (its digest only) and, once, the token itself."""
    name = " ".join(name.split())
    if not 1 <= len(name) <= MAX_NAME:
        raise ValueError(f"give the token a name of 1-{MAX_NAME} characters (what it is for)")
    if len(await archive.store.list_tokens(user.id)) >= MAX_TOKENS:
        raise TooManyTokens(f"an account may have at most {MAX_TOKENS} tokens: revoke some first")
    secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
    token = ApiToken(id=new_id(), user_id=user.id, name=name, token_hash=accounts.digest(secret))
    await archive.store.add_token(token)
    log.info("API token %r created for %r", name, user.username)
    return {**token_view(token), "token": secret}


def profile_changes(values: Mapping[str, Any]) -> dict[str, str]:
    """Display name and email from a form or a JSON body (absent fields stay as they are)."""
    changes: dict[str, str] = {}
    for name, clean in (("display_name", clean_display_name), ("email", clean_email)):
        if name in values:
            if not isinstance(values[name], str):
                raise ValueError(f"{name} must be text")
            changes[name] = clean(values[name])
    return changes


async def save_profile(archive: Archive, user: User, changes: dict[str, str]) -> User:
    if "display_name" in changes:
        changes["display_name"] = changes["display_name"] or user.username
    await archive.store.update_user(user.id, **changes)
    fresh = await archive.store.get_user(user.id)
    assert fresh is not None
    return fresh


async def account_page(user: User, status: int = 200, **extra: Any) -> Any:
    """The whole account page; `extra` carries each section's message or error."""
    archive, site = get_archive(), accounts.current_site()
    values: dict[str, Any] = {
        "user": user, "storage": await storage(archive, user, site), "own": await own_images(archive, user),
        "tokens": await token_list(archive, user), "notice": NOTICES.get(request.args.get("done", ""), ""),
        "read_only": site.demo_mode and not user.is_admin, "new_token": None, "token_error": "",
        "profile_error": "", "profile_saved": False, "password_error": "",
        "min_password": accounts.MIN_PASSWORD,
    }
    values.update(extra)
    return await render_template("account.html", **values), status


async def _section(template: str, page_status: int, user: User, **values: Any) -> Any:
    """htmx swaps a section in place (status 200, or htmx would not swap it); a browser without script
    gets the whole page with the real status."""
    if htmx():
        archive = get_archive()
        site = accounts.current_site()
        return await render_template(template, user=user, tokens=await token_list(archive, user),
                                     read_only=site.demo_mode and not user.is_admin,
                                     **{"new_token": None, "token_error": "", "profile_error": "",
                                        "profile_saved": False, **values})
    return await account_page(user, page_status, **values)


@bp.get("/account")
async def account() -> Any:
    user = page_user()
    if user is None:
        return _to_login()
    return await account_page(user)


@bp.post("/account/profile")
async def account_profile() -> Any:
    user = page_user()
    if user is None:
        return _to_login()
    try:
        changes = profile_changes(await request.form)
    except ValueError as error:
        return await _section("_account_profile.html", 400, user, profile_error=_sentence(str(error)))
    user = await save_profile(get_archive(), user, changes)
    return await _section("_account_profile.html", 200, user, profile_saved=True)


@bp.post("/account/password")
async def account_password() -> Any:
    archive = get_archive()
    user = page_user()
    if user is None:
        return _to_login()
    form = await request.form
    revoke = bool(form.get("revoke_tokens"))
    try:
        await change_password(archive, user, form.get("current", ""), form.get("new", ""),
                              new2=form.get("new2", ""), revoke_tokens=revoke)
    except PasswordRefused as error:
        return await account_page(user, error.status, password_error=str(error))
    # A redirect, not a page: the page's CSRF token must come from the new session's cookies.
    done = "/account?done=password_tokens" if revoke else "/account?done=password"
    response = redirect(done)
    if htmx():
        response.headers["HX-Redirect"] = done
    await accounts.log_in(response, user)
    return response


class PasswordRefused(ImageXError):
    """A password change refused: the sentence to show."""


class PasswordWait(PasswordRefused):
    """Too many wrong passwords: the account must wait."""

    status = 429


async def change_password(archive: Archive, user: User, current: str, new: str, *, new2: str | None = None,
                          revoke_tokens: bool = False) -> int:
    """Check the current password (a failure counts as a failed login) and the new one, store it, end
    every session of the account and, with `revoke_tokens`, delete its API tokens too. Returns how many
    tokens were revoked; raises PasswordRefused."""
    wait = await accounts.login_wait(archive, user.username)
    if wait > 0:
        raise PasswordWait(_wait_message(wait))
    if not await accounts.verify_password(archive, user, current):
        # a stolen session must not become an unlimited password guesser
        await accounts.note_login_failure(archive, user.username)
        raise PasswordRefused("The current password is wrong.")
    try:
        if new2 is not None and new != new2:
            raise ValueError("the two new passwords differ")
        accounts.check_new_password(new, user.username)
    except ValueError as error:
        raise PasswordRefused(_sentence(str(error))) from None
    await archive.store.update_user(user.id, password_hash=await accounts.hash_password(archive, new))
    await archive.store.delete_user_sessions(user.id)
    revoked = await archive.store.delete_user_tokens(user.id) if revoke_tokens else 0
    log.info("password of %r changed; its sessions were ended%s", user.username,
             f" and its {revoked} API token(s) revoked" if revoke_tokens else "")
    return revoked


@bp.post("/api/me/password")
@described("Change the account's password: every session is logged out (this one stays logged in), and "
           "with `revoke_tokens` every API token of the account stops working", access="user",
           tag="account",
           body=RequestBody(obj({"current": text("the current password"), "new": text("the new password"),
                                 "revoke_tokens": BOOLEAN}, optional=("revoke_tokens",)), form=True),
           answers={200: ("done", obj({"changed": BOOLEAN, "tokens_revoked": INTEGER}, closed=True)),
                    400: ("the current password is wrong, or the new one is not accepted", ERROR),
                    429: ("too many wrong passwords: wait", ERROR)})
async def api_password() -> Any:
    user = api_user()
    body = await _json_body()
    revoke = body.get("revoke_tokens", False)
    if isinstance(revoke, str):  # a form field
        revoke = revoke.lower() in ("1", "true", "on", "yes")
    if not isinstance(revoke, bool):
        raise BadRequest("revoke_tokens: give true or false")
    current, new = body.get("current", ""), body.get("new", "")
    if not isinstance(current, str) or not isinstance(new, str):
        raise BadRequest("current and new: give the passwords as strings")
    revoked = await change_password(get_archive(), user, current, new, revoke_tokens=revoke)
    response = jsonify({"changed": True, "tokens_revoked": revoked})
    if not g.get("via_token"):
        await accounts.log_in(response, user)  # the asker's own session goes on, with a new key
    return response


@bp.post("/account/tokens")
async def account_token_create() -> Any:
    user = page_user()
    if user is None:
        return _to_login()
    form = await request.form
    try:
        created = await create_token(get_archive(), user, form.get("name", ""))
    except ValueError as error:
        return await _section("_account_tokens.html", 400, user, token_error=_sentence(str(error)))
    response = await _section("_account_tokens.html", 200, user, new_token=created)
    return _no_store(response)


def _no_store(response: Any) -> Any:
    """A response that holds a new token once: no cache keeps a copy."""
    body, status = response if isinstance(response, tuple) else (response, 200)
    return body, status, {"Cache-Control": "no-store"}


@bp.post("/account/tokens/<token_id>/revoke")
async def account_token_revoke(token_id: str) -> Any:
    user = page_user()
    if user is None:
        return _to_login()
    if not await get_archive().store.delete_token(user.id, token_id):
        gone = "There is no such token in your account: it may have been revoked already."
        return await _section("_account_tokens.html", 404, user, token_error=gone)
    log.info("API token %s of %r revoked", token_id, user.username)
    return await _section("_account_tokens.html", 200, user)


# JSON twins ------------------------------------------------------------------------------------------
async def me_view(user: User) -> dict[str, Any]:
    archive, site = get_archive(), accounts.current_site()
    return {**user.public(), "storage": await storage(archive, user, site),
            "via": "token" if g.get("via_token") else "session"}


async def _json_body() -> dict[str, Any]:
    if request.is_json:
        body = await request.get_json(silent=True)
        if not isinstance(body, dict):
            raise BadRequest("send a JSON object")
        return body
    return dict(await request.form)


@bp.get("/api/me")
@described("The account the request acts as, with its storage", access="user", tag="account",
           answers={200: ("the account", schemas.ME)})
async def api_me() -> Any:
    return jsonify(await me_view(api_user()))


@bp.patch("/api/me")
@described("Change the display name and/or email of the account", access="user", tag="account",
           body=RequestBody(obj({"display_name": text(maxLength=MAX_NAME), "email": STRING},
                         optional=("display_name", "email")), required=False, form=True),
           answers={200: ("the account", schemas.ME)})
async def api_me_update() -> Any:
    user = api_user()
    try:
        changes = profile_changes(await _json_body())
    except ValueError as error:
        raise BadRequest(str(error)) from None
    return jsonify(await me_view(await save_profile(get_archive(), user, changes)))


@bp.get("/api/tokens")
@described("The account's API tokens (never the tokens themselves)", access="user", tag="account",
           answers={200: ("the tokens", obj({"tokens": array(schemas.TOKEN)}))})
async def api_tokens() -> Any:
    return jsonify({"tokens": await token_list(get_archive(), api_user())})


@bp.post("/api/tokens")
@described("Make a personal API token; the answer holds it once", access="user", tag="account",
           body=RequestBody(obj({"name": text("what the token is for", maxLength=MAX_NAME)}), required=False,
                            form=True),
           answers={201: ("the new token", schemas.NEW_TOKEN),
                    409: (f"the account holds {MAX_TOKENS} tokens already", ERROR)})
async def api_token_create() -> Any:
    user = api_user()
    body = await _json_body()
    try:
        created = await create_token(get_archive(), user, str(body.get("name", "")))
    except TooManyTokens as error:
        raise HTTPConflict(str(error)) from None
    except ValueError as error:
        raise BadRequest(str(error)) from None
    return jsonify(created), 201, {"Cache-Control": "no-store"}


@bp.delete("/api/tokens/<token_id>")
@described("Revoke one of the account's API tokens", access="user", tag="account",
           params=(Param("token_id", STRING, where="path"),),
           answers={200: ("the revoked token's id", obj({"revoked": STRING}, closed=True))})
async def api_token_delete(token_id: str) -> Any:
    user = api_user()
    if not await get_archive().store.delete_token(user.id, token_id):
        raise NotFound("no such token in your account")
    log.info("API token %s of %r revoked", token_id, user.username)
    return jsonify({"revoked": token_id})
