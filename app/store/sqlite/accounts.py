"""The SQLite catalog's accounts: users, sessions, API tokens, invitations and login throttling."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

from app.exceptions import Conflict
from app.store.records import ApiToken, Invitation, LoginFailures, User
from app.store.rows import from_row, insert_sql, names, to_row
from app.store.sqlite.connection import SQLiteBase, disk_full, transaction


class SQLiteAccounts(SQLiteBase):
    # users -----------------------------------------------------------------------------------------
    async def add_user(self, user: User) -> None:
        try:
            await self._write(insert_sql("users", names(User)), to_row(user))
        except sqlite3.IntegrityError:
            raise Conflict(f"the username {user.username!r} is taken") from None

    async def get_user(self, user_id: str) -> User | None:
        return await self._one_user("SELECT * FROM users WHERE id = ?", (user_id,))

    async def get_user_by_name(self, username: str) -> User | None:
        return await self._one_user("SELECT * FROM users WHERE username = ?", (username,))

    async def list_users(self) -> list[User]:
        def select() -> list[User]:
            return [from_row(User, row) for row in self.db.execute("SELECT * FROM users ORDER BY username")]

        return await self._run(select)

    async def _set_user_fields(self, user_id: str, changes: dict[str, Any]) -> None:
        columns = ", ".join(f"{name} = ?" for name in changes)
        values = [int(v) if isinstance(v, bool) else v for v in changes.values()]
        await self._write(f"UPDATE users SET {columns} WHERE id = ?", (*values, user_id))

    async def _one_user(self, sql: str, params: tuple[Any, ...]) -> User | None:
        def select() -> User | None:
            row = self.db.execute(sql, params).fetchone()
            return None if row is None else from_row(User, row)

        return await self._run(select)

    # sessions and tokens ---------------------------------------------------------------------------
    async def add_session(self, key_hash: str, user_id: str, expires: float) -> None:
        def add() -> None:
            with transaction(self.db) as db:
                db.execute("DELETE FROM sessions WHERE expires < ?", (self.now(),))
                db.execute("INSERT INTO sessions (key_hash, user_id, created, expires) VALUES (?, ?, ?, ?)",
                           (key_hash, user_id, self.now(), expires))

        try:
            await self._run(add)
        except sqlite3.IntegrityError:
            raise Conflict("that session key is in use") from None

    async def session_user(self, key_hash: str) -> User | None:
        return await self._one_user(
            "SELECT users.* FROM sessions JOIN users ON users.id = sessions.user_id "
            "WHERE sessions.key_hash = ? AND sessions.expires > ?", (key_hash, self.now()))

    async def delete_session(self, key_hash: str) -> None:
        await self._write("DELETE FROM sessions WHERE key_hash = ?", (key_hash,))

    async def delete_user_sessions(self, user_id: str) -> None:
        await self._write("DELETE FROM sessions WHERE user_id = ?", (user_id,))

    async def add_token(self, token: ApiToken) -> None:
        try:
            await self._write(insert_sql("api_tokens", names(ApiToken)), to_row(token))
        except sqlite3.IntegrityError:
            raise Conflict("that token is in use") from None

    async def list_tokens(self, user_id: str) -> list[ApiToken]:
        def select() -> list[ApiToken]:
            rows = self.db.execute("SELECT * FROM api_tokens WHERE user_id = ? ORDER BY created", (user_id,))
            return [from_row(ApiToken, row) for row in rows]

        return await self._run(select)

    async def delete_token(self, user_id: str, token_id: str) -> bool:
        return await self._write("DELETE FROM api_tokens WHERE id = ? AND user_id = ?",
                                 (token_id, user_id)) == 1

    async def delete_user_tokens(self, user_id: str) -> int:
        return await self._write("DELETE FROM api_tokens WHERE user_id = ?", (user_id,))

    async def token_user(self, token_hash: str) -> User | None:
        def find() -> User | None:
            row = self.db.execute(
                "SELECT users.* FROM api_tokens JOIN users ON users.id = api_tokens.user_id "
                "WHERE api_tokens.token_hash = ?", (token_hash,)).fetchone()
            if row is None:
                return None
            try:
                with transaction(self.db) as db:
                    db.execute("UPDATE api_tokens SET last_used = ? WHERE token_hash = ?",
                               (self.now(), token_hash))
            except sqlite3.OperationalError as error:  # a full disk must not lock token holders out
                if not disk_full(error):
                    raise
            return from_row(User, row)

        return await self._run(find)

    # invitations -----------------------------------------------------------------------------------
    async def add_invitation(self, invitation: Invitation) -> None:
        await self._write(insert_sql("invitations", names(Invitation)), to_row(invitation))

    async def list_invitations(self) -> list[Invitation]:
        def select() -> list[Invitation]:
            return [from_row(Invitation, row) for row in self.db.execute(
                "SELECT * FROM invitations ORDER BY created DESC")]

        return await self._run(select)

    async def get_invitation(self, code_hash: str) -> Invitation | None:
        def select() -> Invitation | None:
            row = self.db.execute("SELECT * FROM invitations WHERE code_hash = ?", (code_hash,)).fetchone()
            return None if row is None else from_row(Invitation, row)

        return await self._run(select)

    async def expire_invitation(self, invitation_id: str) -> bool:
        stamp = self.now()
        return await self._write("UPDATE invitations SET expires = ? WHERE id = ? AND used_by IS NULL "
                                 "AND expires > ?", (stamp, invitation_id, stamp)) == 1

    async def use_invitation(self, code_hash: str, username: str) -> bool:
        stamp = self.now()
        return await self._write(
            "UPDATE invitations SET used_by = ?, used_at = ? WHERE code_hash = ? AND used_by IS NULL "
            "AND expires > ?", (username, stamp, code_hash, stamp)) == 1

    # login throttling ------------------------------------------------------------------------------
    async def add_login_failure(self, keys: Sequence[str], at: float, forget_before: float) -> None:
        def write() -> None:
            with transaction(self.db) as db:
                db.execute("DELETE FROM login_failures WHERE at < ?", (forget_before,))
                db.executemany("INSERT INTO login_failures (key, at) VALUES (?, ?)",
                               [(key, at) for key in dict.fromkeys(keys)])

        await self._run(write)

    async def login_failures(self, keys: Sequence[str], since: float) -> dict[str, LoginFailures]:
        if not keys:
            return {}

        def select() -> dict[str, LoginFailures]:
            marks = ", ".join("?" * len(keys))
            rows = self.db.execute(
                f"SELECT key, count(*), max(at) FROM login_failures WHERE key IN ({marks}) AND at >= ? "
                "GROUP BY key", [*keys, since]).fetchall()
            return {row[0]: LoginFailures(int(row[1]), float(row[2])) for row in rows}

        return await self._run(select)

    async def clear_login_failures(self, keys: Sequence[str] = (), *, prefix: str = "") -> None:
        def write() -> None:
            with transaction(self.db) as db:
                db.executemany("DELETE FROM login_failures WHERE key = ?", [(key,) for key in keys])
                if prefix:
                    db.execute("DELETE FROM login_failures WHERE substr(key, 1, ?) = ?",
                               (len(prefix), prefix))

        await self._run(write)
