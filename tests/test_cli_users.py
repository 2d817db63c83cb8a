"""`imagex user add | passwd | list` and the administrator made at first start, run as real processes on a
data folder in tmp_path and checked against the catalog they leave behind."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path

from astropy.io import fits

from app import identity as accounts
from app.archive import Archive
from app.settings import Settings
from tests.processes import free_port

IMAGEX = Path(sys.executable).parent / "imagex"
TIMEOUT = 60


def environment(data: Path) -> dict[str, str]:
    clean = {key: value for key, value in os.environ.items() if not key.startswith("IMAGEX_")}
    return {**clean, "IMAGEX_DATA": str(data), "IMAGEX_HIPS": "false"}


def imagex(data: Path, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(IMAGEX), *args], env=environment(data), input=stdin, capture_output=True,
                          text=True, timeout=TIMEOUT)


@contextlib.asynccontextmanager
async def archive_with(data: Path, *names: str) -> AsyncIterator[Archive]:
    """Accounts `names` made by `imagex user add` (password "first password"), then the archive opened on
    the same data folder."""
    for name in names:
        assert imagex(data, "user", "add", name, "--password-stdin", stdin="first password\n").returncode == 0
    archive = Archive(Settings.load(environ={}, hips=False, data=str(data)))
    await archive.startup()
    try:
        yield archive
    finally:
        await archive.close()


async def check_password(data: Path, username: str, password: str) -> bool:
    archive = Archive(Settings.load(environ={}, hips=False, data=str(data)))
    await archive.startup()
    try:
        user = await archive.store.get_user_by_name(username)
        return user is not None and await accounts.verify_password(archive, user, password)
    finally:
        await archive.close()


async def test_user_add_with_a_generated_or_given_password(tmp_path):
    data = tmp_path / "var"
    done = imagex(data, "user", "add", "alice", "--email", "alice@example.org")
    assert done.returncode == 0, done.stderr
    match = re.fullmatch(r"Created user 'alice' with password '([^']+)'\n", done.stdout)
    assert match, done.stdout
    password = match.group(1)
    assert len(password) >= accounts.MIN_PASSWORD and password not in done.stderr
    assert await check_password(data, "alice", password)

    done = imagex(data, "user", "add", "root", "--admin", "--password-stdin", stdin="a chosen password\n")
    assert done.returncode == 0, done.stderr
    assert done.stdout == "Created administrator 'root'\n"
    assert "a chosen password" not in done.stdout + done.stderr
    assert await check_password(data, "root", "a chosen password")

    listing = imagex(data, "user", "list")
    assert listing.returncode == 0
    header, *rows = listing.stdout.splitlines()
    assert header.split() == ["NAME", "ROLE", "EMAIL", "DISABLED", "CREATED", "LAST", "LOGIN"]
    assert [row.split()[:4] for row in rows] == [["alice", "user", "alice@example.org", "no"],
                                                 ["root", "admin", "-", "no"]]
    assert all(row.split()[-1] == "never" for row in rows)
    assert all(re.search(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", row) for row in rows)


ERRORS = [
    (("user", "add", "Alice"), None, "the username 'Alice' is taken"),
    (("user", "add", "bad name"), None, "a username has 1-40 letters"),
    (("user", "add", "bob", "--password-stdin"), "short\n", "at least 10 characters"),
    (("user", "add", "bob", "--password-stdin"), "", "standard input holds no password"),
    (("user", "add", "bob", "--email", "nope"), None, "is not an email address"),
    (("user", "passwd", "nobody"), None, "no account named 'nobody'"),
    (("user", "passwd", "alice", "--password-stdin"), "alice\n", "at least 10 characters"),
]


async def test_user_errors_exit_2_with_a_message(tmp_path):
    data = tmp_path / "var"
    assert imagex(data, "user", "add", "alice").returncode == 0
    # the cases change nothing, so they run side by side
    results = await asyncio.gather(*(asyncio.to_thread(imagex, data, *args, stdin=stdin)
                                     for args, stdin, _ in ERRORS))
    for (args, _, message), done in zip(ERRORS, results, strict=True):
        assert done.returncode == 2, (args, done.stderr)
        assert done.stderr.startswith("imagex: ") and message in done.stderr, (args, done.stderr)
        assert done.stdout == "", args
    assert "bob" not in imagex(data, "user", "list").stdout


def test_user_list_of_an_empty_catalog(tmp_path):
    done = imagex(tmp_path / "var", "user", "list")
    assert done.returncode == 0 and done.stdout == "(no accounts yet)\n"


async def test_user_passwd_sets_the_password_and_ends_sessions(tmp_path):
    data = tmp_path / "var"
    async with archive_with(data, "alice") as archive:
        alice = await archive.store.get_user_by_name("alice")
        await archive.store.add_session(accounts.digest("browser-key"), alice.id, time.time() + 3600)
        for _ in range(accounts.FREE_FAILURES + 1):  # alice locked herself out of her office machine
            await accounts.note_login_failure(archive, "alice", address="10.0.0.5")
        assert await accounts.login_wait(archive, "alice", address="10.0.0.5") > 0

        done = await asyncio.to_thread(imagex, data, "user", "passwd", "ALICE")
        assert done.returncode == 0, done.stderr
        match = re.fullmatch(r"New password of 'alice': '([^']+)'; its sessions were logged out\n",
                             done.stdout)
        assert match, done.stdout
        assert await archive.store.session_user(accounts.digest("browser-key")) is None
        assert await accounts.login_wait(archive, "alice", address="10.0.0.5") == 0
        alice = await archive.store.get_user_by_name("alice")
        assert await accounts.verify_password(archive, alice, match.group(1))
        assert not await accounts.verify_password(archive, alice, "first password")

        done = await asyncio.to_thread(imagex, data, "user", "passwd", "alice", "--password-stdin",
                                       stdin="second password\n")
        assert done.returncode == 0 and done.stdout == (
            "Password of 'alice' changed; its sessions were logged out\n")
        alice = await archive.store.get_user_by_name("alice")
        assert await accounts.verify_password(archive, alice, "second password")
        assert len(await archive.store.list_tokens(alice.id)) == 0


async def test_user_passwd_revokes_the_tokens_when_asked(tmp_path):
    from app.routes.accounts import create_token

    data = tmp_path / "var"
    async with archive_with(data, "alice", "bob") as archive:
        alice, bob = [await archive.store.get_user_by_name(name) for name in ("alice", "bob")]
        for user in (alice, alice, bob):
            await create_token(archive, user, "a script")
        done = await asyncio.to_thread(imagex, data, "user", "passwd", "alice", "--password-stdin",
                                       stdin="second password\n")
        assert done.stdout == "Password of 'alice' changed; its sessions were logged out\n"
        assert len(await archive.store.list_tokens(alice.id)) == 2  # kept unless asked
        done = await asyncio.to_thread(imagex, data, "user", "passwd", "alice", "--password-stdin",
                                       "--revoke-tokens", stdin="third password\n")
        assert done.returncode == 0, done.stderr
        assert done.stdout == ("Password of 'alice' changed; its sessions were logged out and its 2 API "
                               "tokens revoked\n")
        assert await archive.store.list_tokens(alice.id) == []
        assert len(await archive.store.list_tokens(bob.id)) == 1


async def test_user_passwd_revokes_api_tokens_when_asked(tmp_path):
    from app.routes.accounts import create_token

    data = tmp_path / "var"
    async with archive_with(data, "alice") as archive:
        alice = await archive.store.get_user_by_name("alice")
        secret = str((await create_token(archive, alice, "laptop"))["token"])
        kept = await asyncio.to_thread(imagex, data, "user", "passwd", "alice", "--password-stdin",
                                       stdin="second password\n")
        assert kept.returncode == 0, kept.stderr
        assert (await archive.store.token_user(accounts.digest(secret))) is not None
        revoked = await asyncio.to_thread(imagex, data, "user", "passwd", "alice", "--password-stdin",
                                          "--revoke-tokens", stdin="third password\n")
        assert revoked.returncode == 0 and revoked.stdout == (
            "Password of 'alice' changed; its sessions were logged out and its 1 API token revoked\n")
        assert await archive.store.token_user(accounts.digest(secret)) is None
        assert await archive.store.list_tokens(alice.id) == []


# first start -----------------------------------------------------------------------------------------
def serve_once(data: Path) -> tuple[str, str]:
    """Start `imagex serve`, wait until it answers, stop it with SIGTERM; its stdout and stderr."""
    port = free_port()
    process = subprocess.Popen([str(IMAGEX), "serve", "--port", str(port), "--workers", "1"],
                               env=environment(data), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)
    try:
        deadline = time.monotonic() + TIMEOUT
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/login", timeout=2) as answer:
                    assert answer.status == 200
                    break
            except OSError:
                assert process.poll() is None, process.communicate()
                assert time.monotonic() < deadline, "imagex serve did not answer"
                time.sleep(0.1)
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=TIMEOUT)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0, err
    return out, err


async def test_serve_prints_the_first_admin_password_once(tmp_path):
    data = tmp_path / "var"
    out, err = await asyncio.to_thread(serve_once, data)
    lines = [line for line in out.splitlines() if "administrator" in line]
    assert len(lines) == 1, out
    match = re.fullmatch(r"Created administrator 'admin' with password '([^']+)'; change it at /account "
                         r"\(it is not shown again\)", lines[0])
    assert match, lines[0]
    password = match.group(1)
    assert password not in err
    assert await check_password(data, "admin", password)

    out, err = await asyncio.to_thread(serve_once, data)
    assert "administrator" not in out and password not in out + err
    assert "ImageX serving" in out


def test_ingest_owner_must_be_a_user_and_is_stored_in_its_spelling(tmp_path):
    from app.samples import FIELD_DEC, FIELD_RA, celestial_wcs, star_field

    data = tmp_path / "var"
    wcs = celestial_wcs(FIELD_RA, FIELD_DEC, 64, 64)
    path = tmp_path / "one.fits"
    fits.PrimaryHDU(star_field(wcs, 64, 64), wcs.to_header()).writeto(path)
    refused = imagex(data, "ingest", str(path), "--owner", "nobody", "--no-progress")
    assert refused.returncode == 2
    assert "--owner nobody: there is no such user" in refused.stderr
    added = imagex(data, "user", "add", "Alice")
    assert added.returncode == 0, added.stderr
    done = imagex(data, "ingest", str(path), "--owner", "alice", "--no-progress")
    assert done.returncode == 0, done.stdout + done.stderr
    with sqlite3.connect(data / "catalog.sqlite") as db:
        assert db.execute("SELECT owner FROM images").fetchall() == [("Alice",)]
