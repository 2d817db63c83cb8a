"""Signed, expiring tile tokens and the site secret they are signed with."""

from __future__ import annotations

import json
import stat
import threading
from pathlib import Path

import pytest

from app import tokens
from app.exceptions import SettingError

SECRET = bytes(range(32))
TTL = 43_200
STEP = TTL // 4
START = 1_800_000_000 // STEP * STEP + 1  # just past a rounding boundary
GEN = "0123456789abcdef"


def test_a_token_made_now_checks_for_at_least_its_ttl():
    token = tokens.make(SECRET, "abc123", GEN, TTL, at=START)
    checked = tokens.check(SECRET, "abc123", token, at=START)
    assert checked is not None
    remaining, gen = checked
    assert TTL <= remaining < TTL + STEP and gen == GEN
    assert tokens.check(SECRET, "abc123", token, at=START + TTL - 1) is not None
    expires = START + remaining
    assert tokens.check(SECRET, "abc123", token, at=expires - 1) == (1, GEN)
    assert tokens.check(SECRET, "abc123", token, at=expires) is None
    assert tokens.check(SECRET, "abc123", token, at=expires + 3600) is None


def test_a_token_made_with_the_clock_checks_now():
    token = tokens.make(SECRET, "abc123", GEN, 60)
    checked = tokens.check(SECRET, "abc123", token)
    assert checked is not None and 55 <= checked[0] <= 60 + 15


def test_token_shape_is_hex_expiry_dot_generation_dot_digest():
    token = tokens.make(SECRET, "abc123", GEN, TTL, at=START)
    expires, gen, digest = token.split(".")
    assert int(expires, 16) % STEP == 0 and gen == GEN
    assert len(digest) == tokens.DIGEST_CHARS and all(c in "0123456789abcdef" for c in digest)


@pytest.mark.parametrize("seconds_later", [0, 1, 5, 59, 3600, STEP - 2])
def test_tokens_made_close_together_are_equal(seconds_later):
    """Expiry is rounded up, so pages rendered close together share tile URLs (and the browser cache)."""
    assert tokens.make(SECRET, "abc123", GEN, TTL, at=START) == tokens.make(
        SECRET, "abc123", GEN, TTL, at=START + seconds_later)


def test_tokens_differ_across_a_rounding_step_and_images_and_secrets():
    base = tokens.make(SECRET, "abc123", GEN, TTL, at=START)
    assert tokens.make(SECRET, "abc123", GEN, TTL, at=START + STEP) != base
    assert tokens.make(SECRET, "abc124", GEN, TTL, at=START) != base
    assert tokens.make(b"another secret", "abc123", GEN, TTL, at=START) != base
    assert tokens.make(SECRET, "abc123", "fedcba9876543210", TTL, at=START) != base


def test_small_ttls_still_round_and_expire():
    token = tokens.make(SECRET, "abc123", GEN, 3, at=100)
    assert tokens.check(SECRET, "abc123", token, at=100) == (3, GEN)
    assert tokens.check(SECRET, "abc123", token, at=103) is None


def tampered(token: str) -> list[str]:
    expires, gen, digest = token.split(".")
    flipped = "0" if digest[0] != "0" else "1"
    other_gen = "f" + gen[1:] if gen[0] != "f" else "e" + gen[1:]
    return [
        f"{expires}.{gen}.{flipped}{digest[1:]}",
        f"{int(expires, 16) + STEP:x}.{gen}.{digest}",
        f"{int(expires, 16) - STEP:x}.{gen}.{digest}",
        f"{expires}.{other_gen}.{digest}",  # another generation: the signature covers it
        f"{expires}.{gen}.{digest.upper()}",
        f"{expires}.{gen.upper()}.{digest}",
        f"{expires}.{gen}.{digest[:-1]}",
        f"{expires}.{gen}.{digest}0",
        f"{expires}.{gen[:-1]}.{digest}",
        f"{expires}.{digest}",  # the old shape, without a generation
        f"{expires}{gen}{digest}",
        f".{gen}.{digest}",
        f"{expires}.{gen}.",
        "",
        "..",
        "not-a-token",
        f"g{expires}.{gen}.{digest}",
    ]


def test_tampered_tokens_are_rejected():
    token = tokens.make(SECRET, "abc123", GEN, TTL, at=START)
    for forged in tampered(token):
        assert tokens.check(SECRET, "abc123", forged, at=START) is None, forged


def test_a_token_does_not_carry_over_to_another_image_or_secret():
    token = tokens.make(SECRET, "abc123", GEN, TTL, at=START)
    assert tokens.check(SECRET, "abc1234", token, at=START) is None
    assert tokens.check(SECRET, "ABC123", token, at=START) is None
    assert tokens.check(SECRET[:-1] + b"\xff", "abc123", token, at=START) is None


def test_load_secret_creates_an_owner_only_file_once(tmp_path: Path):
    path = tmp_path / "data" / "secret.key"
    key = tokens.load_secret(path)
    assert len(key) == 32 and key != bytes(32)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_text().strip() == key.hex()
    before = path.stat()
    for _ in range(3):
        assert tokens.load_secret(path) == key
    after = path.stat()
    assert (after.st_mtime_ns, after.st_ino) == (before.st_mtime_ns, before.st_ino)
    assert tokens.load_secret(tmp_path / "other" / "secret.key") != key


def test_load_secret_keeps_an_existing_key(tmp_path: Path):
    path = tmp_path / "secret.key"
    path.write_text("ab" * 32 + "\n")
    assert tokens.load_secret(path) == bytes([0xAB] * 32)


def test_nginx_copy_of_the_key_follows_a_new_key(tmp_path: Path):
    """nginx preloads the key from `secret.key.json`: made when asked, owner-only, and brought up to date
    at the next start after the key changed; never made when no one asked for it."""
    path = tmp_path / "secret.key"
    key = tokens.load_secret(path)
    copy = path.with_name("secret.key.json")
    assert not copy.exists()
    assert tokens.share_with_nginx(path, key) == copy
    assert json.loads(copy.read_text()) == {"key": key.hex()} and stat.S_IMODE(copy.stat().st_mode) == 0o600
    path.unlink()  # an administrator makes a new key
    new = tokens.load_secret(path)
    assert new != key and json.loads(copy.read_text()) == {"key": new.hex()}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["secret.key", "secret.key.json"]  # no leftovers


@pytest.mark.parametrize("content", ["", "\n", "not hex at all", "abcd"])
def test_an_empty_or_damaged_key_file_is_refused(tmp_path: Path, content: str):
    """An empty key would let anyone sign tile URLs: refuse it with a message that says what to do."""
    path = tmp_path / "secret.key"
    path.write_text(content)
    with pytest.raises(SettingError, match="delete it"):
        tokens.load_secret(path)


def race_to_load(path: Path, loaders: int) -> list[bytes]:
    """`loaders` threads released together, each loading the key at `path`."""
    barrier = threading.Barrier(loaders)
    keys: list[bytes] = []

    def load() -> None:
        barrier.wait()
        keys.append(tokens.load_secret(path))

    threads = [threading.Thread(target=load) for _ in range(loaders)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return keys


def test_processes_starting_together_agree_on_one_key(tmp_path: Path):
    """Many loaders racing on a missing key file all get the same full-length key."""
    for attempt in range(30):
        path = tmp_path / f"race{attempt}" / "secret.key"
        keys = race_to_load(path, 8)
        assert len(keys) == 8
        assert {len(key) for key in keys} == {32}, f"attempt {attempt}: a loader got a short key"
        assert len(set(keys)) == 1
        assert [p.name for p in path.parent.iterdir()] == ["secret.key"]  # no temporary files left


def test_the_digest_is_hmac_sha256_over_the_documented_message():
    """nginx in front (app/nginx.py) computes the same: a change here breaks every deployment's site."""
    import hashlib
    import hmac

    token = tokens.make(SECRET, "abc123", GEN, TTL, at=START)
    expires_hex, gen, digest = token.split(".")
    message = f"tile:abc123:{gen}:{int(expires_hex, 16)}".encode()
    assert digest == hmac.new(SECRET, message, hashlib.sha256).hexdigest()[:20]
