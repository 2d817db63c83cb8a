"""Logging in and out."""

from __future__ import annotations

import math
from typing import Any
from urllib.parse import urlsplit

from quart import Blueprint, redirect, render_template, request

from app import accounts
from app.archive import get_archive

bp = Blueprint("accounts", __name__)


def safe_next(target: str | None) -> str:
    """Only same-site paths: never redirect to another host after login."""
    if not target:
        return "/"
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/") or target.startswith("//") \
            or "\\" in target:
        return "/"
    return target


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
        message = (f"Too many failed logins for this account or from this address: try again in "
                   f"{math.ceil(wait)} s.")
        return await render_template("login.html", next_url=next_url, error=message, username=username), 429
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


@bp.post("/logout")
async def logout() -> Any:
    response = redirect("/")
    await accounts.log_out(response)
    return response
