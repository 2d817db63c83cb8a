"""The MongoDB catalog's job queue and the fleet of processes that work it."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from pymongo import ReturnDocument, UpdateOne
from pymongo.errors import BulkWriteError, DuplicateKeyError

from app.exceptions import StoreError
from app.store.mongo.connection import CHUNK, Doc, MongoBase
from app.store.mongo.documents import (
    _first_error,
)
from app.store.records import JOB_STATES, JobRecord, JobState, NewJob, ProcessRecord, new_id
from app.store.rows import from_doc, to_doc


class MongoJobs(MongoBase):
    # jobs -------------------------------------------------------------------------------------------
    async def enqueue(self, jobs: Iterable[NewJob], *, retry_failed: bool = True) -> list[JobRecord]:
        jobs = list(jobs)
        if not jobs:
            return []
        stamp = self.now()
        operations: list[UpdateOne] = []
        for order, job in enumerate(jobs):
            # a microsecond apart, so a batch is claimed in the order it was listed
            created = stamp + order * 1e-6
            operations.append(UpdateOne({"key": job.key}, {"$setOnInsert": {
                "_id": new_id(), "path": job.path, "owner": job.owner, "provenance": job.provenance,
                "options": dict(job.options), "state": "queued", "worker": "", "lease_until": 0.0,
                "attempts": 0, "error": "", "note": "", "image_ids": [], "created": created,
                "updated": created, "priority": 0.0}}, upsert=True))
            if retry_failed:
                operations.append(UpdateOne({"key": job.key, "state": "failed"}, {"$set": {
                    "state": "queued", "error": "", "worker": "", "lease_until": 0.0, "updated": stamp}}))
        for attempt in range(5):
            try:
                await self.jobs.bulk_write(operations, ordered=True)
                break
            except BulkWriteError as error:
                # another process inserted one of these keys between our look and our insert: the
                # operations are idempotent, so run them again
                codes = {item.get("code") for item in error.details.get("writeErrors", [])}
                if codes != {11000} or attempt == 4:
                    raise StoreError(f"cannot queue the jobs: {_first_error(error)}") from None
        found = {job.key: job for job in await self.jobs_with_keys([job.key for job in jobs])}
        return [found[job.key] for job in jobs]

    async def claim_job(self, worker: str, lease: float, *,
                        harvested_for: float | None = None) -> JobRecord | None:
        stamp = self.now()
        claim = {"state": "running", "worker": worker, "lease_until": stamp + lease, "priority": 0.0,
                 "updated": stamp}
        # the order of app/store/sqlite/jobs.py: harvested jobs somebody waits for, (on a tiling turn)
        # harvested jobs that have waited long enough, files not yet harvested, the pyramids of harvested
        # ones, jobs whose runner's lease ran out
        waited: list[tuple[dict[str, Any], list[tuple[str, int]]]] = [] if harvested_for is None else [(
            {"state": "harvested", "updated": {"$lte": stamp - harvested_for}}, [("updated", 1), ("_id", 1)])]
        for match, order in (({"state": "harvested", "priority": {"$gt": 0}}, [("priority", -1)]),
                             *waited,
                             ({"state": "queued"}, [("created", 1), ("_id", 1)]),
                             ({"state": "harvested"}, [("priority", -1), ("created", 1)]),
                             ({"state": "running", "lease_until": {"$lt": stamp}}, [("lease_until", 1)])):
            # a harvested job claimed for its pyramids is the same attempt, in its second phase
            change = {"$set": claim} if match["state"] == "harvested" else {"$set": claim,
                                                                           "$inc": {"attempts": 1}}
            doc = await self.jobs.find_one_and_update(match, change, sort=order,
                                                      return_document=ReturnDocument.AFTER)
            if doc is not None:
                return from_doc(JobRecord, doc)
        return None

    async def claim_jobs(self, job_ids: Sequence[str], worker: str, lease: float, *,
                         harvested: bool = False) -> list[str]:
        if not job_ids:
            return []
        stamp = self.now()
        # the worker and its lease expiry, unique to this claim, tell the documents it took
        claim = {"state": "running", "worker": worker, "lease_until": stamp + lease, "priority": 0.0,
                 "updated": stamp}
        # a harvested job claimed for its pyramids is the same attempt, in its second phase
        await self.jobs.update_many(
            {"_id": {"$in": list(job_ids)}, "state": "harvested" if harvested else "queued"},
            {"$set": claim, "$inc": {"attempts": 0 if harvested else 1}})
        taken = {doc["_id"] async for doc in self.jobs.find(
            {"_id": {"$in": list(job_ids)}, "state": "running", "worker": worker, "updated": stamp},
            {"_id": 1})}
        return [job_id for job_id in dict.fromkeys(job_ids) if job_id in taken]

    async def prioritize_job(self, job_id: str) -> bool:
        result = await self.jobs.update_one({"_id": job_id, "state": "harvested"},
                                            {"$set": {"priority": self.now()}})
        return result.matched_count == 1

    async def renew_lease(self, job_id: str, worker: str, lease: float) -> bool:
        result = await self.jobs.update_one({"_id": job_id, "worker": worker, "state": "running"},
                                            {"$set": {"lease_until": self.now() + lease}})
        return result.matched_count == 1

    async def finish_job(self, job_id: str, worker: str, *, state: JobState, error: str = "",
                         note: str = "", image_ids: Sequence[str] = ()) -> bool:
        result = await self.jobs.update_one(
            {"_id": job_id, "worker": worker, "state": "running"},
            {"$set": {"state": state, "error": error, "note": note, "image_ids": list(image_ids),
                      "lease_until": 0.0, "updated": self.now()}})
        return result.matched_count == 1

    async def release_job(self, job_id: str, worker: str) -> bool:
        result = await self.jobs.update_one(
            {"_id": job_id, "worker": worker, "state": "running"},
            {"$set": {"state": "queued", "worker": "", "lease_until": 0.0, "updated": self.now()}})
        return result.matched_count == 1

    async def get_jobs(self, job_ids: Sequence[str]) -> list[JobRecord]:
        return await self._jobs_where_in("_id", list(job_ids))

    async def job_states(self, job_ids: Sequence[str]) -> dict[str, tuple[JobState, bool]]:
        listed = list(job_ids)
        out: dict[str, tuple[JobState, bool]] = {}
        for start in range(0, len(listed), CHUNK):
            chunk = listed[start:start + CHUNK]
            found = self.jobs.find({"_id": {"$in": chunk}}, {"state": 1, "image_ids": 1})
            out.update({doc["_id"]: (doc["state"], bool(doc.get("image_ids"))) async for doc in found})
        return out

    async def _jobs_where_in(self, field: str, values: list[str]) -> list[JobRecord]:
        out: list[JobRecord] = []
        for start in range(0, len(values), CHUNK):
            chunk = values[start:start + CHUNK]
            out.extend([from_doc(JobRecord, doc) async for doc in self.jobs.find({field: {"$in": chunk}})])
        return out

    async def list_jobs(self, state: JobState | None = None, *, offset: int = 0, limit: int = 50,
                        owner: str | None = None) -> list[JobRecord]:
        if limit <= 0:
            return []
        match: Doc = {}
        if state:
            match["state"] = state
        if owner is not None:
            match["owner"] = owner
        docs = await self.jobs.find(match).sort([("updated", -1), ("_id", 1)]).skip(max(0, offset)).limit(
            limit).to_list()
        return [from_doc(JobRecord, doc) for doc in docs]

    async def job_counts(self, *, owner: str | None = None) -> dict[str, int]:
        counts: dict[str, int] = {state: 0 for state in JOB_STATES}
        pipeline: list[Doc] = [{"$group": {"_id": "$state", "n": {"$sum": 1}}}]
        if owner is not None:
            pipeline.insert(0, {"$match": {"owner": owner}})
        async for doc in await self.jobs.aggregate(pipeline):
            counts[doc["_id"]] = int(doc["n"])
        return counts

    async def finished_since(self, since: float, *, owner: str | None = None) -> tuple[int, float | None]:
        match: Doc = {"state": {"$in": ["done", "failed"]}, "updated": {"$gte": since}}
        if owner is not None:
            match["owner"] = owner
        group: Doc = {"_id": None, "n": {"$sum": 1}, "first": {"$min": "$updated"}}
        async for doc in await self.jobs.aggregate([{"$match": match}, {"$group": group}]):
            return int(doc["n"]), float(doc["first"])
        return 0, None

    async def requeue_job(self, job_id: str) -> bool:
        result = await self.jobs.update_one(
            {"_id": job_id, "state": "failed"},
            {"$set": {"state": "queued", "error": "", "worker": "", "lease_until": 0.0,
                      "updated": self.now()}})
        return result.matched_count == 1

    async def jobs_with_keys(self, keys: Sequence[str]) -> list[JobRecord]:
        return await self._jobs_where_in("key", list(dict.fromkeys(keys)))

    # the fleet -------------------------------------------------------------------------------------
    async def beat(self, process: ProcessRecord) -> None:
        await self._c("processes").replace_one({"_id": process.id}, to_doc(process), upsert=True)

    async def list_processes(self) -> list[ProcessRecord]:
        return [from_doc(ProcessRecord, doc) async for doc in self._c("processes").find().sort(
            [("role", 1), ("started", 1), ("_id", 1)])]

    async def remove_process(self, process_id: str) -> bool:
        return (await self._c("processes").delete_one({"_id": process_id})).deleted_count == 1

    async def forget_processes(self, before: float) -> int:
        return (await self._c("processes").delete_many({"last_seen": {"$lt": before}})).deleted_count

    # copying a whole catalog ----------------------------------------------------------------------
    async def scan_jobs(self, after: str, limit: int) -> list[JobRecord]:
        docs = await self.jobs.find({"_id": {"$gt": after}}).sort("_id", 1).limit(limit).to_list()
        return [from_doc(JobRecord, doc) for doc in docs]

    async def put_jobs(self, jobs: Sequence[JobRecord]) -> int:
        """Write jobs exactly as recorded elsewhere, skipping ids or keys present; returns how many were
        written."""
        written = 0
        for job in jobs:
            try:
                await self.jobs.insert_one(to_doc(job))
                written += 1
            except DuplicateKeyError:
                pass
        return written
