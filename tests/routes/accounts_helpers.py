"""Helpers the account tests share: a cookie's value, site settings, /api/me and an API token."""

from __future__ import annotations

from typing import Any

NEW_PASSWORD = "a much better passphrase"


def cookie(client: Any, name: str) -> str | None:
    for item in client.cookie_jar:
        if item.name == name:
            return str(item.value)
    return None


async def set_site(archive: Any, **values: Any) -> None:
    await archive.store.save_site_settings(values)


async def me(client: Any, **kwargs: Any) -> Any:
    return await client.get("/api/me", **kwargs)


async def _token(archive: Any, user: Any) -> str:
    from app.routes.accounts import create_token

    return str((await create_token(archive, user, "made in the test"))["token"])
