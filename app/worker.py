"""`imagex worker`: a process that only runs ingest jobs, on any machine that sees the store and data folder.

It claims jobs from the shared store under a lease and runs the pipeline with its own process pool; there is
no web server. Any number of workers, `imagex serve` and `imagex ingest` processes share one queue. SIGTERM or
Ctrl-C stops it gracefully: it claims nothing more, lets the jobs in progress finish for `IMAGEX_STOP_GRACE`
seconds and gives the others back to the queue, then exits 0 (a second signal gives them back at once).
A worker killed outright loses nothing either: its leases run out and other runners redo its jobs from the
start, in fresh work folders; a pyramid is moved into place only when complete.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import time

from app.archive import READING, Archive
from app.ingest.jobs import remove_abandoned_work
from app.lifecycle import Signals, running
from app.settings import Settings

log = logging.getLogger(__name__)


# What reading, scaling, tiling and cataloguing an image import on first use (astropy's units, WCS,
# visualization, coordinates and HEALPix take seconds to import).
WARM_MODULES = ("astropy.io.fits", "astropy.units", "astropy.wcs", "astropy.wcs.utils",
                "astropy.visualization", "astropy.coordinates", "astropy_healpix", "app.formats",
                "app.ingest.pipeline", "app.store.footprint", "app.tiles.scaling")


def warm_up() -> bool:
    """Import WARM_MODULES, so that the first job does not pay for it: run in every pool process and, for
    the catalog's footprint cells, in the worker itself."""
    for name in WARM_MODULES:
        importlib.import_module(name)
    return True


class Worker:
    """One `imagex worker` process: an Archive without routes, its JobRunner and the signal handling."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.signals = Signals(on_stop=self._stopping, on_hurry=self._hurrying)
        self.stop, self.hurry = self.signals.stop, self.signals.hurry

    def _stopping(self) -> None:
        print(f"Stopping: no new jobs; the jobs in progress get {self.settings.stop_grace:g} s to finish "
              "(signal again to give them back at once).", flush=True)

    def _hurrying(self) -> None:
        print("Giving the jobs in progress back to the queue now.", flush=True)

    async def run(self) -> int:
        """Run jobs until stopped; returns the exit status (0 after a graceful stop)."""
        settings = self.settings
        self.signals.install()
        began = time.monotonic()
        async with running(Archive(settings, preload=READING), "worker", prepare=_prepare) as archive:
            runner = archive.runner
            assert runner is not None
            print(f"ImageX worker {runner.worker} ready in {time.monotonic() - began:.1f} s: "
                  f"{settings.pool_size} pool process(es), store {archive.store.location()}, data "
                  f"{settings.data}; SIGTERM or Ctrl-C stops", flush=True)
            jobs = asyncio.create_task(runner.run(self.stop), name="job runner")
            stopping = asyncio.create_task(self.stop.wait())
            await asyncio.wait([jobs, stopping], return_when=asyncio.FIRST_COMPLETED)
            stopping.cancel()
            self.stop.set()
            given_back = await runner.drain(jobs, settings.stop_grace, self.hurry)
            print(f"Stopped: {runner.finished} job(s) finished, {len(given_back)} given back to the queue.",
                  flush=True)
            return 0


async def _prepare(archive: Archive) -> None:
    """Before the first claim: work folders of runners that died are removed, and every module a job needs
    is imported here and in each pool process."""
    removed = await remove_abandoned_work(archive)
    if removed:
        log.info("removed %d work folder(s) left by runners that stopped mid-job", removed)
    await asyncio.gather(asyncio.to_thread(warm_up),
                         *(archive.run_in_pool(warm_up) for _ in range(archive.settings.pool_size)))
