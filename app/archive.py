"""The Archive owns the store, the process pool, the settings and the background job runner."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from app import tokens
from app.passwords import Passwords
from app.settings import Settings
from app.store import Store, footprint, open_store
from app.tiles import pyramid
from app.tiles.pool import Pool

if TYPE_CHECKING:
    from app.fleet import Heartbeat
    from app.ingest.jobs import JobRunner
    from app.ingest.watch import FolderWatcher

T = TypeVar("T")
log = logging.getLogger(__name__)
# the store's exact cone test and footprint backfill, imported when a footprint first needs them (astropy
# and the WCS machinery cost a fifth of a second: a command need not wait for them at start)
footprint.coverage_from("app.sky.coverage")
STALE_WORK = 24 * 3600
# what the pool processes of the long-running commands import once, in multiprocessing's fork server, before
# each of them is forked from it (`Pool(preload=...)`): reading files, and for `serve` rendering tiles too
READING = ("app.ingest.tiling", "astropy.io.fits", "astropy.wcs")
SERVING = (*READING, "app.tiles.render")
_REVOKE_BATCH = 500


@dataclass
class TaskState:
    """A background task of the archive: running, stopped (at shutdown) or failed, with its error."""

    name: str
    state: str = "running"
    error: str = ""

    @property
    def message(self) -> str:
        """What administrators are shown of a failure: "task: Error: message"."""
        return f"{self.name}: {self.error}"


class Archive:
    """Everything long-lived. `startup()` opens it, `close()` (idempotent) releases it."""

    def __init__(self, settings: Settings, *, pool: Pool | None = None,
                 clock: Callable[[], float] = time.time, preload: tuple[str, ...] = (),
                 passwords: Passwords | None = None) -> None:
        """`pool` lets several archives (tests, benchmarks) share one set of worker processes; an
        archive closes only a pool it made, with `preload` (`Pool`). `clock` is what login throttling
        reads the time from (tests move it instead of sleeping); `passwords` hashes and checks account
        passwords (default: argon2id's recommended parameters)."""
        self.settings = settings
        self.clock = clock
        self.passwords = passwords or Passwords()
        self.store: Store = open_store(settings.store_url)
        self.pool = pool or Pool(settings.pool_size, preload=preload)
        self._own_pool = pool is None
        self.secret = b""
        self.started = 0.0
        self.tasks: dict[str, TaskState] = {}  # the background tasks, by name
        self.runner: JobRunner | None = None
        self.watcher: FolderWatcher | None = None
        self.heartbeat: Heartbeat | None = None  # this process's entry in the fleet (app/fleet.py)
        # HiPS: the surveys' update queue (app/hips/live.py)
        from app.hips.live import Surveys

        self.hips = Surveys(self)
        self._tasks: list[asyncio.Task[None]] = []
        self._stop = asyncio.Event()
        self._open = False

    async def startup(self) -> None:
        if self._open:
            return
        self.settings.data.mkdir(parents=True, exist_ok=True)
        self.settings.tiles_dir.mkdir(parents=True, exist_ok=True)
        self.secret = await asyncio.to_thread(tokens.load_secret, self.settings.data / "secret.key")
        await asyncio.to_thread(pyramid.migrate_layout, self.settings.tiles_dir)
        await self.store.open()
        await asyncio.to_thread(self._clean_stale_work)
        from app.ingest.spool import clean_spool, release_dead_reservations

        await asyncio.to_thread(clean_spool, self.settings.data)  # partial uploads of a crashed process
        await release_dead_reservations(self.store)  # and the quota they held
        self.started = time.time()
        self._open = True

    async def close(self, *, survey_wait: float | None = None) -> None:
        """`survey_wait`: how long queued HiPS survey updates may hold the close (None: until done); the
        ones still queued then are cancelled and the surveys rebuilt at the next start."""
        interrupted = False
        if self._open:  # HiPS: queued survey updates finish before the pool closes
            try:
                await self.hips.settle(survey_wait)
            except asyncio.CancelledError:  # Ctrl-C: the updates left are made at the next start
                interrupted = True
        # the rest is not cut short by a cancellation (a Ctrl-C while closing), which is passed on after it
        ending = asyncio.ensure_future(self._end_parts())
        try:
            await asyncio.shield(ending)
        except asyncio.CancelledError:
            interrupted = True
            await ending
        if interrupted:
            raise asyncio.CancelledError

    async def _end_parts(self) -> None:
        self._stop.set()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)  # their failures are logged (`guarded`)
        self._tasks.clear()
        if self._own_pool:  # work still running in it was for the tasks just cancelled: abandoned
            await asyncio.to_thread(self.pool.finish)
        await self.store.close()
        self._open = False

    def start_background(self, name: str, factory: Callable[[asyncio.Event], Any]) -> None:
        """Run `factory(stop_event)` until close(); a failure is logged, kept in `tasks` and shown in the
        job page, the monitor and /healthz."""
        state = self.tasks[name] = TaskState(name)

        async def guarded() -> None:
            try:
                await factory(self._stop)
                state.state = "stopped"
            except asyncio.CancelledError:
                state.state = "stopped"
                raise
            except Exception as error:
                log.exception("background task %s failed", name)
                self.task_failed(name, error)

        self._tasks.append(asyncio.create_task(guarded(), name=name))

    def task_failed(self, name: str, error: BaseException) -> None:
        """Record that the background task `name` stopped with `error`."""
        state = self.tasks.setdefault(name, TaskState(name))
        state.state, state.error = "failed", f"{type(error).__name__}: {error}"

    def failed(self, name: str) -> bool:
        task = self.tasks.get(name)
        return task is not None and task.state == "failed"

    @property
    def background_errors(self) -> list[str]:
        """What failed in the background, as shown to administrators: "task: Error: message"."""
        return [task.message for task in self.tasks.values() if task.state == "failed"]

    async def run_in_pool(self, fn: Callable[..., T], *args: Any) -> T:
        return await self.pool.run(fn, *args)

    def tile_root(self, image_id: str) -> Path:
        """The folder holding an image's tile generation folder (see app/tiles/pyramid.py)."""
        return pyramid.image_root(self.settings.tiles_dir, image_id)

    def tile_folder(self, image_id: str) -> Path:
        """The image's current tile folder (one listdir); a path that does not exist when it has none."""
        root = self.tile_root(image_id)
        return pyramid.current(root) or root / pyramid.NO_GEN

    def tile_token(self, image_id: str) -> str:
        """A signed tile token for the image's current tile generation (made when a page is rendered)."""
        gen = self.tile_folder(image_id).name
        return tokens.make(self.secret, image_id, gen, self.settings.tile_token_ttl)

    async def revoke_tiles(self, image_ids: Iterable[str]) -> None:
        """Every tile URL made so far for these images stops working at once (403 "reload the page"):
        each image's tile folder gets a new generation name. Pages rendered afterwards get new tokens."""
        roots = [self.tile_root(image_id) for image_id in image_ids]

        def revoke_all() -> None:
            for root in roots:
                pyramid.revoke(root)

        await asyncio.to_thread(revoke_all)

    async def revoke_owner_tiles(self, username: str) -> int:
        """Revoke the tile URLs of every image `username` owns (their account was disabled); how many."""
        from app.store.query import FieldIn

        done = 0
        while batch := await self.store.find_images(FieldIn("owner", (username,)), offset=done,
                                                    limit=_REVOKE_BATCH):
            await self.revoke_tiles(image.id for image in batch)
            done += len(batch)
        return done

    async def remove_tiles(self, image_id: str) -> None:
        """Delete an image's tile files; its tile URLs stop working before the files are gone."""
        await asyncio.to_thread(pyramid.remove, self.tile_root(image_id), self.settings.tiles_dir / ".work")

    def _clean_stale_work(self) -> None:
        """Work folders of crashed jobs; a folder younger than a day may belong to a live runner."""
        work = self.settings.tiles_dir / ".work"
        if not work.is_dir():
            return
        cutoff = time.time() - max(STALE_WORK, self.settings.job_lease * 2)
        for folder in work.iterdir():
            with contextlib.suppress(OSError):
                if folder.stat().st_mtime < cutoff:
                    shutil.rmtree(folder, ignore_errors=True)


def get_archive() -> Archive:
    """The Archive of the running app (for routes)."""
    from quart import current_app  # only in a request: commands and pool processes need no web framework

    archive: Archive = current_app.extensions["imagex"]
    return archive
