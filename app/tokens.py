"""Signed, expiring tile tokens: the permission decision travels in the tile URL, so serving a tile
needs no catalog query, and a static server in front can check the same token.

A token is `<expires>.<gen>.<digest>`: `expires` in hexadecimal Unix seconds, `gen` the name of the image's
current tile folder generation (16 hex characters, see `app/tiles/pyramid.py`) and `digest` the first 20
hex characters of HMAC-SHA256(secret, "tile:<id>:<gen>:<expires>"). Revoking an image's links renames its
generation folder: a token naming the old one then finds no files, with no catalog query."""

from __future__ import annotations

import contextlib
import hmac
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
    return key


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


def check(secret: bytes, image_id: str, token: str, at: float | None = None) -> tuple[int, str] | None:
    """(seconds the token stays valid, the generation it names), or None when it is forged, malformed or
    expired. Whether that generation is still the image's is for the caller to see (its folder exists)."""
    if not _TOKEN.fullmatch(token):
        return None  # one spelling per token, so a checker in front (nginx) can parse it the same way
    expires_hex, gen, digest = token.split(".")
    expires = int(expires_hex, 16)
    if not hmac.compare_digest(digest, _digest(secret, image_id, gen, expires)):
        return None
    remaining = expires - int(at if at is not None else time.time())
    return (remaining, gen) if remaining > 0 else None
