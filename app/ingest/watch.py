"""The folder watcher: a file that appears or changes in a watched folder is queued once it has stopped
changing (same size and modification time for `settle` seconds), so nothing is ingested half-written.

Each folder is followed by its own watchfiles watcher. A folder that disappears is reported and waited
for; when it comes back it is watched again and caught up with. At start, files that arrived while no
watcher ran are caught up with too (enqueue is idempotent by key, so known versions are not queued again):
a folder full of FITS files is catalogued from their headers first and its pyramids built a few files to a
pool call (app/ingest/catalogue.py), as `imagex ingest` does a batch.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import stat
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from watchfiles import Change, awatch

from app.exceptions import ImageXError
from app.formats import is_candidate
from app.ingest.catalogue import catalogue_first, tile_catalogued
from app.ingest.jobs import worker_name
from app.ingest.scan import IMAGE_SUFFIXES, is_hidden_or_partial, job_for, stays_inside, walk
from app.store.records import JobRecord, NewJob

if TYPE_CHECKING:
    from app.archive import Archive

log = logging.getLogger(__name__)
RECHECK = 1.0  # seconds between looks at a missing folder
TICK_MS = 500  # the longest a vanished folder goes unnoticed, and the delay of the first catch-up
DEBOUNCE_MS = 200
TASK_NAME = "folder watcher"

Version = tuple[int, int]  # size, mtime_ns


@dataclass
class WatchedFolder:
    """One folder named in the settings, and what the watcher knows of it now."""

    path: Path
    present: bool = False
    caught_up: bool = False  # the files that arrived before the watch began are queued or settling
    missing_since: float | None = None
    problem: str = ""

    def public(self) -> dict[str, Any]:
        return {"path": str(self.path), "present": self.present, "caught_up": self.caught_up,
                "missing_since": self.missing_since, "problem": self.problem}


def _version(path: Path) -> Version | str | None:
    """(size, mtime_ns) of a regular file, "folder" for a folder, None when it is gone (or is neither)."""
    try:
        info = path.stat()
    except OSError:
        return None
    if stat.S_ISDIR(info.st_mode):
        return "folder"
    if not stat.S_ISREG(info.st_mode):
        return None
    return info.st_size, info.st_mtime_ns


def _identity(folder: Path) -> tuple[int, int] | None:
    """Device and inode of a folder (a folder deleted and made again is a new one), None when missing."""
    try:
        info = folder.stat()
    except OSError:
        return None
    return (info.st_dev, info.st_ino) if stat.S_ISDIR(info.st_mode) else None


def _files_under(folder: Path) -> list[Path]:
    """Every visible file under a folder that arrived whole (moved in), without reading any of them."""
    found: list[Path] = []
    for root, dirs, files in os.walk(folder):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        found.extend(Path(root) / name for name in files if not is_hidden_or_partial(name))
    return found


def _looks_like_image(path: Path) -> bool:
    return path.name.lower().endswith(IMAGE_SUFFIXES) or is_candidate(path)


class FolderWatcher:
    """Watches folders and queues settled files as jobs with provenance `watch`. Run with `run(stop)`."""

    def __init__(self, archive: Archive, folders: Sequence[Path], *, settle: float,
                 owners: Mapping[Path, str] | None = None, visibility: str = "private",
                 follow_links: bool = False) -> None:
        self.archive = archive
        self.folders = [WatchedFolder(Path(folder).expanduser().resolve())
                        for folder in dict.fromkeys(folders)]
        self.settle = settle
        self.visibility = visibility
        self.follow_links = follow_links
        self.owners = {Path(folder).expanduser().resolve(): user for folder, user in (owners or {}).items()}
        self.running = False
        self.queued = 0
        self.last_error = ""
        self._owners_checked = False
        self._timers: dict[Path, asyncio.Task[None]] = {}
        self.worker = worker_name("watch")  # the claimant of the jobs it catalogues from their headers
        self._tiling: set[asyncio.Task[int]] = set()  # their pyramids, built by the batch (`_catch_up`)

    @classmethod
    def from_settings(cls, archive: Archive, folders: Sequence[Path] | None = None) -> FolderWatcher:
        """A watcher for `folders` (default IMAGEX_WATCH_DIRS) with the settle time, owners and
        visibility of the settings."""
        settings = archive.settings
        return cls(archive, list(folders) if folders else list(settings.watch_folders),
                   settle=settings.watch_settle, owners=settings.watch_owner_map,
                   visibility=settings.watch_visibility, follow_links=settings.follow_links)

    @property
    def waiting(self) -> int:
        """Files noticed and waiting to settle."""
        return len(self._timers)

    @property
    def building(self) -> int:
        """Caught-up batches whose pyramids the watcher is building (`_catch_up`)."""
        return len(self._tiling)

    async def check_owners(self) -> None:
        """Every owner must be an account (recorded in its stored spelling), and every owned folder must be
        a watched folder or inside one. Raises ImageXError naming the problem."""
        if self._owners_checked:
            return
        checked: dict[Path, str] = {}
        for folder, name in self.owners.items():
            if not any(folder.is_relative_to(watched.path) for watched in self.folders):
                raise ImageXError(f"IMAGEX_WATCH_OWNERS: {folder} is not a watched folder nor inside one "
                                  f"(watched: {', '.join(str(w.path) for w in self.folders)})")
            account = await self.archive.store.get_user_by_name(name)
            if account is None:
                raise ImageXError(f"IMAGEX_WATCH_OWNERS: {folder}={name}: there is no user {name!r}; add one "
                                  f"with `imagex user add {name}`")
            checked[folder] = account.username  # permissions compare names exactly
        self.owners = checked
        self._owners_checked = True

    def owner_of(self, path: Path) -> str:
        """The user of the deepest owned folder holding `path`; "" (the site) when none does."""
        best: Path | None = None
        for folder in self.owners:
            if path.is_relative_to(folder) and (best is None or len(folder.parts) > len(best.parts)):
                best = folder
        return self.owners[best] if best is not None else ""

    async def run(self, stop: asyncio.Event) -> None:
        """Watch every folder until `stop` is set. A folder's troubles are reported, never raised."""
        await self.check_owners()
        self.running = True
        log.info("watching %s (files are queued after %s s without change)",
                 ", ".join(str(folder.path) for folder in self.folders), self.settle)
        try:
            await asyncio.gather(*(self._watch(folder, stop) for folder in self.folders))
        finally:
            self.running = False
            timers = list(self._timers.values())
            for timer in timers:
                timer.cancel()
            # files still settling are caught up with at the next start
            await asyncio.gather(*timers, return_exceptions=True)
            self._timers.clear()
            # a catch-up's pyramids stop at the next chunk (`stop` is set); the queue builds the rest
            await asyncio.gather(*self._tiling, return_exceptions=True)

    @property
    def missing(self) -> list[WatchedFolder]:
        """The folders found missing (one not looked at yet, as at the start, is not)."""
        return [folder for folder in self.folders if folder.missing_since is not None]

    def facts(self) -> dict[str, Any]:
        """What the system monitor shows of the watcher."""
        missing = self.missing
        if not self.running:
            state = "stopped"
        elif missing:
            state = (f"watching {len(self.folders) - len(missing)} of {len(self.folders)} folders; "
                     f"missing: {', '.join(str(folder.path) for folder in missing)}")
        else:
            state = f"watching {len(self.folders)} folder{'' if len(self.folders) == 1 else 's'}"
        folders = [{**folder.public(), "owner": self.owner_of(folder.path)} for folder in self.folders]
        return {"present": True, "alive": self.running, "state": state, "settle": self.settle,
                "folders": folders,
                "waiting": self.waiting, "building": self.building, "queued": self.queued,
                "last_error": self.last_error}

    # one folder --------------------------------------------------------------------------------------

    async def _watch(self, folder: WatchedFolder, stop: asyncio.Event) -> None:
        while not stop.is_set():
            identity = await asyncio.to_thread(_identity, folder.path)
            if identity is None:
                self._missing(folder)
                await _pause(stop, RECHECK)
                continue
            if folder.missing_since is not None:
                log.info("watched folder %s is back; watching it again", folder.path)
            folder.present, folder.caught_up, folder.missing_since, folder.problem = True, False, None, ""
            try:
                await self._follow(folder, identity, stop)
            except Exception as error:  # watchfiles could not watch it (permissions, inotify limits, ...)
                if await asyncio.to_thread(_identity, folder.path) is None:
                    continue  # it went away while being set up: reported as missing next round
                folder.problem = f"cannot watch {folder.path}: {type(error).__name__}: {error}"
                self._report(folder.problem)
                await _pause(stop, RECHECK * 5)

    async def _follow(self, folder: WatchedFolder, identity: tuple[int, int], stop: asyncio.Event) -> None:
        """Watch one present folder until it disappears or `stop` is set."""
        began = time.time()
        changes = awatch(folder.path, watch_filter=None, stop_event=stop, debounce=DEBOUNCE_MS, step=50,
                         rust_timeout=TICK_MS, yield_on_timeout=True,
                         ignore_permission_denied=True)
        async with contextlib.aclosing(changes):
            async for batch in changes:
                if not folder.caught_up:
                    # the watch is in place now: whatever arrived before it is found by the walk
                    await self._catch_up(folder, began, stop)
                    folder.caught_up = True
                for change, name in batch:
                    self._notice(Path(name), folder, expand=change == Change.added)
                # a folder deleted and made again at once may get the same inode; its deletion tells
                deleted = (Change.deleted, str(folder.path)) in batch
                if deleted or await asyncio.to_thread(_identity, folder.path) != identity:
                    self._missing(folder)
                    return

    def _missing(self, folder: WatchedFolder) -> None:
        if folder.missing_since is None:
            folder.missing_since = time.time()
            folder.problem = f"the watched folder {folder.path} is missing; it is watched again when it " \
                             "comes back"
            self._report(folder.problem)
        folder.present = folder.caught_up = False

    def _report(self, problem: str) -> None:
        log.warning("folder watcher: %s", problem)
        self.last_error = problem

    async def _catch_up(self, folder: WatchedFolder, began: float, stop: asyncio.Event) -> None:
        """Queue the files that arrived while nobody watched. Only a file unchanged for `settle` seconds
        before the watch began is known to be complete (a later change raises an event); the others
        settle first. The FITS files of a folder full already are catalogued from their headers, and their
        pyramids then built a few files to a pool call, as `imagex ingest` builds a batch's, one pool call
        a process at a time (the pool's other turns stay with the pages and the job runner, which takes
        any of these jobs too)."""
        def look() -> tuple[list[Path], list[Path]]:
            older: list[Path] = []
            recent: list[Path] = []
            cutoff = began - self.settle
            for path in walk([folder.path], follow_links=self.follow_links):
                try:
                    (older if path.stat().st_mtime < cutoff else recent).append(path)
                except OSError:  # gone already
                    continue
            return older, recent

        older, recent = await asyncio.to_thread(look)
        # a failed version is not retried at every start; changing the file (or Retry) queues it again
        fresh = await self._queue(older, retry_failed=False)
        # a folder full already: its FITS files found by searches before any is read whole
        catalogued = await catalogue_first(self.archive, fresh, self.worker)
        if catalogued:
            tiling = asyncio.create_task(tile_catalogued(self.archive, catalogued, self.worker, stop,
                                                         per_process=1), name=f"pyramids of {folder.path}")
            self._tiling.add(tiling)
            tiling.add_done_callback(self._tiling.discard)
        for path in recent:
            self._notice(path, folder)

    # one file ----------------------------------------------------------------------------------------

    def _notice(self, path: Path, folder: WatchedFolder, *, expand: bool = False) -> None:
        """(Re)start the settle timer of `path`: any change starts the wait from the beginning."""
        if path == folder.path or not path.is_relative_to(folder.path):
            return
        *parents, name = path.relative_to(folder.path).parts
        if is_hidden_or_partial(name) or any(part.startswith(".") for part in parents):
            return  # a partial transfer or hidden file: its rename into a real name is a new file
        running = self._timers.pop(path, None)
        if running is not None:
            running.cancel()
        self._timers[path] = asyncio.create_task(self._settle(path, folder, expand), name=f"settle {path}")

    async def _settle(self, path: Path, folder: WatchedFolder, expand: bool) -> None:
        try:
            seen = await asyncio.to_thread(_version, path)
            if seen == "folder":
                if expand:  # a folder moved in whole: its files raise no events of their own
                    for inner in await asyncio.to_thread(_files_under, path):
                        self._notice(inner, folder)
                return
            while True:
                if seen is None or seen == "folder":
                    log.debug("%s went away before it settled; forgotten", path)
                    return
                await asyncio.sleep(self.settle)
                now = await asyncio.to_thread(_version, path)
                if now == seen:
                    break
                seen = now
            if not self.follow_links and not await asyncio.to_thread(stays_inside, path, folder.path):
                log.warning("%s is a link to a file outside the watched folder %s; skipped "
                            "(IMAGEX_FOLLOW_LINKS=true follows such links)", path, folder.path)
                return
            if not await asyncio.to_thread(_looks_like_image, path):
                log.debug("%s is not an image file; ignored", path)
                return
            while True:
                try:
                    await self._queue([path], retry_failed=True)
                    return
                except Exception as error:  # the catalog is busy or unreachable: keep the file and retry
                    self._report(f"queueing {path} failed ({type(error).__name__}: {error}); retrying")
                    await asyncio.sleep(RECHECK * 5)
        finally:
            if self._timers.get(path) is asyncio.current_task():
                del self._timers[path]

    async def _queue(self, paths: Iterable[Path], *, retry_failed: bool) -> list[JobRecord]:
        """Queue the files; the jobs queued now (not those queued or done before)."""
        def jobs() -> list[NewJob]:
            made = []
            for path in paths:
                real = path.resolve()  # the same key as a batch scan of the same file
                job = job_for(real, owner=self.owner_of(real), provenance="watch")
                job.options["visibility"] = self.visibility
                made.append(job)
            return made

        new_jobs = await asyncio.to_thread(jobs)
        if not new_jobs:
            return []
        started = time.time()
        queued = await self.archive.store.enqueue(new_jobs, retry_failed=retry_failed)
        fresh = list({job.id: job for job in queued if job.created >= started}.values())
        self.queued += len(fresh)
        for job in fresh:
            log.info("queued %s (owner %s)", job.path, job.owner or "the site")
        return fresh


async def _pause(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)
