"""The archive's HiPS surveys kept up to date: one survey per audience, so that a tile never mixes in pixels
its viewer may not see. Only the public survey exists so far (images whose effective visibility is public).

When an image is catalogued, deleted, or its visibility changes, `Surveys.refresh` queues an update of the
tiles its footprint touches; updates run one at a time, in the process pool, in the order they were
queued (the survey's file lock also keeps other processes' updates apart). A survey that was never built
is built from the whole catalog by its first update. `settle()` waits for the queue to empty; the archive
calls it before closing, so a command that ingests files leaves the surveys up to date.

The queue lives in the process that made the change (it is not a job in the store): a process killed
between a change and its update leaves the survey behind until the next change nearby or `imagex hips
rebuild`.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
from collections.abc import Coroutine, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from app.hips.projection import Member
from app.hips.survey import Identity, Survey, hips_root, locked
from app.permissions import effective_visibility
from app.site_policy import Site
from app.store.base import FieldIn, ImageRecord

if TYPE_CHECKING:
    from app.archive import Archive

log = logging.getLogger(__name__)
PUBLIC = "public"
SURVEYS = (PUBLIC,)
_BATCH = 500
STALE = ".rebuild"  # in the surveys' folder: updates were cancelled at a shutdown, rebuild at the next start


def identity(name: str) -> Identity:
    return Identity(name=name, title=f"ImageX archive: {name} images", did=f"ivo://imagex/hips/{name}")


def member(archive: Archive, image: ImageRecord) -> Member | None:
    """The image as a survey member, or None when it has no celestial position."""
    sky = image.sky or {}
    scale = sky.get("pixel_scale_arcsec")
    if not isinstance(scale, int | float) or not sky.get("corners"):
        return None
    return Member(id=image.id, created=image.created, root=str(archive.tile_root(image.id)),
                  original=image.path, hdu=image.hdu, width=image.width, height=image.height,
                  scale_arcsec=float(scale), header=dict(image.header), display=dict(image.display))


def in_survey(name: str, image: ImageRecord, site: Site) -> bool:
    """May everyone who may see survey `name` see this image?"""
    return name == PUBLIC and effective_visibility(image, site) == PUBLIC


def _update(folder: str, name: str, max_pixels: int, overlap: str, changed: list[dict[str, object]],
            removed: list[str]) -> str:
    """In a pool process: apply one change to a survey; "missing" when it was never built."""
    survey = Survey(Path(folder), identity(name), max_pixels, overlap)
    with locked(survey.folder):
        if not survey.load():
            return "missing"
        return survey.update([Member.from_dict(item) for item in changed], removed)


def _rebuild(folder: str, name: str, max_pixels: int, overlap: str, members: list[dict[str, object]]) -> int:
    """In a pool process: build a survey from scratch; returns its deepest order."""
    survey = Survey(Path(folder), identity(name), max_pixels, overlap)
    with locked(survey.folder):
        survey.rebuild([Member.from_dict(item) for item in members])
    return survey.order


class Surveys:
    """The archive's surveys and their update queue."""

    def __init__(self, archive: Archive) -> None:
        self.archive = archive
        self._lock = asyncio.Lock()
        self._pending: set[asyncio.Task[None]] = set()
        self.last_error = ""

    def folder(self, name: str) -> Path:
        return hips_root(self.archive.settings.data) / name

    async def members(self, name: str) -> list[Member]:
        """Every catalogued image of the survey's audience with a celestial position."""
        site = Site.from_stored(await self.archive.store.site_settings())
        found: list[Member] = []
        offset = 0
        while batch := await self.archive.store.find_images(FieldIn("visibility", (PUBLIC,)), offset=offset,
                                                            limit=_BATCH):
            offset += len(batch)
            for image in batch:
                chosen = member(self.archive, image) if in_survey(name, image, site) else None
                if chosen is not None:
                    found.append(chosen)
        return found

    async def rebuild(self, name: str = PUBLIC) -> int:
        """Build survey `name` from scratch from the catalog; returns its deepest order."""
        if name not in SURVEYS:
            raise ValueError(f"no survey {name!r}: the surveys are {', '.join(SURVEYS)}")
        async with self._lock:
            return await self._rebuild_from(name, await self.members(name))

    async def _rebuild_from(self, name: str, members: list[Member]) -> int:
        settings = self.archive.settings
        return await self.archive.run_in_pool(_rebuild, str(self.folder(name)), name, settings.max_pixels,
                                              settings.hips_overlap, [m.to_dict() for m in members])

    def refresh(self, images: Iterable[ImageRecord] = (), removed: Iterable[str] = ()) -> None:
        """Queue the update of every survey for these images (catalogued or changed: in or out of each
        survey by their visibility now) and these deleted image ids (unless IMAGEX_HIPS is off)."""
        if not self.archive.settings.hips:
            return
        self._queue(self._refresh(list(images), list(removed)))

    def rebuild_later(self) -> None:
        """Queue a rebuild of every survey: what each audience may see changed for many images at once (the
        site's sharing policy)."""
        if self.archive.settings.hips:
            self._queue(self._rebuild_all())

    def _queue(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work)
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _rebuild_all(self) -> None:
        for name in SURVEYS:
            try:
                await self.rebuild(name)
            except Exception as error:
                self.last_error = f"{type(error).__name__}: {error}"
                log.exception("rebuilding the HiPS survey %s failed", name)

    async def _refresh(self, images: list[ImageRecord], removed: list[str]) -> None:
        try:
            site = Site.from_stored(await self.archive.store.site_settings())
            async with self._lock:
                for name in SURVEYS:
                    changed = [m for image in images if in_survey(name, image, site)
                               if (m := member(self.archive, image)) is not None]
                    # an image without a sky position was never in a survey: nothing to take out
                    out = [*removed, *(image.id for image in images
                                       if image.sky and not in_survey(name, image, site))]
                    if not changed and not out:
                        continue
                    settings = self.archive.settings
                    outcome = await self.archive.run_in_pool(
                        _update, str(self.folder(name)), name, settings.max_pixels, settings.hips_overlap,
                        [m.to_dict() for m in changed], out)
                    if outcome == "missing" and changed:
                        await self._rebuild_from(name, await self.members(name))
        except Exception as error:  # the survey stays as it was; the next change or a rebuild mends it
            self.last_error = f"{type(error).__name__}: {error}"
            log.exception("updating the HiPS surveys failed")

    async def ensure(self) -> None:
        """Build every survey that was never built (its folder is missing), or all of them after a shutdown
        that cancelled updates, that has members (unless IMAGEX_HIPS is off)."""
        if not self.archive.settings.hips:
            return
        stale = hips_root(self.archive.settings.data) / STALE
        rebuild_all = await asyncio.to_thread(stale.is_file)
        failed = False
        for name in SURVEYS:
            built = await asyncio.to_thread((self.folder(name) / "properties").is_file)
            if built and not rebuild_all:
                continue
            if not await self.members(name):
                if built:  # every member left while updates were cancelled: nothing may stay shown
                    await asyncio.to_thread(shutil.rmtree, self.folder(name), True)
                continue
            try:
                await self.rebuild(name)
            except Exception as error:
                failed = True
                self.last_error = f"{type(error).__name__}: {error}"
                log.exception("building the HiPS survey %s failed", name)
        if rebuild_all and not failed:
            await asyncio.to_thread(stale.unlink, True)

    async def settle(self, timeout: float | None = None) -> bool:
        """Wait until every queued update is done, at most `timeout` seconds (None: however long). Updates
        still queued then are cancelled and the surveys marked for a rebuild at the next start (`ensure`):
        a stopping server must not outlast its grace time, and no change may be lost. True when done."""
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        while self._pending:
            left = None if deadline is None else deadline - loop.time()
            if left is not None and left <= 0:
                break
            await asyncio.wait(list(self._pending), timeout=left)
        if not self._pending:
            return True
        await asyncio.to_thread(self._mark_stale)
        for task in list(self._pending):
            task.cancel()
        await asyncio.gather(*list(self._pending), return_exceptions=True)
        log.warning("stopped before the HiPS surveys were up to date: they are rebuilt at the next start")
        return False

    def _mark_stale(self) -> None:
        root = hips_root(self.archive.settings.data)
        root.mkdir(parents=True, exist_ok=True)
        (root / STALE).write_text("updates were cancelled at shutdown: rebuild at the next start\n")
