"""Signed, expiring tile tokens: the permission decision travels in the tile URL, so serving a tile
needs no catalog query, and a static server in front can check the same token.

A token is `<expires>.<gen>.<digest>`: `expires` in hexadecimal Unix seconds, `gen` the name of the image's
current tile folder generation (16 hex characters, see `app/tiles/pyramid.py`) and `digest` the first 20
hex characters of HMAC-SHA256(secret, "tile:<id>:<gen>:<expires>"). Revoking an image's links renames its
generation folder: a token naming the old one then finds no files, with no catalog query."""

from __future__ import annotations

import contextlib
import hmac
import json
import os
import re
import secrets
import time
from pathlib import Path

from app.exceptions import SettingError

DIGEST_CHARS = 20
MIN_SECRET_BYTES = 16
GEN_CHARS = 16
GEN = re.compile(r"[0-9a-f]{" + str(GEN_CHARS) + "}")
_TOKEN = re.compile(rf"[1-9a-f][0-9a-f]{{0,15}}\.[0-9a-f]{{{GEN_CHARS}}}\.[0-9a-f]{{{DIGEST_CHARS}}}")


def load_secret(path: Path) -> bytes:
    """The site's secret key, made once (readable by its owner only) and kept in the data folder."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        # Written whole under a private name, then linked into place: the link fails when a key exists,
        # so processes starting together agree on one key and none reads a half-written (empty) file.
        temporary = path.with_name(f".{path.name}.{secrets.token_hex(8)}")
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.fchmod(descriptor, 0o600)
            with os.fdopen(descriptor, "w") as handle:
                handle.write(secrets.token_hex(32))
            with contextlib.suppress(FileExistsError):
                os.link(temporary, path)
        finally:
            temporary.unlink(missing_ok=True)
    try:
        key = bytes.fromhex(path.read_text().strip())
    except ValueError:
        key = b""
    if len(key) < MIN_SECRET_BYTES:
        # an empty key would let anyone sign tile URLs
        raise SettingError(f"{path}: the secret key file is empty or damaged; delete it and a new key "
                           "is made at the next start")
    with contextlib.suppress(OSError):  # a copy that cannot be refreshed only sends tiles through ImageX
        share_with_nginx(path, key, create=False)
    return key


def share_with_nginx(path: Path, key: bytes, *, create: bool = True) -> Path:
    """The key as nginx's JavaScript module preloads it (`js_preload_object`: one copy shared by every
    request, where reading the key file in the module would cost each request the file module):
    `<key file>.json`, `{"key": "<hex>"}`, readable by its owner only. Written by `imagex nginx-config`,
    and brought up to date at every later start whenever it exists (a new key would otherwise send every
    tile through ImageX). Returns its path."""
    copy = path.with_name(path.name + ".json")
    text = json.dumps({"key": key.hex()})
    try:
        if copy.read_text() == text:
            return copy
    except FileNotFoundError:
        if not create:
            return copy
    temporary = copy.with_name(f".{copy.name}.{secrets.token_hex(8)}")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(descriptor, "w") as handle:
            handle.write(text)
        os.replace(temporary, copy)
    finally:
        temporary.unlink(missing_ok=True)
    return copy


def _digest(secret: bytes, image_id: str, gen: str, expires: int) -> str:
    # the one-shot C digest: this runs for every tile request
    return hmac.digest(secret, f"tile:{image_id}:{gen}:{expires}".encode(), "sha256").hex()[:DIGEST_CHARS]


def make(secret: bytes, image_id: str, gen: str, ttl: int, at: float | None = None) -> str:
    """A token for generation `gen` of the image's tiles, valid for at least `ttl` seconds. Expiry is
    rounded up to a quarter of `ttl`, so pages rendered close together share tile URLs and the browser
    cache."""
    step = max(1, ttl // 4)
    expires = (int(at if at is not None else time.time()) + ttl + step - 1) // step * step
    return f"{expires:x}.{gen}.{_digest(secret, image_id, gen, expires)}"


def signed(secret: bytes, image_id: str, token: str) -> tuple[int, str] | None:
    """(when the token expires, in Unix seconds; the generation it names) when `secret` signed it for this
    image, else None (forged or malformed). Whether it expired is `check`'s question; the answer for one
    token never changes, so a server may remember it."""
    if not _TOKEN.fullmatch(token):
        return None  # one spelling per token, so a checker in front (nginx) can parse it the same way
    expires_hex, gen, digest = token.split(".")
    expires = int(expires_hex, 16)
    if not hmac.compare_digest(digest, _digest(secret, image_id, gen, expires)):
        return None
    return expires, gen


def check(secret: bytes, image_id: str, token: str, at: float | None = None) -> tuple[int, str] | None:
    """(seconds the token stays valid, the generation it names), or None when it is forged, malformed or
    expired. Whether that generation is still the image's is for the caller to see (its folder exists)."""
    found = signed(secret, image_id, token)
    if found is None:
        return None
    expires, gen = found
    remaining = expires - int(at if at is not None else time.time())
    return (remaining, gen) if remaining > 0 else None
