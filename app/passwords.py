"""Account passwords: argon2id hashes, made and checked in a thread so that the loop never waits on them."""

from __future__ import annotations

import asyncio
import secrets

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError


class Passwords:
    """Hashes passwords with `hasher`'s parameters (default: argon2-cffi's, RFC 9106's low-memory choice:
    64 MiB, 3 passes, 4 lanes) and checks them against stored hashes, each with the parameters it was made
    with. An archive is given one (`Archive(passwords=...)`); tests give theirs argon2's cheapest
    parameters, as argon2id is slow by design."""

    def __init__(self, hasher: PasswordHasher | None = None) -> None:
        self.hasher = hasher or PasswordHasher()
        self._unknown: str | None = None

    async def hash(self, password: str) -> str:
        return await asyncio.to_thread(self.hasher.hash, password)

    async def check(self, stored: str | None, password: str) -> bool:
        """Whether `password` matches the hash `stored`. None (no such account) is checked against the hash
        of a random password, so that the time taken does not tell which usernames exist; that hash is made
        at the first check of either kind, not when the process starts."""
        if self._unknown is None:
            self._unknown = await self.hash(secrets.token_urlsafe(16))
        against = self._unknown if stored is None else stored

        def verify() -> bool:
            try:
                return self.hasher.verify(against, password)
            except (VerifyMismatchError, VerificationError, InvalidHashError):
                return False

        return await asyncio.to_thread(verify) and stored is not None

    def outdated(self, stored: str) -> bool:
        """Whether a hash was made with other parameters than this hasher's (it is made again at the next
        successful login)."""
        return self.hasher.check_needs_rehash(stored)
