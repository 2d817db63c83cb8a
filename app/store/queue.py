"""The job queue in the catalog, written once over the plain-table primitives (`app.store.tables`): every
change to a job is one atomic conditional change of its record, so processes sharing the catalog never take
the same job (the runner: app/ingest/jobs.py)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from app.store.records import JOB_STATES, JobRecord, JobState, NewJob, new_id
from app.store.tables import JOBS, Change, Tables, Where, above, at_least, at_most, below, chunks, one_of

# what a job given back to the queue, or queued again after failing, starts from
_QUEUED = {"state": "queued", "worker": "", "lease_until": 0.0}


class JobQueue(Tables):
    """The queue; besides, a signal within this process: runners and waiters here hear at once of a job
    queued, given back, asked for or finished through this store (other processes' changes are polled)."""

    _queue_changes = 0
    _queue_waiters: set[asyncio.Future[None]] | None = None

    def queue_version(self) -> int:
        """How many changes to the queue this store has made (what `queue_changed` waits beyond)."""
        return self._queue_changes

    async def queue_changed(self, since: int, timeout: float) -> bool:
        """Wait until this store has changed the queue after `queue_version()` was `since`, at most `timeout`
        seconds; whether it did."""
        if self._queue_changes != since:
            return True
        if self._queue_waiters is None:
            self._queue_waiters = set()
        waiter = asyncio.get_running_loop().create_future()
        self._queue_waiters.add(waiter)
        try:
            # not asyncio.wait_for: on Python 3.11 it swallows a cancellation (Ctrl-C) that comes as the
            # waiter is woken, and an interrupted `imagex ingest` would go on to the end
            done, _ = await asyncio.wait({waiter}, timeout=timeout)
            return bool(done)
        finally:
            self._queue_waiters.discard(waiter)

    def _queue_touched(self, changed: bool) -> None:
        if not changed:
            return
        self._queue_changes += 1
        for waiter in self._queue_waiters or ():
            if not waiter.done():
                waiter.set_result(None)

    async def enqueue(self, jobs: Iterable[NewJob], *, retry_failed: bool = True) -> list[JobRecord]:
        """Queue each job unless one with the same key exists; return the job for every key, new or old.
        A failed job for the same key is queued again when `retry_failed`."""
        listed = list(jobs)
        stamp = self.now()
        # a microsecond apart, so a batch is claimed in the order it was listed
        await self._insert(JOBS, [
            JobRecord(id=new_id(), key=job.key, path=job.path, owner=job.owner, provenance=job.provenance,
                      options=dict(job.options), state="queued", created=stamp + order * 1e-6,
                      updated=stamp + order * 1e-6) for order, job in enumerate(listed)], skip_taken=True)
        if retry_failed:
            await self._apply(JOBS, [Change({"key": one_of(keys), "state": "failed"},
                                            {**_QUEUED, "error": "", "updated": stamp})
                                     for keys in chunks([job.key for job in listed])])
        found = {job.key: job for job in await self.jobs_with_keys([job.key for job in listed])}
        self._queue_touched(bool(listed))
        return [found[job.key] for job in listed]

    async def claim_job(self, worker: str, lease: float, *,
                        harvested_for: float | None = None) -> JobRecord | None:
        """Atomically take the next job: a harvested one somebody waits for (`prioritize_job`, newest
        request first), else the oldest queued one, else the oldest harvested one, else a running one whose
        lease ran out. `harvested_for`: a harvested job that has waited at least this many seconds for its
        pyramids comes before the queued ones (the oldest first), so that a queue never empty does not keep
        every pyramid waiting (the runner's turns: app/ingest/jobs.py)."""
        stamp = self.now()
        waited: list[tuple[Where, list[str]]] = [] if harvested_for is None else [
            ({"state": "harvested", "updated": at_most(stamp - harvested_for)}, ["updated"])]
        for where, order in (({"state": "harvested", "priority": above(0)}, ["-priority"]),
                             *waited,
                             ({"state": "queued"}, ["created"]),
                             ({"state": "harvested"}, ["-priority", "created"]),
                             ({"state": "running", "lease_until": below(stamp)}, ["lease_until"])):
            # a harvested job claimed for its pyramids is the same attempt, in its second phase
            first = where["state"] != "harvested"
            job = await self._claim(JOBS, where, order, _claimed(worker, stamp, lease, first))
            if job is not None:
                return job
        return None

    async def claim_jobs(self, job_ids: Sequence[str], worker: str, lease: float, *,
                         harvested: bool = False) -> list[str]:
        """Atomically take each of these jobs that is still queued (a batch catalogued from its headers
        first: app/ingest/catalogue.py), or with `harvested` still harvested (their pyramids built in
        batches: the same attempt, in its second phase); the ids taken, in the order given."""
        if not job_ids:
            return []
        stamp = self.now()
        claim = _claimed(worker, stamp, lease, not harvested)
        await self._apply(JOBS, [Change({"id": one_of(ids), "state": "harvested" if harvested else "queued"},
                                        claim.values, claim.add) for ids in chunks(job_ids)])
        # the worker and the time, unique to this claim, tell the records it took
        taken = {job.id for job in await self._select_in(
            JOBS, "id", job_ids, {"state": "running", "worker": worker, "updated": stamp})}
        return [job_id for job_id in dict.fromkeys(job_ids) if job_id in taken]

    async def prioritize_job(self, job_id: str) -> bool:
        """Put a harvested job before every other (its image was opened while its pyramids were still to
        be built); False when it is not harvested (built already, running, or gone)."""
        return self._told(await self._update(JOBS, {"id": job_id, "state": "harvested"},
                                             {"priority": self.now()}))

    async def renew_lease(self, job_id: str, worker: str, lease: float) -> bool:
        """Extend the lease; False when the job is no longer this worker's."""
        return await self._update(JOBS, _running(job_id, worker), {"lease_until": self.now() + lease}) == 1

    async def finish_job(self, job_id: str, worker: str, *, state: JobState, error: str = "",
                         note: str = "", image_ids: Sequence[str] = ()) -> bool:
        """Record the outcome (done, failed, or harvested: claimed again later to build the pyramids);
        False when the job is no longer this worker's (it was taken again)."""
        return self._told(await self._update(JOBS, _running(job_id, worker),
                                             _finished(state, error, note, image_ids, self.now())))

    async def finish_jobs(self, finished: Mapping[str, Sequence[str]], worker: str, *,
                          state: JobState) -> set[str]:
        """`finish_job` of each of these jobs (job id -> its image ids) in `state`, at once; the ids finished
        (the others are no longer this worker's)."""
        stamp = self.now()
        matched = await self._apply(JOBS, [Change(_running(job_id, worker),
                                                  _finished(state, "", "", image_ids, stamp))
                                           for job_id, image_ids in finished.items()])
        self._queue_touched(any(matched))
        return {job_id for job_id, count in zip(finished, matched, strict=True) if count == 1}

    async def release_job(self, job_id: str, worker: str) -> bool:
        """Give a running job back to the queue (its claimer is stopping); False if it was not ours."""
        return self._told(await self._update(JOBS, _running(job_id, worker),
                                             {**_QUEUED, "updated": self.now()}))

    async def requeue_job(self, job_id: str) -> bool:
        """Queue a failed job again (the monitor's retry button); False unless it had failed."""
        return self._told(await self._update(JOBS, {"id": job_id, "state": "failed"},
                                             {**_QUEUED, "error": "", "updated": self.now()}))

    def _told(self, changed: int) -> bool:
        self._queue_touched(changed == 1)
        return changed == 1

    async def get_jobs(self, job_ids: Sequence[str]) -> list[JobRecord]:
        return await self._select_in(JOBS, "id", job_ids)

    async def jobs_with_keys(self, keys: Sequence[str]) -> list[JobRecord]:
        """The jobs of those keys that exist (what `enqueue` would find), queueing nothing."""
        return await self._select_in(JOBS, "key", keys)

    async def list_jobs(self, state: JobState | None = None, *, offset: int = 0, limit: int = 50,
                        owner: str | None = None) -> list[JobRecord]:
        """Most recently updated first; only `owner`'s jobs when given."""
        if limit <= 0:
            return []
        return await self._select(JOBS, _of(owner, {"state": state} if state else {}), order=["-updated"],
                                  offset=max(0, offset), limit=limit)

    async def job_counts(self, *, owner: str | None = None) -> dict[str, int]:
        """Jobs per state (only `owner`'s when given); every state present, zero when none."""
        return {**{state: 0 for state in JOB_STATES}, **await self._count(JOBS, _of(owner), by="state")}

    async def finished_since(self, since: float, *, owner: str | None = None) -> tuple[int, float | None]:
        """How many jobs finished (done or failed) at or after `since` (only `owner`'s when given), and
        when the first of them did (None when none did): what an ingest rate is measured on."""
        where = _of(owner, {"state": one_of(["done", "failed"]), "updated": at_least(since)})
        first = await self._select(JOBS, where, order=["updated"], limit=1)
        return sum((await self._count(JOBS, where, by="state")).values()), first[0].updated if first else None

    # copying a whole catalog -----------------------------------------------------------------------
    async def scan_jobs(self, after: str, limit: int) -> list[JobRecord]:
        return await self._select(JOBS, {"id": above(after)}, order=["id"], limit=limit)

    async def put_jobs(self, jobs: Sequence[JobRecord]) -> int:
        """Write jobs exactly as recorded elsewhere, skipping ids or keys present; how many were written."""
        return await self._insert(JOBS, jobs, skip_taken=True)


def _claimed(worker: str, stamp: float, lease: float, new_attempt: bool) -> Change:
    return Change({}, {"state": "running", "worker": worker, "lease_until": stamp + lease, "priority": 0.0,
                       "updated": stamp}, {"attempts": 1} if new_attempt else {})


def _running(job_id: str, worker: str) -> Where:
    return {"id": job_id, "worker": worker, "state": "running"}


def _finished(state: JobState, error: str, note: str, image_ids: Sequence[str],
              stamp: float) -> dict[str, Any]:
    return {"state": state, "error": error, "note": note, "image_ids": list(image_ids), "lease_until": 0.0,
            "updated": stamp}


def _of(owner: str | None, where: Where | None = None) -> Where:
    return {**(where or {}), **({} if owner is None else {"owner": owner})}
