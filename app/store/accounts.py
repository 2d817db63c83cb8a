"""Accounts in the catalog: users, sessions, API tokens, invitations and login throttling, written once over
the plain-table primitives (`app.store.tables`). Only hashes of session keys, tokens and invitation codes
are stored; the rules that use them are in `app/identity.py`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from app.exceptions import DiskFull
from app.store.records import ApiToken, Invitation, LoginFailures, User
from app.store.tables import (
    INVITATIONS,
    LOGIN_FAILURES,
    SESSIONS,
    TOKENS,
    USERS,
    LoginFailure,
    Session,
    Tables,
    above,
    at_least,
    below,
    one_of,
    starting,
)

# what `update_user` may change; the rest of a user (id, username, created) stays as it was made
USER_FIELDS = frozenset({"email", "display_name", "role", "password_hash", "quota", "disabled", "last_login"})


class Accounts(Tables):
    # users -----------------------------------------------------------------------------------------
    async def add_user(self, user: User) -> None:
        """Raises Conflict when the username (ignoring the case of ASCII letters) is taken."""
        await self._insert(USERS, [user], taken=f"the username {user.username!r} is taken")

    async def get_user(self, user_id: str) -> User | None:
        return await self._one(USERS, {"id": user_id})

    async def get_user_by_name(self, username: str) -> User | None:
        return await self._one(USERS, {"username": username})

    async def list_users(self) -> list[User]:
        return await self._select(USERS, {}, order=["username"])

    async def update_user(self, user_id: str, **changes: Any) -> None:
        """Change fields of a user: those in USER_FIELDS (a ValueError names any other)."""
        unknown = set(changes) - USER_FIELDS
        if unknown:
            raise ValueError(f"cannot change user fields {sorted(unknown)}")
        if changes:
            await self._update(USERS, {"id": user_id}, changes)

    # sessions and API tokens -----------------------------------------------------------------------
    async def add_session(self, key_hash: str, user_id: str, expires: float) -> None:
        stamp = self.now()
        await self._delete(SESSIONS, {"expires": below(stamp)})
        await self._insert(SESSIONS, [Session(key_hash, user_id, stamp, expires)],
                           taken="that session key is in use")

    async def session_user(self, key_hash: str) -> User | None:
        """The user of an unexpired session."""
        session = await self._one(SESSIONS, {"key_hash": key_hash, "expires": above(self.now())})
        return None if session is None else await self.get_user(session.user_id)

    async def delete_session(self, key_hash: str) -> None:
        await self._delete(SESSIONS, {"key_hash": key_hash})

    async def delete_user_sessions(self, user_id: str) -> None:
        await self._delete(SESSIONS, {"user_id": user_id})

    async def add_token(self, token: ApiToken) -> None:
        await self._insert(TOKENS, [token], taken="that token is in use")

    async def list_tokens(self, user_id: str) -> list[ApiToken]:
        return await self._select(TOKENS, {"user_id": user_id}, order=["created"])

    async def delete_token(self, user_id: str, token_id: str) -> bool:
        return await self._delete(TOKENS, {"id": token_id, "user_id": user_id}) == 1

    async def delete_user_tokens(self, user_id: str) -> int:
        """Revoke every API token of the account; how many there were."""
        return await self._delete(TOKENS, {"user_id": user_id})

    async def token_user(self, token_hash: str) -> User | None:
        """The user a token belongs to (and note its use)."""
        token = await self._one(TOKENS, {"token_hash": token_hash})
        user = None if token is None else await self.get_user(token.user_id)
        if token is not None and user is not None:
            try:
                await self._update(TOKENS, {"id": token.id}, {"last_used": self.now()})
            except DiskFull:  # a full disk must not lock token holders out
                pass
        return user

    # invitations -----------------------------------------------------------------------------------
    async def add_invitation(self, invitation: Invitation) -> None:
        await self._insert(INVITATIONS, [invitation], taken="that invitation exists already")

    async def list_invitations(self) -> list[Invitation]:
        return await self._select(INVITATIONS, {}, order=["-created"])

    async def get_invitation(self, code_hash: str) -> Invitation | None:
        return await self._one(INVITATIONS, {"code_hash": code_hash})

    async def expire_invitation(self, invitation_id: str) -> bool:
        """Withdraw an unused invitation now; False when it was used or had expired already."""
        stamp = self.now()
        unused = {"id": invitation_id, "used_by": None, "expires": above(stamp)}
        return await self._update(INVITATIONS, unused, {"expires": stamp}) == 1

    async def use_invitation(self, code_hash: str, username: str) -> bool:
        """Mark an unused, unexpired invitation used, atomically; False otherwise."""
        stamp = self.now()
        unused = {"code_hash": code_hash, "used_by": None, "expires": above(stamp)}
        return await self._update(INVITATIONS, unused, {"used_by": username, "used_at": stamp}) == 1

    # login throttling: one row per key and failure (concurrent failures each count without a
    # read-modify-write); app/identity.py holds the rule ---------------------------------------------
    async def add_login_failure(self, keys: Sequence[str], at: float, forget_before: float) -> None:
        """Note one failed login at `at` under each key, and forget every failure (of any key) older than
        `forget_before`, so the record never grows beyond what the throttle still reads."""
        await self._delete(LOGIN_FAILURES, {"at": below(forget_before)})
        await self._insert(LOGIN_FAILURES, [LoginFailure(key, at) for key in dict.fromkeys(keys)])

    async def login_failures(self, keys: Sequence[str], since: float) -> dict[str, LoginFailures]:
        """For each key with failures at `since` or later: how many, and the time of the latest (keys with
        none are absent)."""
        found: dict[str, LoginFailures] = {}
        if keys:
            for failure in await self._select(LOGIN_FAILURES, {"key": one_of(keys), "at": at_least(since)}):
                known = found.get(failure.key, LoginFailures(0, failure.at))
                found[failure.key] = LoginFailures(known.count + 1, max(known.last, failure.at))
        return found

    async def clear_login_failures(self, keys: Sequence[str] = (), *, prefix: str = "") -> None:
        """Forget the failures of `keys`, and of every key starting with `prefix` when one is given."""
        if keys:
            await self._delete(LOGIN_FAILURES, {"key": one_of(keys)})
        if prefix:
            await self._delete(LOGIN_FAILURES, {"key": starting(prefix)})
