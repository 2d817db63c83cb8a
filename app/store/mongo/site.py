"""The MongoDB catalog's quota decision for an upload, under a lock shared by every process (the rest of
reservations: app/store/uploads.py)."""

from __future__ import annotations

import asyncio
import time

from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import DuplicateKeyError

from app.exceptions import StoreError
from app.store.mongo.connection import Doc, MongoBase
from app.store.mongo.documents import (
    _charged,
)
from app.store.records import QuotaCheck, UploadHolder, new_id

# how long one reservation may hold an owner's lock before another process may take it over (seconds)
_LOCK_LEASE = 30.0
_LOCK_WAIT = 30.0


class MongoSite(MongoBase):
    # upload reservations ---------------------------------------------------------------------------
    async def reserve_upload(self, reservation_id: str, owner: str, size: int, quota: int,
                             ttl: float, *, used: int | None = None,
                             holder: UploadHolder | None = None) -> QuotaCheck:
        holder = holder or UploadHolder()
        received = size if used is None else used
        lock = await self._lock(f"upload:{owner}")
        try:
            stamp = self.now()
            reservations = self._c("upload_reservations")
            await reservations.delete_many({"expires": {"$lt": stamp}})
            stored = await self._total(self.images, [
                {"$match": {"owner": owner}}, {"$group": {"_id": "$sha256", "size": {"$max": "$size"}}},
                *_charged(owner)], "$size")
            # a job queued a moment ago whose upload still holds its reservation counts once
            live = [doc["_id"] async for doc in reservations.find({"owner": owner}, {"_id": 1})]
            pending = await self._total(self.jobs, [
                {"$match": {"owner": owner, "state": {"$in": ["queued", "running"]},
                            "provenance": "upload", "options.reservation": {"$nin": live}}}],
                {"$max": [{"$ifNull": ["$options.size", 0]}, {"$ifNull": ["$options.charge", 0]}]})
            others: Doc = {"owner": owner, "_id": {"$ne": reservation_id}}
            mine = await reservations.find_one({"_id": reservation_id}, {"created": 1})
            created = stamp if mine is None else float(mine.get("created", 0.0))
            older = {**others, "$or": [{"created": {"$lt": created}}, {"created": {"$exists": False}},
                                       {"created": created, "_id": {"$lt": reservation_id}}]}
            check = QuotaCheck.decide(
                quota=quota, stored=stored, pending=pending,
                others_held=await self._total(reservations, [{"$match": others}], "$bytes"),
                older_used=await self._total(reservations, [{"$match": older}],
                                             {"$ifNull": ["$used", "$bytes"]}),
                size=size, used=received)
            if check.granted:
                await reservations.update_one(
                    {"_id": reservation_id},
                    {"$set": {"bytes": check.held, "used": min(check.held, received), "expires": stamp + ttl},
                     "$setOnInsert": {"owner": owner, "host": holder.host, "pid": holder.pid,
                                      "started": holder.started, "created": created}},
                    upsert=True)
            return check
        finally:
            await self._c("locks").delete_one({"_id": f"upload:{owner}", "holder": lock})

    async def _total(self, collection: AsyncCollection[Doc], stages: list[Doc], value: str | Doc) -> int:
        pipeline = [*stages, {"$group": {"_id": None, "total": {"$sum": value}}}]
        docs = await (await collection.aggregate(pipeline)).to_list()
        return int(docs[0]["total"]) if docs else 0

    async def _lock(self, name: str) -> str:
        """Take a short lease on `name` shared by every process on this database; returns the holder's
        token (give it back with a delete of `{_id: name, holder: token}`). A lease whose holder died
        runs out after `_LOCK_LEASE` seconds."""
        holder = new_id()
        deadline = time.monotonic() + _LOCK_WAIT
        while True:
            stamp = self.now()
            try:
                # matches only a lease that ran out; when one is held the upsert's insert meets the _id
                await self._c("locks").update_one(
                    {"_id": name, "until": {"$lt": stamp}},
                    {"$set": {"until": stamp + _LOCK_LEASE, "holder": holder}}, upsert=True)
                return holder
            except DuplicateKeyError:
                if time.monotonic() > deadline:
                    raise StoreError(f"the catalog lock {name!r} stayed busy for {_LOCK_WAIT:.0f} s"
                                     ) from None
                await asyncio.sleep(0.005)
