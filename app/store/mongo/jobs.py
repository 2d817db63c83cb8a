"""The MongoDB catalog's part of the job queue (the queue itself is written once: app/store/queue.py)."""

from __future__ import annotations

from collections.abc import Sequence

from app.store.mongo.connection import CHUNK, MongoBase
from app.store.records import JobState


class MongoJobs(MongoBase):
    async def job_states(self, job_ids: Sequence[str]) -> dict[str, tuple[JobState, bool]]:
        listed = list(job_ids)
        out: dict[str, tuple[JobState, bool]] = {}
        for start in range(0, len(listed), CHUNK):
            chunk = listed[start:start + CHUNK]
            found = self.jobs.find({"_id": {"$in": chunk}}, {"state": 1, "image_ids": 1})
            out.update({doc["_id"]: (doc["state"], bool(doc.get("image_ids"))) async for doc in found})
        return out
