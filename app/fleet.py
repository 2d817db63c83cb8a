"""The fleet: every ImageX process (`serve`, `worker`, `watch`, `ingest`) registers in the store when it
starts and beats every `IMAGEX_HEARTBEAT` seconds with what it is doing (its pool, the jobs it runs, the
jobs it finished and failed since start), so the administrator's monitor shows all of them, wherever they
run. A clean stop removes the entry. A process killed outright stays listed and is shown lost once it has
been silent for longer than its lease (`IMAGEX_JOB_LEASE`, the lease of its jobs too): by then the leases
of the jobs it was running have run out as well, and the next runner to claim takes them again. Entries
lost for a day are forgotten.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections.abc import Callable
from importlib import metadata
from typing import TYPE_CHECKING, Any

from app.store.records import ProcessRecord

if TYPE_CHECKING:
    from app.archive import Archive

log = logging.getLogger(__name__)
ROLES = ("serve", "worker", "watch", "ingest")
# Seconds after which the entry of a lost process is removed (by the next process that starts).
FORGET_AFTER = 24 * 3600.0
Clock = Callable[[], float]


def version() -> str:
    """The installed ImageX version ("unknown" when it runs from a tree that was never installed)."""
    try:
        return metadata.version("imagex")
    except metadata.PackageNotFoundError:
        return "unknown"


class Heartbeat:
    """One process's entry in the fleet: `beat()` writes it, `run()` beats until stopped and then removes
    it. `clock` stamps the beats (tests pass one instead of waiting)."""

    def __init__(self, archive: Archive, role: str, *, name: str | None = None,
                 clock: Clock = time.time) -> None:
        from app.ingest.jobs import worker_name

        if role not in ROLES:
            raise ValueError(f"unknown role {role!r}: one of {', '.join(ROLES)}")
        self.archive = archive
        self.role = role
        # the name it claims jobs under, so the monitor can tie the queue's running jobs to it
        self.name = name or (archive.runner.worker if archive.runner is not None else worker_name(role))
        self.clock = clock
        self.started = clock()
        self.version = version()
        self.beats = 0
        self.last_error = ""

    def record(self) -> ProcessRecord:
        """The process as it is now."""
        runner = self.archive.runner
        jobs = [] if runner is None else [{"id": job.id, "path": job.path} for job in runner.current.values()]
        return ProcessRecord(
            id=self.name, role=self.role, host=socket.gethostname(), pid=os.getpid(), version=self.version,
            started=self.started, last_seen=self.clock(), lease=self.archive.settings.job_lease,
            pool_size=self.archive.pool.size, jobs=jobs,
            done=0 if runner is None else runner.finished - runner.failed,
            failed=0 if runner is None else runner.failed)

    async def beat(self) -> None:
        """Write the entry now."""
        await self.archive.store.beat(self.record())
        self.beats += 1

    async def run(self, stop: asyncio.Event) -> None:
        """Beat every `IMAGEX_HEARTBEAT` seconds until `stop` is set or the task is cancelled, then remove
        the entry. A beat that fails (the store is away for a moment) is logged and tried again."""
        interval = self.archive.settings.heartbeat
        try:
            while not stop.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), interval)
                if stop.is_set():
                    break
                try:
                    await self.beat()
                    self.last_error = ""
                except Exception as error:
                    self.last_error = f"{type(error).__name__}: {error}"
                    log.warning("heartbeat: %s", self.last_error)
        finally:
            await self.leave()

    async def leave(self) -> None:
        """Remove the entry (a clean stop); a store that cannot be reached leaves it to be shown lost."""
        try:
            await self.archive.store.remove_process(self.name)
        except Exception as error:
            log.warning("heartbeat: could not remove this process from the fleet: %s", error)


async def join_fleet(archive: Archive, role: str, *, clock: Clock = time.time) -> Heartbeat:
    """Register this process in the store and keep beating until the archive closes (which removes the
    entry): what `imagex serve`, `worker`, `watch` and `ingest` call once their job runner (if any) is
    made. Also forgets entries lost for a day."""
    heartbeat = Heartbeat(archive, role, clock=clock)
    archive.heartbeat = heartbeat
    try:
        await archive.store.forget_processes(heartbeat.started - FORGET_AFTER)
        await heartbeat.beat()
    except Exception as error:  # the process still works without its entry; the next beat tries again
        heartbeat.last_error = f"{type(error).__name__}: {error}"
        log.warning("heartbeat: could not register this process: %s", heartbeat.last_error)
    archive.start_background("heartbeat", heartbeat.run)
    return heartbeat


def fleet_facts(processes: list[ProcessRecord], at: float, own: str = "") -> dict[str, Any]:
    """The fleet as the monitor and `/healthz` show it at time `at`: each process (`own` marks this one)
    and how many are alive and lost."""
    listed = []
    for process in processes:
        entry = process.public(at)
        entry["self"] = process.id == own
        listed.append(entry)
    lost = sum(entry["lost"] for entry in listed)
    return {"processes": listed, "alive": len(listed) - lost, "lost": lost}
