"""The SQLite catalog's part of the job queue (the queue itself is written once: app/store/queue.py)."""

from __future__ import annotations

from collections.abc import Sequence

from app.store.records import JobState
from app.store.sqlite.connection import SQLiteBase


class SQLiteJobs(SQLiteBase):
    async def job_states(self, job_ids: Sequence[str]) -> dict[str, tuple[JobState, bool]]:
        rows = await self._rows_in("SELECT id, state, image_ids != '[]' AS catalogued FROM jobs "
                                   "WHERE id IN ({marks})", list(job_ids))
        return {row["id"]: (row["state"], bool(row["catalogued"])) for row in rows}
