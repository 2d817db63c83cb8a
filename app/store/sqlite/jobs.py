"""The SQLite catalog's job queue and the fleet of processes that work it."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from app.store.records import JOB_STATES, JobRecord, JobState, NewJob, ProcessRecord, new_id
from app.store.rows import dumps, from_row, insert_sql, names, to_row
from app.store.sqlite.connection import SQLiteBase, transaction

# the order jobs are claimed in: harvested jobs whose image somebody is waiting for, (on a tiling turn)
# harvested jobs that have waited long enough, files not yet harvested, the pyramids of harvested ones,
# jobs whose runner's lease ran out
_WAITING = "SELECT id FROM jobs WHERE state = 'harvested' AND priority > 0 ORDER BY priority DESC LIMIT 1"
_WAITED = "SELECT id FROM jobs WHERE state = 'harvested' AND updated <= :waited ORDER BY updated, id LIMIT 1"
_NEXT = [
    "SELECT id FROM jobs WHERE state = 'queued' ORDER BY created, id LIMIT 1",
    "SELECT id FROM jobs WHERE state = 'harvested' ORDER BY priority DESC, created LIMIT 1",
    "SELECT id FROM jobs WHERE state = 'running' AND lease_until < :now ORDER BY lease_until LIMIT 1",
]


class SQLiteJobs(SQLiteBase):
    # jobs -------------------------------------------------------------------------------------------
    async def enqueue(self, jobs: Iterable[NewJob], *, retry_failed: bool = True) -> list[JobRecord]:
        return await self._run(self._enqueue_sync, list(jobs), retry_failed)

    def _enqueue_sync(self, jobs: list[NewJob], retry_failed: bool) -> list[JobRecord]:
        out: list[JobRecord] = []
        stamp = self.now()
        with transaction(self.db) as db:
            for order, job in enumerate(jobs):
                # a microsecond apart, so a batch is claimed in the order it was listed
                created = stamp + order * 1e-6
                db.execute(
                    "INSERT INTO jobs (id, key, path, owner, provenance, options, state, created, updated) "
                    "VALUES (?, ?, ?, ?, ?, ?, 'queued', ?, ?) ON CONFLICT (key) DO NOTHING",
                    (new_id(), job.key, job.path, job.owner, job.provenance, dumps(job.options), created,
                     created))
                if retry_failed:
                    db.execute("UPDATE jobs SET state = 'queued', error = '', worker = '', lease_until = 0, "
                               "updated = ? WHERE key = ? AND state = 'failed'", (stamp, job.key))
                row = db.execute("SELECT * FROM jobs WHERE key = ?", (job.key,)).fetchone()
                out.append(from_row(JobRecord, row))
        return out

    async def claim_job(self, worker: str, lease: float, *,
                        harvested_for: float | None = None) -> JobRecord | None:
        return await self._run(self._claim_sync, worker, lease, harvested_for)

    def _claim_sync(self, worker: str, lease: float, harvested_for: float | None) -> JobRecord | None:
        stamp = self.now()
        order = [_WAITING, *([_WAITED] if harvested_for is not None else []), *_NEXT]
        with transaction(self.db) as db:
            row = None
            for query in order:
                row = db.execute(query, {"now": stamp, "waited": stamp - (harvested_for or 0)}).fetchone()
                if row is not None:
                    break
            if row is None:
                return None
            # a harvested job claimed for its pyramids is the same attempt, in its second phase
            db.execute("UPDATE jobs SET state = 'running', worker = ?, lease_until = ?, priority = 0, "
                       "attempts = attempts + (state != 'harvested'), updated = ? WHERE id = ?",
                       (worker, stamp + lease, stamp, row["id"]))
            return from_row(JobRecord, db.execute("SELECT * FROM jobs WHERE id = ?", (row["id"],)).fetchone())

    async def claim_jobs(self, job_ids: Sequence[str], worker: str, lease: float, *,
                         harvested: bool = False) -> list[str]:
        def claim() -> list[str]:
            stamp = self.now()
            with transaction(self.db) as db:
                taken = {row[0] for row in db.execute(
                    f"UPDATE jobs SET state = 'running', worker = ?, lease_until = ?, priority = 0, "
                    f"attempts = attempts + ?, updated = ? WHERE state = ? "
                    f"AND id IN ({', '.join('?' * len(job_ids))}) RETURNING id",
                    (worker, stamp + lease, 0 if harvested else 1, stamp,
                     "harvested" if harvested else "queued", *job_ids))}
            return [job_id for job_id in dict.fromkeys(job_ids) if job_id in taken]

        return await self._run(claim) if job_ids else []

    async def prioritize_job(self, job_id: str) -> bool:
        return await self._write("UPDATE jobs SET priority = ? WHERE id = ? AND state = 'harvested'",
                                 (self.now(), job_id)) == 1

    async def renew_lease(self, job_id: str, worker: str, lease: float) -> bool:
        def renew() -> bool:
            with transaction(self.db) as db:
                cursor = db.execute("UPDATE jobs SET lease_until = ? WHERE id = ? AND worker = ? "
                                    "AND state = 'running'", (self.now() + lease, job_id, worker))
                return cursor.rowcount == 1

        return await self._run(renew)

    async def finish_job(self, job_id: str, worker: str, *, state: JobState, error: str = "",
                         note: str = "", image_ids: Sequence[str] = ()) -> bool:
        def finish() -> bool:
            with transaction(self.db) as db:
                return _finish(db, job_id, worker, state, error, note, image_ids, self.now())

        return await self._run(finish)

    async def finish_jobs(self, finished: Mapping[str, Sequence[str]], worker: str, *,
                          state: JobState) -> set[str]:
        def finish() -> set[str]:
            stamp = self.now()
            with transaction(self.db) as db:
                return {job_id for job_id, image_ids in finished.items()
                        if _finish(db, job_id, worker, state, "", "", image_ids, stamp)}

        return await self._run(finish) if finished else set()

    async def release_job(self, job_id: str, worker: str) -> bool:
        def release() -> bool:
            with transaction(self.db) as db:
                cursor = db.execute(
                    "UPDATE jobs SET state = 'queued', worker = '', lease_until = 0, updated = ? "
                    "WHERE id = ? AND worker = ? AND state = 'running'", (self.now(), job_id, worker))
                return cursor.rowcount == 1

        return await self._run(release)

    async def get_jobs(self, job_ids: Sequence[str]) -> list[JobRecord]:
        return await self._jobs_where_in("id", list(job_ids))

    async def job_states(self, job_ids: Sequence[str]) -> dict[str, tuple[JobState, bool]]:
        rows = await self._select_in("SELECT id, state, image_ids != '[]' AS catalogued FROM jobs "
                                     "WHERE id IN ({marks})", list(job_ids))
        return {row["id"]: (row["state"], bool(row["catalogued"])) for row in rows}

    async def _jobs_where_in(self, column: str, values: list[str]) -> list[JobRecord]:
        """Jobs whose `column` (id or key) is one of `values`."""
        rows = await self._select_in(f"SELECT * FROM jobs WHERE {column} IN ({{marks}})", values)
        return [from_row(JobRecord, row) for row in rows]

    async def list_jobs(self, state: JobState | None = None, *, offset: int = 0, limit: int = 50,
                        owner: str | None = None) -> list[JobRecord]:
        clauses: list[str] = ["1"]
        params: list[Any] = []
        if state:
            clauses.append("state = ?")
            params.append(state)
        if owner is not None:
            clauses.append("owner = ?")
            params.append(owner)
        where = " AND ".join(clauses)

        def select() -> list[JobRecord]:
            return [from_row(JobRecord, row) for row in self.db.execute(
                f"SELECT * FROM jobs WHERE {where} ORDER BY updated DESC, id LIMIT ? OFFSET ?",
                [*params, limit, offset])]

        return await self._run(select)

    async def job_counts(self, *, owner: str | None = None) -> dict[str, int]:
        where, params = ("owner = ?", [owner]) if owner is not None else ("1", [])

        def count() -> dict[str, int]:
            counts: dict[str, int] = {state: 0 for state in JOB_STATES}
            for row in self.db.execute(f"SELECT state, count(*) FROM jobs WHERE {where} GROUP BY state",
                                       params):
                counts[row[0]] = row[1]
            return counts

        return await self._run(count)

    async def finished_since(self, since: float, *, owner: str | None = None) -> tuple[int, float | None]:
        where, params = ("AND owner = ?", [owner]) if owner is not None else ("", [])

        def count() -> tuple[int, float | None]:
            row = self.db.execute("SELECT count(*), min(updated) FROM jobs WHERE state IN ('done', 'failed') "
                                  f"AND updated >= ? {where}", [since, *params]).fetchone()
            return int(row[0]), row[1]

        return await self._run(count)

    async def requeue_job(self, job_id: str) -> bool:
        return await self._write("UPDATE jobs SET state = 'queued', error = '', worker = '', "
                                 "lease_until = 0, updated = ? WHERE id = ? AND state = 'failed'",
                                 (self.now(), job_id)) == 1

    async def jobs_with_keys(self, keys: Sequence[str]) -> list[JobRecord]:
        return await self._jobs_where_in("key", list(dict.fromkeys(keys)))

    # the fleet -------------------------------------------------------------------------------------
    async def beat(self, process: ProcessRecord) -> None:
        await self._write(insert_sql("processes", names(ProcessRecord), verb="INSERT OR REPLACE"),
                          to_row(process))

    async def list_processes(self) -> list[ProcessRecord]:
        def select() -> list[ProcessRecord]:
            return [from_row(ProcessRecord, row) for row in self.db.execute(
                "SELECT * FROM processes ORDER BY role, started, id")]

        return await self._run(select)

    async def remove_process(self, process_id: str) -> bool:
        return await self._write("DELETE FROM processes WHERE id = ?", (process_id,)) == 1

    async def forget_processes(self, before: float) -> int:
        return await self._write("DELETE FROM processes WHERE last_seen < ?", (before,))

    # copying a whole catalog ----------------------------------------------------------------------
    async def scan_jobs(self, after: str, limit: int) -> list[JobRecord]:
        def select() -> list[JobRecord]:
            rows = self.db.execute("SELECT * FROM jobs WHERE id > ? ORDER BY id LIMIT ?", (after, limit))
            return [from_row(JobRecord, row) for row in rows]

        return await self._run(select)

    async def put_jobs(self, jobs: Sequence[JobRecord]) -> int:
        def write() -> int:
            with transaction(self.db) as db:
                before = db.total_changes
                db.executemany(insert_sql("jobs", names(JobRecord), verb="INSERT OR IGNORE"),
                               [to_row(job) for job in jobs])
                return db.total_changes - before

        return await self._run(write)


def _finish(db: sqlite3.Connection, job_id: str, worker: str, state: JobState, error: str, note: str,
            image_ids: Sequence[str], stamp: float) -> bool:
    """Record a job's outcome, if it is still this worker's (in a transaction the caller holds)."""
    return db.execute(
        "UPDATE jobs SET state = ?, error = ?, note = ?, image_ids = ?, lease_until = 0, updated = ? "
        "WHERE id = ? AND worker = ? AND state = 'running'",
        (state, error, note, dumps(list(image_ids)), stamp, job_id, worker)).rowcount == 1
