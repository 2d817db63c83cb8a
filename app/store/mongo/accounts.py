"""The MongoDB catalog's accounts: users, sessions, API tokens, invitations and login throttling."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from pymongo.errors import DuplicateKeyError

from app.exceptions import Conflict
from app.store.mongo.connection import MongoBase, username_key
from app.store.records import ApiToken, Invitation, LoginFailures, User
from app.store.rows import from_doc, to_doc


class MongoAccounts(MongoBase):
    # users -----------------------------------------------------------------------------------------
    async def add_user(self, user: User) -> None:
        try:
            await self._c("users").insert_one({**to_doc(user), "username_key": username_key(user.username)})
        except DuplicateKeyError:
            raise Conflict(f"the username {user.username!r} is taken") from None

    async def get_user(self, user_id: str) -> User | None:
        doc = await self._c("users").find_one({"_id": user_id})
        return None if doc is None else from_doc(User, doc)

    async def get_user_by_name(self, username: str) -> User | None:
        doc = await self._c("users").find_one({"username_key": username_key(username)})
        return None if doc is None else from_doc(User, doc)

    async def list_users(self) -> list[User]:
        return [from_doc(User, doc) async for doc in self._c("users").find().sort("username_key", 1)]

    async def _set_user_fields(self, user_id: str, changes: dict[str, Any]) -> None:
        if "disabled" in changes:
            changes["disabled"] = bool(changes["disabled"])
        await self._c("users").update_one({"_id": user_id}, {"$set": changes})

    # sessions and tokens ---------------------------------------------------------------------------
    async def add_session(self, key_hash: str, user_id: str, expires: float) -> None:
        stamp = self.now()
        await self._c("sessions").delete_many({"expires": {"$lt": stamp}})
        try:
            await self._c("sessions").insert_one({"_id": key_hash, "user_id": user_id, "created": stamp,
                                                  "expires": expires})
        except DuplicateKeyError:
            raise Conflict("that session exists already") from None

    async def session_user(self, key_hash: str) -> User | None:
        session = await self._c("sessions").find_one({"_id": key_hash, "expires": {"$gt": self.now()}})
        return None if session is None else await self.get_user(session["user_id"])

    async def delete_session(self, key_hash: str) -> None:
        await self._c("sessions").delete_one({"_id": key_hash})

    async def delete_user_sessions(self, user_id: str) -> None:
        await self._c("sessions").delete_many({"user_id": user_id})

    async def add_token(self, token: ApiToken) -> None:
        try:
            await self._c("api_tokens").insert_one(to_doc(token))
        except DuplicateKeyError:
            raise Conflict("that token exists already") from None

    async def list_tokens(self, user_id: str) -> list[ApiToken]:
        found = self._c("api_tokens").find({"user_id": user_id}).sort([("created", 1), ("_id", 1)])
        return [from_doc(ApiToken, doc) async for doc in found]

    async def delete_token(self, user_id: str, token_id: str) -> bool:
        result = await self._c("api_tokens").delete_one({"_id": token_id, "user_id": user_id})
        return result.deleted_count == 1

    async def delete_user_tokens(self, user_id: str) -> int:
        result = await self._c("api_tokens").delete_many({"user_id": user_id})
        return int(result.deleted_count)

    async def token_user(self, token_hash: str) -> User | None:
        token = await self._c("api_tokens").find_one({"token_hash": token_hash})
        if token is None:
            return None
        user = await self.get_user(token["user_id"])
        if user is not None:
            await self._c("api_tokens").update_one({"_id": token["_id"]}, {"$set": {"last_used": self.now()}})
        return user

    # invitations -----------------------------------------------------------------------------------
    async def add_invitation(self, invitation: Invitation) -> None:
        try:
            await self._c("invitations").insert_one(to_doc(invitation))
        except DuplicateKeyError:
            raise Conflict("that invitation exists already") from None

    async def list_invitations(self) -> list[Invitation]:
        return [from_doc(Invitation, doc) async for doc in self._c("invitations").find().sort(
            [("created", -1), ("_id", 1)])]

    async def get_invitation(self, code_hash: str) -> Invitation | None:
        doc = await self._c("invitations").find_one({"code_hash": code_hash})
        return None if doc is None else from_doc(Invitation, doc)

    async def expire_invitation(self, invitation_id: str) -> bool:
        stamp = self.now()
        result = await self._c("invitations").update_one(
            {"_id": invitation_id, "used_by": None, "expires": {"$gt": stamp}}, {"$set": {"expires": stamp}})
        return result.matched_count == 1

    async def use_invitation(self, code_hash: str, username: str) -> bool:
        stamp = self.now()
        result = await self._c("invitations").update_one(
            {"code_hash": code_hash, "used_by": None, "expires": {"$gt": stamp}},
            {"$set": {"used_by": username, "used_at": stamp}})
        return result.matched_count == 1

    # login throttling ------------------------------------------------------------------------------
    async def add_login_failure(self, keys: Sequence[str], at: float, forget_before: float) -> None:
        failures = self._c("failed_logins")
        await failures.delete_many({"at": {"$lt": forget_before}})
        if keys:
            # one document per failure: concurrent failures each count without a read-modify-write
            await failures.insert_many([{"key": key, "at": at} for key in dict.fromkeys(keys)])

    async def login_failures(self, keys: Sequence[str], since: float) -> dict[str, LoginFailures]:
        if not keys:
            return {}
        groups = await self._c("failed_logins").aggregate([
            {"$match": {"key": {"$in": list(keys)}, "at": {"$gte": since}}},
            {"$group": {"_id": "$key", "count": {"$sum": 1}, "last": {"$max": "$at"}}}])
        return {doc["_id"]: LoginFailures(int(doc["count"]), float(doc["last"])) async for doc in groups}

    async def clear_login_failures(self, keys: Sequence[str] = (), *, prefix: str = "") -> None:
        conditions: list[dict[str, Any]] = [{"key": {"$in": list(keys)}}] if keys else []
        if prefix:
            conditions.append({"key": {"$regex": "^" + re.escape(prefix)}})
        if conditions:
            await self._c("failed_logins").delete_many({"$or": conditions})
