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
import signal
import time

from app.archive import Archive
from app.fleet import join_fleet
from app.ingest.jobs import JobRunner, remove_abandoned_work
from app.settings import Settings

log = logging.getLogger(__name__)
# Jobs per pool process: while one is in the pool, the other is checksummed, catalogued and published.
JOBS_PER_PROCESS = 2


# What reading, scaling, tiling and cataloguing an image import on first use (astropy's units, WCS,
# visualization, coordinates and HEALPix take seconds to import).
WARM_MODULES = ("astropy.io.fits", "astropy.units", "astropy.wcs", "astropy.wcs.utils",
                "astropy.visualization", "astropy.coordinates", "astropy_healpix", "app.formats",
                "app.ingest.pipeline", "app.search.footprint", "app.tiles.scaling")


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
        self.stop = asyncio.Event()
        self.hurry = asyncio.Event()

    def _signalled(self) -> None:
        if self.stop.is_set():
            self.hurry.set()
            print("Giving the jobs in progress back to the queue now.", flush=True)
            return
        self.stop.set()
        print(f"Stopping: no new jobs; the jobs in progress get {self.settings.stop_grace:g} s to finish "
              "(signal again to give them back at once).", flush=True)

    async def run(self) -> int:
        """Run jobs until stopped; returns the exit status (0 after a graceful stop)."""
        settings = self.settings
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, self._signalled)
        archive = Archive(settings)
        await archive.startup()
        try:
            removed = await remove_abandoned_work(archive)
            if removed:
                log.info("removed %d work folder(s) left by runners that stopped mid-job", removed)
            started = time.monotonic()
            await asyncio.gather(asyncio.to_thread(warm_up),
                                 *(archive.run_in_pool(warm_up) for _ in range(settings.pool_size)))
            runner = archive.runner = JobRunner(archive, concurrency=settings.pool_size * JOBS_PER_PROCESS,
                                                role="worker")
            await join_fleet(archive, "worker")
            print(f"ImageX worker {runner.worker} ready in {time.monotonic() - started:.1f} s: "
                  f"{settings.pool_size} pool process(es), store {_store_label(settings)}, data "
                  f"{settings.data}; SIGTERM or Ctrl-C stops", flush=True)
            running = asyncio.create_task(runner.run(self.stop), name="job runner")
            stopping = asyncio.create_task(self.stop.wait())
            await asyncio.wait([running, stopping], return_when=asyncio.FIRST_COMPLETED)
            stopping.cancel()
            self.stop.set()
            given_back = await runner.drain(running, settings.stop_grace, self.hurry)
            print(f"Stopped: {runner.finished} job(s) finished, {len(given_back)} given back to the queue.",
                  flush=True)
            return 0
        finally:
            await archive.close()


def _store_label(settings: Settings) -> str:
    """The store URL without credentials (a MongoDB URL may carry a password)."""
    url = settings.store_url
    scheme, sep, rest = url.partition("://")
    if sep and "@" in rest.split("/", 1)[0]:
        return f"{scheme}://***@{rest.split('@', 1)[1]}"
    return url
