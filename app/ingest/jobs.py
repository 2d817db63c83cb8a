"""Claiming and running jobs from the store with a lease, so any number of processes share one queue."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import shutil
import socket
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from app.ingest.outcome import PUBLISHING, Outcome
from app.ingest.pipeline import run_job
from app.store.records import JobRecord, JobState, new_id

if TYPE_CHECKING:
    from app.archive import Archive

log = logging.getLogger(__name__)
IDLE_POLL = 1.0
# `wait_for`'s polls: a tenth of a millisecond a job still unfinished (10 s for 100,000, whose reading takes
# about a second); a wait timed on the reading itself waited seconds for a read held up behind busy jobs
POLL_PER_JOB = 1e-4
# a runner's every TILING_TURN-th claim takes, before any queued file, a harvested job that has waited
# TILING_PATIENCE seconds for its pyramids: a watcher fed without pause cannot keep every pyramid waiting,
# and a batch harvested within that time is still searchable whole before any pyramid is built
TILING_TURN = 8
TILING_PATIENCE = 60.0
FINISHED = ("done", "failed")


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
        self.current: dict[str, JobRecord] = {}  # the jobs in progress, by id
        self.finished = 0  # done or failed
        self.failed = 0
        self.claims = 0

    async def run(self, stop: asyncio.Event) -> None:
        """Claim and run jobs until `stop` is set. An empty queue is polled every second for other
        processes' jobs; a job queued (or given back) through this process's store is taken at once."""
        await asyncio.gather(*(self._loop(stop) for _ in range(self.concurrency)))

    async def _loop(self, stop: asyncio.Event) -> None:
        store = self.archive.store
        while not stop.is_set():
            seen = store.queue_version()
            try:
                ran = await self.run_one()
            except Exception as error:  # the store is unreachable, say; keep serving and retry
                self.last_error = f"{type(error).__name__}: {error}"
                log.exception("job runner: claiming a job failed")
                ran = False
            if not ran:
                waits = [asyncio.ensure_future(stop.wait()),
                         asyncio.ensure_future(store.queue_changed(seen, IDLE_POLL))]
                try:
                    await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    for wait in waits:
                        wait.cancel()

    async def run_one(self) -> bool:
        """Claim one job and run it; False when the queue had nothing to take."""
        lease = self.archive.settings.job_lease
        self.claims += 1
        turn = TILING_PATIENCE if self.claims % TILING_TURN == 0 else None
        job = await self.archive.store.claim_job(self.worker, lease, harvested_for=turn)
        if job is None:
            return False
        self.active += 1
        self.current[job.id] = job
        renewer = asyncio.create_task(self._renew(job.id, lease))
        try:
            # an earlier attempt whose runner died (SIGKILL, power cut) may have left a half-written work
            # folder: we hold the lease now, so it is nobody's
            await clear_attempts(self.archive, [job.id])
            outcome = await run_job(self.archive, job)
        except asyncio.CancelledError:
            # stopping (Ctrl-C, SIGTERM): hand the job back so the next runner starts it at once
            await asyncio.shield(self.archive.store.release_job(job.id, self.worker))
            raise
        finally:
            renewer.cancel()
            await asyncio.gather(renewer, return_exceptions=True)  # a cancellation of ours is not swallowed
            self.active -= 1
            self.current.pop(job.id, None)
        if outcome.state != "harvested":
            self.finished += 1
        if outcome.state == "failed":
            self.failed += 1
        state: JobState = "done" if outcome.state == "done" else \
            "harvested" if outcome.state == "harvested" else "failed"
        recorded = await self.archive.store.finish_job(
            job.id, self.worker, state=state,
            error=outcome.error, note=outcome.note, image_ids=outcome.image_ids)
        if not recorded:
            log.warning("job %s was taken by another worker after our lease ran out", job.id)
        if self.on_finish is not None and outcome.state != "harvested":
            self.on_finish(job, outcome)
        return True

    async def drain(self, running: asyncio.Task[None], grace: float,
                    hurry: asyncio.Event | None = None) -> list[str]:
        """Stop gracefully once the stop event of `running` (the task of `run`) is set: no job is claimed
        any more; the jobs in progress get `grace` seconds (or until `hurry` is set) to finish, and those
        still running then are given back to the queue (`release_job`) for another runner to start afresh.
        Their pool processes are stopped, so that nothing goes on writing for a job given back, and their
        work folders are removed. Returns the ids of the jobs given back."""
        waiters: list[asyncio.Future[Any]] = [running]
        if hurry is not None:
            waiters.append(asyncio.ensure_future(hurry.wait()))
        try:
            await asyncio.wait(waiters, timeout=grace, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters[1:]:
                waiter.cancel()
        given_back = list(self.current)
        if not running.done():
            running.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await running  # re-raises a failure of the runner itself
        if given_back:
            log.info("gave %d job(s) back to the queue: %s", len(given_back), ", ".join(given_back))
            await asyncio.to_thread(self.archive.pool.terminate)
            await clear_attempts(self.archive, given_back)
        return given_back

    async def _renew(self, job_id: str, lease: float) -> None:
        while True:
            await asyncio.sleep(lease / 3)
            if not await self.archive.store.renew_lease(job_id, self.worker, lease):
                return


WORK = ".work"


def _published_ids(folders: Sequence[Path]) -> list[str]:
    """The image ids that these attempts' notes say they were publishing pyramids under."""
    ids: list[str] = []
    for folder in folders:
        try:
            noted = json.loads((folder / PUBLISHING).read_text())
        except (OSError, ValueError):
            continue
        ids.extend(str(image_id) for image_id in noted if isinstance(image_id, str))
    return ids


async def _remove_uncatalogued(archive: Archive, folders: Sequence[Path]) -> None:
    """An attempt killed between publishing its pyramids and cataloguing their images left tile folders
    that no catalog row names (and that its retry, with new ids, would never reuse): remove them."""
    for image_id in await asyncio.to_thread(_published_ids, folders):
        if await archive.store.get_image(image_id) is None:
            log.info("removing the tile folder of image %s: published by an interrupted attempt, never "
                     "catalogued", image_id)
            await archive.remove_tiles(image_id)


async def clear_attempts(archive: Archive, job_ids: Sequence[str]) -> int:
    """Remove what earlier attempts of these jobs left: their work folders, and the tile folders they
    published but did not catalogue. Only the runner holding the jobs' leases (or giving them back) may
    call this. Returns how many work folders there were."""
    folders = await asyncio.to_thread(_attempts, archive.settings.tiles_dir / WORK, job_ids)
    if folders:
        await _remove_uncatalogued(archive, folders)
        await asyncio.to_thread(remove_folders, folders)
    return len(folders)


def remove_folders(folders: Sequence[Path]) -> None:
    for folder in folders:
        shutil.rmtree(folder, ignore_errors=True)


def _attempts(work: Path, job_ids: Sequence[str]) -> list[Path]:
    """The work folders of these jobs' attempts (`<job id>-<attempt>`)."""
    prefixes = tuple(f"{job_id}-" for job_id in job_ids)
    try:
        with os.scandir(work) as entries:
            return [Path(entry.path) for entry in entries
                    if entry.name.startswith(prefixes) and entry.is_dir()]
    except FileNotFoundError:
        return []


async def remove_abandoned_work(archive: Archive) -> int:
    """Remove the work folders of jobs that nobody runs any more (finished, failed, back in the queue or
    gone): what runners killed mid-job left behind. Folders of running jobs are left to their runner (or
    to the next one to claim the job). Returns how many were removed."""
    work = archive.settings.tiles_dir / WORK
    if not work.is_dir():
        return 0
    # listed before the states are read: a folder exists only once its job was claimed, so a state read
    # afterwards is "running" for a live attempt
    folders = await asyncio.to_thread(lambda: [p for p in work.iterdir() if p.is_dir() and "-" in p.name])
    if not folders:
        return 0
    ids = list(dict.fromkeys(folder.name.split("-", 1)[0] for folder in folders))
    running = {job.id for job in await archive.store.get_jobs(ids) if job.state == "running"}
    abandoned = [folder for folder in folders if folder.name.split("-", 1)[0] not in running]
    await _remove_uncatalogued(archive, abandoned)
    await asyncio.to_thread(remove_folders, abandoned)
    return len(abandoned)


async def wait_for(archive: Archive, job_ids: Sequence[str], stop: asyncio.Event,
                   progress: Callable[[dict[str, tuple[JobState, bool]]], None],
                   poll: float = 0.5) -> list[JobRecord]:
    """Poll until every job in `job_ids` is done or failed (whoever ran it); report progress each poll
    (every job's state and whether it has catalogued images: `Store.job_states`), and return the jobs'
    records once all have finished. Each poll reads only the jobs still unfinished, and the next one
    waits longer the more there are (`POLL_PER_JOB`): a batch of thousands (harvested early, unfinished
    until their pyramids are built) does not keep the catalog or a core busy, and a small one ends as soon
    as its jobs do."""
    wanted = list(dict.fromkeys(job_ids))
    states: dict[str, tuple[JobState, bool]] = {}
    pending = wanted
    loop = asyncio.get_running_loop()
    while True:
        seen = archive.store.queue_version()
        states.update(await archive.store.job_states(pending))
        progress({job_id: states[job_id] for job_id in wanted if job_id in states})
        pending = [job_id for job_id in wanted if job_id in states and states[job_id][0] not in FINISHED]
        if not pending:
            stop.set()
            found = {job.id: job for job in await archive.store.get_jobs(wanted)}
            return [found[job_id] for job_id in wanted if job_id in found]
        # a job finished by this process's runners is seen at once, yet the reads (each of every job still
        # pending) come no oftener than `POLL_PER_JOB` a job apart
        spacing = POLL_PER_JOB * len(pending)
        started = loop.time()
        if await archive.store.queue_changed(seen, max(poll, spacing)):
            await asyncio.sleep(max(0.0, spacing - (loop.time() - started)))
