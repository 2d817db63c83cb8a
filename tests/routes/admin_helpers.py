"""Helpers of the admin tests (and of the monitor and stretch tests): admin accounts and sessions, posts
with the CSRF token, the control panel's form, failed jobs made through the store's own queue."""

from __future__ import annotations

import re
import secrets
import time
from html import unescape
from typing import Any

from app.identity import SESSION_COOKIE, digest
from app.site_policy import SITE_SETTINGS, Site
from app.store.records import NewJob, User
from tests.helpers import csrf_of

PAGES = ["/admin", "/admin/users", "/admin/invitations", "/admin/monitor"]
HTMX = {"HX-Request": "true"}


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


async def failed_job(archive: Any, name: str = "broken.fits", error: str = "broken.fits: not a FITS file",
                     owner: str = "bob") -> str:
    """A job that failed, made through the store's own queue operations."""
    path = f"/data/{name}"
    [job] = await archive.store.enqueue([NewJob(key=path, path=path, owner=owner)])
    claimed = await archive.store.claim_job("test-worker", 60.0)
    assert claimed is not None and claimed.id == job.id
    assert await archive.store.finish_job(job.id, "test-worker", state="failed", error=error)
    return str(job.id)
