"""How every long-running command starts and stops, written once: `serve`, `watch`, `worker` and `ingest`
all open their archive, build its job runner and folder watcher, join the fleet and close through
`running()`, and install their SIGINT/SIGTERM handling through `Signals`."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from pathlib import Path

from app.archive import Archive

# Jobs each pool process is given at once, by the role of the process. A process that only runs jobs
# (`worker`, `ingest`) gives each pool process two: while one is in the pool, the other is checksummed,
# catalogued and published, so that the pool does not wait for the catalog. `serve` and `watch` keep one,
# leaving the pool's other turns to the pages and tiles they render on demand.
SURVEY_WAIT = 4.0  # seconds queued HiPS survey updates may hold a stopping server or worker
JOBS_PER_PROCESS = {"serve": 1, "watch": 1, "worker": 2, "ingest": 2}


@contextlib.asynccontextmanager
async def running(archive: Archive, role: str, *, jobs: bool = True, folders: Sequence[Path] | None = None,
                  background: bool = False,
                  prepare: Callable[[Archive], Awaitable[None]] | None = None) -> AsyncIterator[Archive]:
    """Open `archive` for a process of `role` and close it on the way out, whatever happens.

    Inside: `archive.runner` is its job runner (unless `jobs` is False), `archive.watcher` watches
    `folders` (when any are given), and the process is in the fleet. With
    `background`, runner and watcher run as the archive's background tasks until it closes; otherwise the
    caller runs them (`runner.run(stop)`, `watcher.run(stop)`). `prepare` runs after
    the archive opens and before anything starts."""
    from app.fleet import join_fleet
    from app.ingest.jobs import JobRunner

    await archive.startup()
    try:
        if prepare is not None:
            await prepare(archive)
        if folders:
            from app.ingest.watch import TASK_NAME, FolderWatcher

            archive.watcher = FolderWatcher.from_settings(archive, folders)
            if background:  # a problem with the owners then stops the watcher, not the server
                archive.start_background(TASK_NAME, archive.watcher.run)
            else:
                await archive.watcher.check_owners()
        if jobs:
            concurrency = archive.settings.pool_size * JOBS_PER_PROCESS[role]
            archive.runner = JobRunner(archive, concurrency=concurrency, role=role)
            if background:
                archive.start_background("job runner", archive.runner.run)
        await join_fleet(archive, role)
        yield archive
    finally:
        # a server or worker stopping must stay within its grace time (docker stop: 30 s); a command that
        # ingests files leaves the surveys up to date
        await archive.close(survey_wait=None if role == "ingest" else SURVEY_WAIT)


class Signals:
    """SIGINT and SIGTERM, handled on the running loop: the first sets `stop` (and calls `on_stop`), any
    later one sets `hurry` (and calls `on_hurry`)."""

    NUMBERS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self, *, on_stop: Callable[[], None] | None = None,
                 on_hurry: Callable[[], None] | None = None) -> None:
        self.stop = asyncio.Event()
        self.hurry = asyncio.Event()
        self._on_stop, self._on_hurry = on_stop, on_hurry

    def install(self) -> Signals:
        loop = asyncio.get_running_loop()
        for number in self.NUMBERS:
            loop.add_signal_handler(number, self.received)
        return self

    def received(self) -> None:
        if not self.stop.is_set():
            self.stop.set()
            if self._on_stop is not None:
                self._on_stop()
            return
        self.hurry.set()
        if self._on_hurry is not None:
            self._on_hurry()
