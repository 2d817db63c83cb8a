"""Claiming and running jobs from the store with a lease, so any number of processes share one queue."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from app.ingest.pipeline import Outcome, run_job
from app.store.base import JobRecord, new_id

if TYPE_CHECKING:
    from app.archive import Archive

log = logging.getLogger(__name__)
IDLE_POLL = 1.0


def worker_name(role: str) -> str:
    """A name unique to this process and run: host, pid, role, random suffix."""
    return f"{socket.gethostname()}:{os.getpid()}:{role}:{new_id()[:6]}"


class JobRunner:
    """Runs `concurrency` jobs at a time (one per pool process), each under a renewed lease."""

    def __init__(self, archive: Archive, *, concurrency: int, role: str = "serve",
                 on_finish: Callable[[JobRecord, Outcome], None] | None = None) -> None:
        self.archive = archive
        self.concurrency = concurrency
        self.worker = worker_name(role)
        self.on_finish = on_finish
        self.active = 0
        self.last_error = ""

    async def run(self, stop: asyncio.Event) -> None:
        """Claim and run jobs until `stop` is set; an empty queue is polled every second."""
        await asyncio.gather(*(self._loop(stop) for _ in range(self.concurrency)))

    async def _loop(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                ran = await self.run_one()
            except Exception as error:  # the store is unreachable, say; keep serving and retry
                self.last_error = f"{type(error).__name__}: {error}"
                log.exception("job runner: claiming a job failed")
                ran = False
            if not ran:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), IDLE_POLL)

    async def run_one(self) -> bool:
        """Claim one job and run it; False when the queue had nothing to take."""
        lease = self.archive.settings.job_lease
        job = await self.archive.store.claim_job(self.worker, lease)
        if job is None:
            return False
        self.active += 1
        renewer = asyncio.create_task(self._renew(job.id, lease))
        try:
            outcome = await run_job(self.archive, job)
        except asyncio.CancelledError:
            # stopping (Ctrl-C, SIGTERM): hand the job back so the next runner starts it at once
            await asyncio.shield(self.archive.store.release_job(job.id, self.worker))
            raise
        finally:
            renewer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await renewer
            self.active -= 1
        recorded = await self.archive.store.finish_job(
            job.id, self.worker, state="done" if outcome.state == "done" else "failed",
            error=outcome.error, note=outcome.note, image_ids=outcome.image_ids)
        if not recorded:
            log.warning("job %s was taken by another worker after our lease ran out", job.id)
        if self.on_finish is not None:
            self.on_finish(job, outcome)
        return True

    async def _renew(self, job_id: str, lease: float) -> None:
        while True:
            await asyncio.sleep(lease / 3)
            if not await self.archive.store.renew_lease(job_id, self.worker, lease):
                return


async def wait_for(archive: Archive, job_ids: Sequence[str], stop: asyncio.Event,
                   progress: Callable[[list[JobRecord]], None], poll: float = 0.5) -> list[JobRecord]:
    """Poll until every job in `job_ids` is done or failed (whoever ran it); report progress each poll.
    Each poll reads only the jobs still unfinished: a batch of thousands does not keep the catalog busy."""
    wanted = list(dict.fromkeys(job_ids))
    current: dict[str, JobRecord] = {}
    pending = wanted
    while True:
        for job in await archive.store.get_jobs(pending):
            current[job.id] = job
        jobs = [current[job_id] for job_id in wanted if job_id in current]
        progress(jobs)
        pending = [job.id for job in jobs if job.state not in ("done", "failed")]
        if not pending:
            stop.set()
            return jobs
        await asyncio.sleep(poll)
