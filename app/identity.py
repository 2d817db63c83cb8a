"""Who is asking: passwords, login sessions, API tokens, CSRF tokens and login throttling."""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import secrets
import time
from typing import Any

from quart import g, request
from werkzeug.exceptions import Forbidden
from werkzeug.sansio.response import Response

from app.archive import Archive, get_archive
from app.exceptions import DiskFull
from app.site_policy import Site
from app.store.records import LoginFailures, User, new_id

SESSION_COOKIE = "imagex_session"
VISITOR_COOKIE = "imagex_visitor"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "X-CSRF-Token"
UNSAFE_METHODS = {"POST", "PUT", "PATCH", "DELETE"}
# Login throttling: failed logins count under two keys, never under the account alone (strangers could then
# lock it for its owner): the account from this address, and this address over all accounts (more failures
# are free there, as a lab's NAT gateway speaks for many people). Past its free failures, each further failure
# locks a key for twice as long as the last, up to MAX_LOCK; a failure is forgotten after FAILURE_WINDOW.
FREE_FAILURES = 5
FREE_ADDRESS_FAILURES = 20
MAX_LOCK = 15 * 60.0
FAILURE_WINDOW = 60 * 60.0
MIN_PASSWORD = 10


def digest(secret_value: str) -> str:
    """How session keys, API tokens and invitation codes are stored: SHA-256, never the value."""
    return hashlib.sha256(secret_value.encode()).hexdigest()


async def hash_password(archive: Archive, password: str) -> str:
    return await archive.passwords.hash(password)


def check_username(username: str) -> str:
    """The username stripped; ValueError when it is not 1-40 ASCII letters, digits, dots, dashes or
    underscores (ASCII only: the store compares names case-insensitively for ASCII alone, and look-alike
    letters from other scripts would let one user pass for another)."""
    username = username.strip()
    if not (1 <= len(username) <= 40) or not all(
            c.isascii() and (c.isalnum() or c in "._-") for c in username):
        raise ValueError("a username has 1-40 letters (a-z), digits, dots, dashes or underscores")
    return username


def check_new_password(password: str, username: str = "") -> None:
    """Raise ValueError with the reason a new password is refused."""
    if len(password) < MIN_PASSWORD:
        raise ValueError(f"the password must have at least {MIN_PASSWORD} characters")
    if username and password.lower() == username.lower():
        raise ValueError("the password must not be the username")


def generated_password() -> str:
    return secrets.token_urlsafe(15)


async def verify_password(archive: Archive, user: User | None, password: str) -> bool:
    """Check a password (argon2id, in a thread); rehash it when the hasher's parameters changed."""
    ok = await archive.passwords.check(user.password_hash if user else None, password)
    if ok and user is not None and archive.passwords.outdated(user.password_hash):
        await archive.store.update_user(user.id, password_hash=await hash_password(archive, password))
    return ok


async def new_user(archive: Archive, username: str, password: str, *, role: str = "user", email: str = "",
                   display_name: str = "") -> User:
    """Create an account (raises ValueError for a bad name or password, Conflict when the name is taken)."""
    username = check_username(username)
    check_new_password(password, username)
    hashed = await hash_password(archive, password)
    user = User(id=new_id(), username=username, role=role, password_hash=hashed,
                email=email.strip(), display_name=display_name.strip() or username)
    await archive.store.add_user(user)
    return user


# throttling ------------------------------------------------------------------------------------------
def throttle_keys(username: str, address: str | None = None) -> dict[str, int]:
    """The keys a login as `username` from `address` (default: the request's) counts under, each with its
    free failures."""
    if address is None:
        address = request.remote_addr or "unknown"
    return {account_prefix(username) + address: FREE_FAILURES, f"addr:{address}": FREE_ADDRESS_FAILURES}


def account_prefix(username: str) -> str:
    """The start of every throttle key of this account (whatever the address)."""
    # cut: a name longer than any valid one cannot log in, and must not make stored keys long
    return f"user:{username.strip().lower()[:64]}@"


def locked_until(failures: LoginFailures | None, free_failures: int) -> float:
    """When a key with these recent failures may try again (0: now): its free failures cost nothing, then
    each one locks it for 1 s, 2 s, 4 s ... up to MAX_LOCK after the latest."""
    extra = 0 if failures is None else failures.count - free_failures
    if failures is None or extra <= 0:
        return 0.0
    # the exponent is capped: requests racing past the check can add many failures at once
    return failures.last + min(MAX_LOCK, 2.0 ** min(extra - 1, 40))


async def login_wait(archive: Archive, username: str, *, address: str | None = None,
                     at: float | None = None) -> float:
    """Seconds before a login as `username` from `address` (default: the request's) is considered, at
    time `at` (default: the archive's clock)."""
    at = archive.clock() if at is None else at
    keys = throttle_keys(username, address)
    failures = await archive.store.login_failures(list(keys), since=at - FAILURE_WINDOW)
    return max([0.0, *(locked_until(failures.get(key), free) - at for key, free in keys.items())])


async def note_login_failure(archive: Archive, username: str, *, address: str | None = None,
                             at: float | None = None) -> None:
    """Count a failed login as `username` from `address` (default: the request's) at `at` (default: the
    archive's clock)."""
    at = archive.clock() if at is None else at
    await archive.store.add_login_failure(list(throttle_keys(username, address)), at,
                                          forget_before=at - FAILURE_WINDOW)


# sessions ------------------------------------------------------------------------------------------
def _cookie_secure(archive: Archive) -> bool:
    mode = archive.settings.secure_cookies
    return mode == "true" or (mode == "auto" and request.scheme == "https")


def set_cookie(response: Response, archive: Archive, name: str, value: str, max_age: float | None) -> None:
    response.set_cookie(name, value, max_age=None if max_age is None else int(max_age), httponly=True,
                        samesite="Lax", secure=_cookie_secure(archive), path="/")


async def log_in(response: Response, user: User) -> None:
    """Start a new session (a new key: the old one, if any, is ended) and a new CSRF identity."""
    archive = get_archive()
    old = request.cookies.get(SESSION_COOKIE)
    if old:
        await archive.store.delete_session(digest(old))
    key = secrets.token_urlsafe(32)
    lifetime = archive.settings.session_days * 86400
    try:
        await archive.store.add_session(digest(key), user.id, time.time() + lifetime)
    except DiskFull:
        raise DiskFull("the server's disk is full: signing in needs to record a session; try again once "
                       "an administrator has made room") from None
    with contextlib.suppress(DiskFull):  # bookkeeping: a full disk must not stand between a user and in
        await archive.store.update_user(user.id, last_login=time.time())
        # this account from this address starts afresh; the address's own count stays
        await archive.store.clear_login_failures(list(throttle_keys(user.username))[:1])
    set_cookie(response, archive, SESSION_COOKIE, key, lifetime)
    set_cookie(response, archive, VISITOR_COOKIE, secrets.token_urlsafe(18), None)


async def log_out(response: Response) -> None:
    archive = get_archive()
    key = request.cookies.get(SESSION_COOKIE)
    if key:
        await archive.store.delete_session(digest(key))
    response.delete_cookie(SESSION_COOKIE, path="/")
    set_cookie(response, archive, VISITOR_COOKIE, secrets.token_urlsafe(18), None)


# who is asking ---------------------------------------------------------------------------------------
async def load_request_context() -> None:
    """Before each request (but tiles and static files): the site settings and the user, from an API
    token (`Authorization: Bearer`) or the session cookie. Disabled accounts count as guests."""
    archive = get_archive()
    g.site = Site.from_stored(await archive.store.site_settings())
    g.user = None
    g.via_token = False
    authorization = request.headers.get("Authorization", "")
    if authorization.startswith("Bearer "):
        user = await archive.store.token_user(digest(authorization.removeprefix("Bearer ").strip()))
        if user is None or user.disabled:
            raise Forbidden("this API token is not valid (revoked, mistyped, or its account is disabled)")
        g.user = user
        g.via_token = True
        return
    key = request.cookies.get(SESSION_COOKIE)
    if key:
        user = await archive.store.session_user(digest(key))
        g.user = user if user is not None and not user.disabled else None


def current_user() -> User | None:
    user: User | None = g.get("user")
    return user


def current_site() -> Site:
    site: Site = g.get("site") or Site()
    return site


def _visitor() -> str:
    visitor: str = g.get("new_visitor") or request.cookies.get(VISITOR_COOKIE, "")
    if not visitor:
        visitor = g.new_visitor = secrets.token_urlsafe(18)
    return visitor


def csrf_token() -> str:
    """The token every form and state-changing htmx request must carry: bound to this browser (visitor
    cookie) and, when logged in, to the session."""
    archive = get_archive()
    message = f"csrf:{_visitor()}:{request.cookies.get(SESSION_COOKIE, '')}".encode()
    return hmac.new(archive.secret, message, hashlib.sha256).hexdigest()[:40]


async def check_csrf() -> None:
    """Refuse a state-changing browser request without the right CSRF token (API-token requests are not
    sent by browsers on their own, so they need none)."""
    if request.method not in UNSAFE_METHODS or g.get("via_token"):
        return
    sent = request.headers.get(CSRF_HEADER)
    if sent is None:
        form = await request.form
        sent = form.get(CSRF_FIELD)
    if not request.cookies.get(VISITOR_COOKIE) or not sent or not hmac.compare_digest(sent, csrf_token()):
        raise Forbidden("the form's security token is missing or out of date: reload the page and try again")


def remember_visitor(response: Response) -> None:
    """After each request: give a new browser its visitor cookie."""
    new_visitor = g.get("new_visitor")
    if new_visitor and not request.cookies.get(VISITOR_COOKIE):
        set_cookie(response, get_archive(), VISITOR_COOKIE, new_visitor, None)


def context() -> dict[str, Any]:
    """Template globals: the user, the site settings and the CSRF token."""
    return {"current_user": current_user(), "site": current_site(), "csrf_token": csrf_token}
