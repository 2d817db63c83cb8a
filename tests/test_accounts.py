"""Accounts core: login throttling per account and per address (through the real login form), argon2id
rehashing when the parameters change, and the administrator made on first start."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from typing import Any

import pytest
from argon2 import PasswordHasher

from app import accounts, create_app, create_first_admin
from app.archive import Archive
from tests.conftest import PASSWORD, csrf_of, log_in


async def attempt(client: Any, username: str, password: str, address: str) -> Any:
    """One login through the form, as sent from `address`."""
    token = await csrf_of(client, "/login")
    return await client.post("/login", form={"username": username, "password": password, "csrf_token": token},
                             scope_base={"client": (address, 40000)})


def failures(archive: Archive, key: str) -> int:
    with sqlite3.connect(archive.settings.data / "catalog.sqlite") as db:
        row = db.execute("SELECT failures FROM login_failures WHERE key = ?", (key,)).fetchone()
    return int(row[0]) if row else 0


async def test_an_account_is_locked_after_free_failures_from_any_address(archive, client, make_user):
    await make_user("alice")
    statuses = [(await attempt(client, "alice", "wrong guess", f"10.0.0.{n}")).status_code
                for n in range(accounts.FREE_FAILURES + 1)]
    assert statuses == [401] * (accounts.FREE_FAILURES + 1)  # the last failure sets the lock
    response = await attempt(client, "alice", PASSWORD, "10.9.9.9")  # right password, new address
    assert response.status_code == 429
    text = await response.get_data(as_text=True)
    assert "Too many failed logins" in text and "try again in 1 s" in text
    assert (await attempt(client, "ALICE", PASSWORD, "10.9.9.8")).status_code == 429  # names fold case

    await asyncio.sleep(1.05)
    # each failure after the free ones doubles the wait
    assert (await attempt(client, "alice", "wrong again", "10.0.1.1")).status_code == 401
    response = await attempt(client, "alice", PASSWORD, "10.0.1.2")
    assert response.status_code == 429 and "try again in 2 s" in await response.get_data(as_text=True)


async def test_a_successful_login_clears_the_accounts_counter(archive, client, make_user):
    await make_user("alice")
    for round_ in range(2):
        for n in range(accounts.FREE_FAILURES):
            assert (await attempt(client, "alice", "typo", f"10.{round_}.0.{n}")).status_code == 401
        assert failures(archive, "user:alice") == accounts.FREE_FAILURES
        assert (await attempt(client, "alice", PASSWORD, f"10.{round_}.1.1")).status_code == 302
        assert failures(archive, "user:alice") == 0


async def test_an_address_trying_many_names_is_locked(archive, client, make_user):
    await make_user("bob")
    for n in range(accounts.FREE_FAILURES + 1):
        assert (await attempt(client, f"guess{n}", "password123", "192.0.2.7")).status_code == 401
    # every name was tried once only, yet the address is locked, even for a right password
    response = await attempt(client, "bob", PASSWORD, "192.0.2.7")
    assert response.status_code == 429 and "try again in" in await response.get_data(as_text=True)
    assert failures(archive, "user:bob") == 0
    # the account itself is not locked: bob logs in from elsewhere
    assert (await attempt(client.app.test_client(), "bob", PASSWORD, "198.51.100.1")).status_code == 302


async def test_locks_double_up_to_the_maximum(archive):
    keys = ["user:carol", "addr:203.0.113.5"]
    for _ in range(accounts.FREE_FAILURES):
        await archive.store.record_login_failure(keys, accounts.FREE_FAILURES, 8.0)
        assert await archive.store.login_locked_until(keys) == 0
    waits = []
    for _ in range(6):
        await archive.store.record_login_failure(keys, accounts.FREE_FAILURES, 8.0)
        waits.append(round(await archive.store.login_locked_until(keys) - time.time()))
    assert waits == [1, 2, 4, 8, 8, 8]
    await archive.store.clear_login_failures(keys[:1])
    assert await archive.store.login_locked_until(keys[:1]) == 0
    assert await archive.store.login_locked_until(keys) > time.time()


async def test_unknown_and_disabled_accounts_are_refused(archive, client, make_user):
    user = await make_user("dave")
    assert (await log_in(client, "nobody")).status_code == 401
    await archive.store.update_user(user.id, disabled=True)
    response = await log_in(client, "dave")
    assert response.status_code == 403 and "disabled" in await response.get_data(as_text=True)
    assert (await client.get("/api/me")).status_code == 401


# argon2id -------------------------------------------------------------------------------------------
async def test_a_hash_with_old_parameters_is_replaced_at_login(archive, client, make_user):
    user = await make_user("erin")
    old = PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1).hash(PASSWORD)
    await archive.store.update_user(user.id, password_hash=old)
    assert (await log_in(client, "erin", PASSWORD + "x")).status_code == 401
    assert (await archive.store.get_user(user.id)).password_hash == old  # a wrong password changes nothing
    assert (await log_in(client, "erin")).status_code == 302
    new = (await archive.store.get_user(user.id)).password_hash
    current = PasswordHasher()
    assert new != old and new.startswith("$argon2id$")
    assert current.verify(new, PASSWORD) and not current.check_needs_rehash(new)
    assert f"m={current.memory_cost},t={current.time_cost},p={current.parallelism}" in new
    fresh = client.app.test_client()
    assert (await log_in(fresh, "erin")).status_code == 302


async def test_passwords_are_stored_as_argon2id_only(archive, make_user):
    user = await make_user("frank")
    assert user.password_hash.startswith("$argon2id$") and PASSWORD not in user.password_hash


# first start ------------------------------------------------------------------------------------------
async def test_first_admin_is_made_once(archive):
    password = await create_first_admin(archive)
    assert password and len(password) >= accounts.MIN_PASSWORD
    admin = await archive.store.get_user_by_name("admin")
    assert admin is not None and admin.role == "admin"
    assert await accounts.verify_password(archive, admin, password)
    assert await create_first_admin(archive) is None
    assert len(await archive.store.list_users()) == 1


async def test_no_first_admin_when_there_is_an_administrator(archive, make_user):
    await make_user("boss", role="admin")
    assert await create_first_admin(archive) is None
    assert [u.username for u in await archive.store.list_users()] == ["boss"]


async def test_processes_starting_at_once_make_one_admin(settings, pool):
    archives = [Archive(settings, pool=pool) for _ in range(4)]
    for archive in archives:
        await archive.startup()
    try:
        passwords = await asyncio.gather(*(create_first_admin(archive) for archive in archives))
        assert sum(p is not None for p in passwords) == 1
        users = await archives[0].store.list_users()
        assert [(u.username, u.role) for u in users] == [("admin", "admin")]
    finally:
        for archive in archives:
            await archive.close()


async def test_the_name_admin_taken_by_a_user_is_left_alone(archive, make_user, caplog):
    await make_user("admin")
    with caplog.at_level(logging.WARNING):
        assert await create_first_admin(archive) is None
    assert "imagex user add NAME --admin" in caplog.text
    assert (await archive.store.get_user_by_name("admin")).role == "user"


@pytest.mark.parametrize("first_admin", [None, True])
async def test_the_app_prints_the_first_admin_password_once(settings, pool, capsys, caplog, first_admin):
    async def start() -> str:
        app = create_app(settings, run_jobs=False, first_admin=first_admin)
        app.extensions["imagex"].pool = pool
        app.extensions["imagex"]._own_pool = False
        with caplog.at_level(logging.DEBUG):
            async with app.test_app():
                pass
        return str(capsys.readouterr().out)

    first, second = await start(), await start()
    if first_admin is None:  # the in-process test app (no job runner) makes no accounts
        assert first == second == ""
        return
    [line] = first.splitlines()
    assert line.startswith("Created administrator 'admin' with password '") and "/account" in line
    password = line.split("'")[3]
    assert second == "" and password not in caplog.text
