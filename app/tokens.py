"""Signed, expiring tile tokens: the permission decision travels in the tile URL, so serving a tile
needs no catalog query, and a static server in front can check the same token."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from pathlib import Path

DIGEST_CHARS = 20


def load_secret(path: Path) -> bytes:
    """The site's secret key, made once (readable by its owner only) and kept in the data folder."""
    try:
        return bytes.fromhex(path.read_text().strip())
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with path.open("x") as handle:  # exclusive: two processes starting together agree on one key
            path.chmod(0o600)
            handle.write(secrets.token_hex(32))
    except FileExistsError:
        pass
    return bytes.fromhex(path.read_text().strip())


def _digest(secret: bytes, image_id: str, expires: int) -> str:
    message = f"tile:{image_id}:{expires}".encode()
    return hmac.new(secret, message, hashlib.sha256).hexdigest()[:DIGEST_CHARS]


def make(secret: bytes, image_id: str, ttl: int, at: float | None = None) -> str:
    """A token valid for at least `ttl` seconds. Expiry is rounded up to a quarter of `ttl`, so pages
    rendered close together share tile URLs and the browser cache."""
    step = max(1, ttl // 4)
    expires = (int(at if at is not None else time.time()) + ttl + step - 1) // step * step
    return f"{expires:x}.{_digest(secret, image_id, expires)}"


def check(secret: bytes, image_id: str, token: str, at: float | None = None) -> int | None:
    """Seconds the token stays valid, or None when it is forged, malformed or expired."""
    expires_hex, _, digest = token.partition(".")
    try:
        expires = int(expires_hex, 16)
    except ValueError:
        return None
    if len(digest) != DIGEST_CHARS or not hmac.compare_digest(digest, _digest(secret, image_id, expires)):
        return None
    remaining = expires - int(at if at is not None else time.time())
    return remaining if remaining > 0 else None
