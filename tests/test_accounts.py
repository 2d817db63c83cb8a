"""Accounts core: login throttling per account and per address (through the real login form), argon2id
rehashing when the parameters change, and the administrator made on first start."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import AsyncIterator
from typing import Any

import pytest
from argon2 import PasswordHasher

from app import create_app, create_first_admin
from app import identity as accounts
from app.archive import Archive
from app.store.records import LoginFailures
from tests.helpers import PASSWORD, QUICK_PASSWORDS, csrf_of, log_in


async def attempt(client: Any, username: str, password: str, address: str) -> Any:
    """One login through the form, as sent from `address`."""
    token = await csrf_of(client, "/login")
    return await client.post("/login", form={"username": username, "password": password, "csrf_token": token},
                             scope_base={"client": (address, 40000)})


def failures(archive: Archive, key: str) -> int:
    with sqlite3.connect(archive.settings.data / "catalog.sqlite") as db:
        return int(db.execute("SELECT count(*) FROM login_failures WHERE key = ?", (key,)).fetchone()[0])


class Clock:
    """A clock the test moves by hand: throttling is tested without sleeping."""

    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def clocked(settings, pool, clock) -> AsyncIterator[Any]:
    """A test client of an app whose throttle reads `clock`."""
    app = create_app(settings, run_jobs=False, clock=clock, pool=pool, passwords=QUICK_PASSWORDS)
    async with app.test_app() as test_app:
        yield test_app.test_client()


async def test_ten_attacking_addresses_do_not_lock_the_owner_out(archive, clocked, clock, make_user):
    """The attack of issue 11: ten addresses guessing the administrator's password in turn, 4 requests a
    second between them (each address every 2.5 s)."""
    client = clocked
    await make_user("admin", role="admin")
    attackers = [f"203.0.113.{n}" for n in range(10)]
    statuses: dict[str, list[int]] = {address: [] for address in attackers}
    for round_ in range(accounts.FREE_FAILURES + 7):
        for address in attackers:
            statuses[address].append((await attempt(client, "admin", f"guess {round_}", address)).status_code)
            clock.now += 0.25
        if round_ == accounts.FREE_FAILURES + 4:  # mid-attack, every attacker locked: the owner logs in
            owner = client.app.test_client()
            assert (await attempt(owner, "admin", PASSWORD, "198.51.100.20")).status_code == 302
    # each attacker backs off on its own: its free failures, then locks of 1, 2, 4, 8 s after each heard
    # guess; at one attempt every 2.5 s, the 4 s lock refuses one attempt and the 8 s lock three
    for address in attackers:
        assert statuses[address] == [401] * (accounts.FREE_FAILURES + 3) + [429, 401] + [429] * 2, address
        assert failures(archive, f"user:admin@{address}") == accounts.FREE_FAILURES + 4
    # after the attack too, from another clean address
    assert (await attempt(client.app.test_client(), "admin", PASSWORD, "198.51.100.21")).status_code == 302
    # an attacker's address stays refused even with the right password (it could have guessed it)
    response = await attempt(client, "Admin", PASSWORD, attackers[0])  # names fold case
    assert response.status_code == 429
    assert "Too many failed logins" in await response.get_data(as_text=True)
    assert int(response.headers["Retry-After"]) == 1  # its last heard guess, 7.5 s ago, locked it 8 s
    clock.now += accounts.FAILURE_WINDOW + 1
    assert (await attempt(client, "admin", PASSWORD, attackers[0])).status_code == 302


async def test_a_successful_login_clears_the_count_of_the_account_at_that_address(archive, client, make_user):
    await make_user("alice")
    for _round in range(2):
        for _ in range(accounts.FREE_FAILURES):
            assert (await attempt(client, "alice", "typo", "10.0.0.1")).status_code == 401
        assert failures(archive, "user:alice@10.0.0.1") == accounts.FREE_FAILURES
        assert (await attempt(client, "alice", PASSWORD, "10.0.0.1")).status_code == 302
        assert failures(archive, "user:alice@10.0.0.1") == 0
    # the address's own count stays: logging in to one's own account does not clear a guesser's address
    assert failures(archive, "addr:10.0.0.1") == 2 * accounts.FREE_FAILURES


async def test_an_address_trying_many_names_is_locked(archive, client, make_user):
    await make_user("bob")
    for n in range(accounts.FREE_ADDRESS_FAILURES + 1):
        assert (await attempt(client, f"guess{n}", "password123", "192.0.2.7")).status_code == 401
    # every name was tried once only, yet the address is locked, even for a right password
    response = await attempt(client, "bob", PASSWORD, "192.0.2.7")
    assert response.status_code == 429 and "try again in" in await response.get_data(as_text=True)
    assert failures(archive, "user:bob@192.0.2.7") == 0
    # the account itself is not locked: bob logs in from elsewhere
    assert (await attempt(client.app.test_client(), "bob", PASSWORD, "198.51.100.1")).status_code == 302


async def test_locks_double_up_to_the_maximum_and_failures_are_forgotten(archive):
    start = 1_000_000.0
    at = start
    for _ in range(accounts.FREE_FAILURES):
        await accounts.note_login_failure(archive, "carol", address="203.0.113.5", at=at)
        assert await accounts.login_wait(archive, "carol", address="203.0.113.5", at=at) == 0
    waits = []
    for _ in range(12):
        await accounts.note_login_failure(archive, "carol", address="203.0.113.5", at=at)
        waits.append(await accounts.login_wait(archive, "carol", address="203.0.113.5", at=at))
        at += waits[-1]  # the attacker waits exactly as long as told
    assert waits == [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, accounts.MAX_LOCK, accounts.MAX_LOCK]
    # other accounts from other addresses are not touched; the same account from another address neither
    assert await accounts.login_wait(archive, "carol", address="203.0.113.6", at=at) == 0
    # the address is locked for any name once its failures pass its own free count
    assert await accounts.login_wait(archive, "dan", address="203.0.113.5", at=at) == 0
    # an hour without failures: all is forgotten, the next failure is free again
    at += accounts.FAILURE_WINDOW + 1
    assert await accounts.login_wait(archive, "carol", address="203.0.113.5", at=at) == 0
    await accounts.note_login_failure(archive, "carol", address="203.0.113.5", at=at)
    assert await accounts.login_wait(archive, "carol", address="203.0.113.5", at=at) == 0
    assert failures(archive, "user:carol@203.0.113.5") == 1  # the old rows were deleted, not only ignored


def test_a_burst_of_failures_locks_for_the_maximum_without_overflow():
    burst = LoginFailures(count=5000, last=100.0)
    assert accounts.locked_until(burst, accounts.FREE_FAILURES) == 100.0 + accounts.MAX_LOCK
    assert accounts.locked_until(None, accounts.FREE_FAILURES) == 0.0
    assert accounts.locked_until(LoginFailures(accounts.FREE_FAILURES, 100.0), accounts.FREE_FAILURES) == 0.0


async def test_failures_decay_one_by_one_as_they_leave_the_window(archive):
    address = "203.0.113.9"
    for n in range(accounts.FREE_FAILURES + 2):  # one failure a minute: the last two lock
        await accounts.note_login_failure(archive, "erin", address=address, at=60.0 * n)
    last = 60.0 * (accounts.FREE_FAILURES + 1)
    assert await accounts.login_wait(archive, "erin", address=address, at=last) == 2
    # once the first failure is an hour old, one failure more costs less
    later = accounts.FAILURE_WINDOW + 30.0
    await accounts.note_login_failure(archive, "erin", address=address, at=later)
    assert await accounts.login_wait(archive, "erin", address=address, at=later) == 2  # 7 in the window
    much_later = accounts.FAILURE_WINDOW + 121.0  # the failures at 0, 60 and 120 s have left the window
    await accounts.note_login_failure(archive, "erin", address=address, at=much_later)
    assert await accounts.login_wait(archive, "erin", address=address, at=much_later) == 1  # 6 in the window


async def test_unknown_and_disabled_accounts_are_refused(archive, client, make_user):
    user = await make_user("dave")
    assert (await log_in(client, "nobody")).status_code == 401
    await archive.store.update_user(user.id, disabled=True)
    response = await log_in(client, "dave")
    assert response.status_code == 403 and "disabled" in await response.get_data(as_text=True)
    assert (await client.get("/api/me")).status_code == 401


# argon2id -------------------------------------------------------------------------------------------
async def test_a_hash_with_old_parameters_is_replaced_at_login(settings, pool, archive, make_user):
    """A site's passwords are hashed with argon2id and RFC 9106's low-memory parameters (64 MiB, 3 passes, 4
    lanes: argon2-cffi's default); a hash made with others (here the tests' cheap ones) is replaced at the
    next successful login."""
    user = await make_user("erin")
    old = user.password_hash
    assert old.startswith("$argon2id$v=19$m=8,t=1,p=1$")
    app = create_app(settings, run_jobs=False, pool=pool)  # the site's own hasher
    async with app.test_app() as test_app:
        client = test_app.test_client()
        assert (await log_in(client, "erin", PASSWORD + "x")).status_code == 401
        assert (await archive.store.get_user(user.id)).password_hash == old  # a wrong one changes nothing
        assert (await log_in(client, "erin")).status_code == 302
        new = (await archive.store.get_user(user.id)).password_hash
        assert new.startswith("$argon2id$v=19$m=65536,t=3,p=4$")
        current = PasswordHasher()
        assert current.verify(new, PASSWORD) and not current.check_needs_rehash(new)
        assert (await log_in(test_app.test_client(), "erin")).status_code == 302
        assert (await archive.store.get_user(user.id)).password_hash == new  # up to date: kept


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
    archives = [Archive(settings, pool=pool, passwords=QUICK_PASSWORDS) for _ in range(4)]
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
        app = create_app(settings, run_jobs=False, first_admin=first_admin, pool=pool,
                         passwords=QUICK_PASSWORDS)
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
