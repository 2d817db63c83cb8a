"""Behind a reverse proxy: IMAGEX_PUBLIC_URL makes links (invitations) name the public address and cookies
`Secure` for https; IMAGEX_PROXY_HOPS trusts that many hops of X-Forwarded-* (client address for login
throttling, scheme); with neither set, forwarded headers sent by a client are ignored. Real app, real
SQLite, the real Quart test client."""

from __future__ import annotations

import re
import sqlite3
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from app import create_app
from app.archive import Archive
from app.exceptions import SettingError
from app.identity import new_user
from app.settings import Settings
from app.tiles.pool import Pool
from tests.helpers import PASSWORD, QUICK_PASSWORDS, csrf_from

FORWARDED = {"X-Forwarded-Proto": "https", "X-Forwarded-Host": "evil.example",
             "X-Forwarded-For": "203.0.113.7"}


async def app_client(tmp_path: Path, pool: Pool, clock: Callable[[], float] = time.time,
                     **settings: Any) -> AsyncIterator[Any]:
    config = Settings.load(environ={}, hips=False, data=str(tmp_path / "var"), workers=2, **settings)
    archive = Archive(config, pool=pool, passwords=QUICK_PASSWORDS)
    await archive.startup()
    await new_user(archive, "root", PASSWORD, role="admin")
    await archive.close()
    app = create_app(config, run_jobs=False, clock=clock, pool=pool, passwords=QUICK_PASSWORDS)
    async with app.test_app() as test_app:
        yield test_app.test_client()


@pytest.fixture
async def plain(tmp_path: Path, pool: Pool) -> AsyncIterator[Any]:
    async for client in app_client(tmp_path, pool):
        yield client


@pytest.fixture
async def public(tmp_path: Path, pool: Pool) -> AsyncIterator[Any]:
    async for client in app_client(tmp_path, pool, public_url="https://images.example.org"):
        yield client


@pytest.fixture
async def proxied(tmp_path: Path, pool: Pool) -> AsyncIterator[Any]:
    async for client in app_client(tmp_path, pool, proxy_hops="1"):
        yield client


async def login(client: Any, password: str = PASSWORD, headers: dict[str, str] | None = None) -> Any:
    page = await client.get("/login", headers=headers or {})
    token = csrf_from(await page.get_data(as_text=True))
    return await client.post("/login", form={"username": "root", "password": password, "csrf_token": token},
                             headers=headers or {})


def session_cookie(response: Any) -> str:
    cookies = [value for value in response.headers.getlist("Set-Cookie")
               if value.startswith("imagex_session=")]
    assert len(cookies) == 1, response.headers
    return str(cookies[0])


def failure_keys(tmp_path: Path) -> set[str]:
    with sqlite3.connect(tmp_path / "var" / "catalog.sqlite") as db:
        return {row[0] for row in db.execute("SELECT key FROM login_failures")}


async def invitation_link(client: Any) -> str:
    token = csrf_from(await (await client.get("/admin/invitations")).get_data(as_text=True))
    response = await client.post("/admin/invitations", form={"days": "3", "csrf_token": token},
                                 headers={"HX-Request": "true"})
    assert response.status_code == 201
    return str(re.search(r'id="invitation-link" value="([^"]+)"', await response.get_data(as_text=True))[1])


async def test_without_proxy_settings_forwarded_headers_from_clients_are_ignored(plain, tmp_path):
    response = await login(plain, headers=FORWARDED)
    assert response.status_code == 302
    assert "Secure" not in session_cookie(response)
    assert (await invitation_link(plain)).startswith("http://localhost/register?invite=")
    await login(plain, "wrong password", headers=FORWARDED)
    assert "addr:203.0.113.7" not in failure_keys(tmp_path)
    assert failure_keys(tmp_path) == {"addr:<local>", "user:root@<local>"}  # the test client's own address


async def test_the_public_url_names_invitation_links_and_makes_cookies_secure(public):
    response = await login(public)
    assert response.status_code == 302
    assert "; Secure" in session_cookie(response)
    # a Secure cookie goes back only over https: the client now talks https, as a browser behind the proxy
    link = await invitation_link_https(public)
    assert re.fullmatch(r"https://images\.example\.org/register\?invite=[\w-]+", link)


async def invitation_link_https(client: Any) -> str:
    token = csrf_from(await (await client.get("/admin/invitations", scheme="https")).get_data(as_text=True))
    response = await client.post("/admin/invitations", form={"days": "3", "csrf_token": token},
                                 headers={"HX-Request": "true"}, scheme="https")
    assert response.status_code == 201
    return str(re.search(r'id="invitation-link" value="([^"]+)"', await response.get_data(as_text=True))[1])


async def test_the_public_url_wins_over_a_forwarded_host(tmp_path, pool):
    async for client in app_client(tmp_path, pool, public_url="https://images.example.org", proxy_hops="1"):
        await login(client, headers=FORWARDED)
        assert (await invitation_link_https(client)).startswith("https://images.example.org/register?")


async def test_trusted_hops_give_the_client_address_and_scheme(proxied, tmp_path):
    # the client forged its own X-Forwarded-For entry; the proxy appended the address it really saw
    forged = {**FORWARDED, "X-Forwarded-For": "198.51.100.1, 203.0.113.7"}
    response = await login(proxied, "wrong password", headers=forged)
    assert response.status_code != 302  # refused
    keys = failure_keys(tmp_path)
    assert "addr:203.0.113.7" in keys and "addr:198.51.100.1" not in keys
    response = await login(proxied, headers=FORWARDED)
    assert response.status_code == 302
    assert "; Secure" in session_cookie(response)


async def test_behind_a_proxy_guessers_at_many_addresses_do_not_lock_the_owner_out(tmp_path, pool):
    """Issue 11 through the proxy: ten client addresses forwarded by one proxy guess root's password."""
    async for client in app_client(tmp_path, pool, clock=lambda: 1_000_000.0, proxy_hops="1"):
        for n in range(10):
            forwarded = {"X-Forwarded-For": f"203.0.113.{n}"}
            statuses = [(await login(client, f"guess {k}", headers=forwarded)).status_code for k in range(7)]
            assert statuses == [401] * 6 + [429]  # the clock stands still: the lock holds
        response = await login(client.app.test_client(), headers={"X-Forwarded-For": "198.51.100.9"})
        assert response.status_code == 302
        # an attacker's address is refused even with the right password
        assert (await login(client, headers={"X-Forwarded-For": "203.0.113.3"})).status_code == 429


@pytest.mark.parametrize(("name", "value", "message"), [
    ("public_url", "images.example.org", "--public-url: must be an absolute http:// or https:// address"),
    ("public_url", "ftp://images.example.org", "must be an absolute http:// or https:// address"),
    ("public_url", "https://images.example.org/archive", "must be the site's root address"),
    ("public_url", "https://user:pw@images.example.org", "must be the site's root address"),
    ("public_url", "https://images.example.org/?a=1", "must be the site's root address"),
    ("public_url", "https://images.example.org:99999", "Port out of range"),
    ("proxy_hops", "-1", "--proxy-hops: must be a whole number 0-10, got '-1'"),
    ("proxy_hops", "11", "must be a whole number 0-10"),
    ("proxy_hops", "two", "--proxy-hops: invalid literal"),
    ("stop_grace", "0", "--stop-grace: must be a positive number, got '0'"),
])
def test_bad_proxy_and_worker_settings_are_refused_with_a_message(name, value, message):
    with pytest.raises(SettingError) as error:
        Settings.load(environ={}, **{name: value})
    assert message in str(error.value)


def test_the_public_url_is_kept_without_a_trailing_slash():
    assert Settings.load(environ={}, public_url="https://images.example.org/").public_url == \
        "https://images.example.org"
    assert Settings.load(environ={"IMAGEX_PUBLIC_URL": "http://10.0.0.5:8080"}).public_url == \
        "http://10.0.0.5:8080"
