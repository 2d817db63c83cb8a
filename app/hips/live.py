"""The archive's HiPS surveys kept up to date: one survey per audience, so that a tile never mixes in pixels
its viewer may not see.

- `public`: images whose effective visibility is public (what a guest may see);
- `registered`: those and the images every logged-in user may see (visibility `registered`, and every
  user's images when the sharing policy is `all`);
- `user-<digest>`, one per user when the site setting `user_surveys` is on: that user's own images that
  are in neither (their private images). The sky page shows it over `registered`, so a user sees everything
  they may see without a copy of the shared images per user.
Images of disabled accounts are in no survey; re-enabling the account puts them back.

When an image is catalogued, deleted, or its visibility changes, `Surveys.refresh` queues an update of the
tiles its footprint touches in every survey it was or is in; updates run one at a time, in the process pool
(the survey's file lock also keeps other processes' updates apart), and an update takes every change queued
while the one before it ran (each image as it was last changed): a batch of files ingested at once updates
each survey a few times, not once per file. A survey that was never built is built from the whole catalog by
its first update. `settle()` waits for the queue to empty; the archive calls it before closing, so a command
that ingests files leaves the surveys up to date. A failed update is kept as the archive's background task
`hips survey updates` (the monitor, /healthz) until an update succeeds.

The queue lives in the process that made the change (it is not a job in the store): a process killed
between a change and its update leaves the survey behind until the next change nearby or `imagex hips
rebuild`.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
import shutil
from collections.abc import Coroutine, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from app.hips.projection import Member
from app.hips.survey import Identity, Survey, hips_root, locked
from app.permissions import effective_visibility
from app.site_policy import Site
from app.store.query import FieldIn, Query
from app.store.records import ImageRecord

if TYPE_CHECKING:
    from app.archive import Archive

log = logging.getLogger(__name__)
PUBLIC = "public"
REGISTERED = "registered"
SHARED = (PUBLIC, REGISTERED)
USER_PREFIX = "user-"
USER_SURVEY = re.compile(r"user-[0-9a-f]{16}")
TASK = "hips survey updates"  # the archive's background task that a failed update marks failed
_BATCH = 500
STALE = ".rebuild"  # in the surveys' folder: updates were cancelled at a shutdown, rebuild at the next start


def user_survey(username: str) -> str:
    """The name of `username`'s own survey: a digest, so that any username makes a safe folder and URL."""
    return USER_PREFIX + hashlib.sha256(username.encode()).hexdigest()[:16]


def is_survey_name(name: str) -> bool:
    return name in SHARED or USER_SURVEY.fullmatch(name) is not None


def identity(name: str) -> Identity:
    title = "your own images" if name.startswith(USER_PREFIX) else f"{name} images"
    return Identity(name=name, title=f"ImageX archive: {title}", did=f"ivo://imagex/hips/{name}")


def member(archive: Archive, image: ImageRecord) -> Member | None:
    """The image as a survey member, or None when it has no celestial footprint: its four corners, or its
    coverage (an all-sky map's corners lie off the projection; it has a coverage all the same). An image
    catalogued from its header alone is no member until its pixels are read (its job refreshes the
    survey then)."""
    if image.is_reading():
        return None
    sky = image.sky or {}
    scale = sky.get("pixel_scale_arcsec")
    if not isinstance(scale, int | float) or not (sky.get("corners") or sky.get("moc")):
        return None
    return Member(id=image.id, created=image.created, root=str(archive.tile_root(image.id)),
                  original=image.path, hdu=image.hdu, width=image.width, height=image.height,
                  scale_arcsec=float(scale), header=dict(image.header), display=dict(image.display))


def surveys_of(image: ImageRecord, site: Site, owner_disabled: bool = False) -> set[str]:
    """The surveys the image belongs to: those whose every viewer may see it."""
    if owner_disabled:
        return set()
    visibility = effective_visibility(image, site)
    found = set()
    if visibility == PUBLIC:
        found.add(PUBLIC)
    if visibility in SHARED or (site.sharing == "all" and image.owner):
        found.add(REGISTERED)
    elif image.owner and site.user_surveys:
        found.add(user_survey(image.owner))
    return found


def in_survey(name: str, image: ImageRecord, site: Site, owner_disabled: bool = False) -> bool:
    """May everyone who may see survey `name` see this image?"""
    return name in surveys_of(image, site, owner_disabled)


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


def _remove(folder: str) -> None:
    with locked(Path(folder)):
        shutil.rmtree(folder, ignore_errors=True)


class Surveys:
    """The archive's surveys and their update queue."""

    def __init__(self, archive: Archive) -> None:
        self.archive = archive
        self._lock = asyncio.Lock()
        self._pending: set[asyncio.Task[None]] = set()
        # changes not yet applied, in the order they were made: (images in or changed, images deleted)
        self._changes: list[tuple[list[ImageRecord], list[ImageRecord]]] = []
        self.last_error = ""

    @property
    def queued(self) -> int:
        """Updates queued or running in this process."""
        return len(self._pending)

    def folder(self, name: str) -> Path:
        return hips_root(self.archive.settings.data) / name

    def built(self, name: str) -> bool:
        return (self.folder(name) / "properties").is_file()

    async def _site(self) -> Site:
        return Site.from_stored(await self.archive.store.site_settings())

    async def _disabled(self) -> set[str]:
        return {user.username for user in await self.archive.store.list_users() if user.disabled}

    async def names(self) -> list[str]:
        """The surveys the archive keeps now: the shared ones, and one per enabled user when the site
        allows them."""
        found = list(SHARED)
        if (await self._site()).user_surveys:
            found += sorted(user_survey(user.username) for user in await self.archive.store.list_users()
                            if not user.disabled)
        return found

    async def members(self, name: str) -> list[Member]:
        """Every catalogued image of the survey's audience with a celestial position."""
        site = await self._site()
        disabled = await self._disabled()
        query: Query | None = None
        if name == PUBLIC:
            query = FieldIn("visibility", (PUBLIC,))
        elif name != REGISTERED:
            owner = next((user.username for user in await self.archive.store.list_users()
                          if user_survey(user.username) == name), None)
            if owner is None:
                return []
            query = FieldIn("owner", (owner,))
        found: list[Member] = []
        offset = 0
        while batch := await self.archive.store.find_images(query, offset=offset, limit=_BATCH):
            offset += len(batch)
            for image in batch:
                if in_survey(name, image, site, image.owner in disabled):
                    chosen = member(self.archive, image)
                    if chosen is not None:
                        found.append(chosen)
        return found

    async def rebuild(self, name: str = PUBLIC) -> int:
        """Build survey `name` from scratch from the catalog; returns its deepest order."""
        if not is_survey_name(name):
            raise ValueError(f"no survey {name!r}: the surveys are {', '.join(SHARED)} and "
                             f"{USER_PREFIX}<digest> (one per user)")
        async with self._lock:
            return await self._rebuild_from(name, await self.members(name))

    async def rebuild_all(self) -> dict[str, int]:
        """Build every survey from scratch (per-user surveys only when the site allows them; those of
        disabled users and, when the site does not allow them, all per-user surveys are removed); the
        deepest order of each, by name."""
        names = await self.names()
        orders = {}
        for name in names:
            members = await self.members(name)
            if name.startswith(USER_PREFIX) and not members:
                await self._drop(name)  # a user with no image of their own: no survey
                continue
            orders[name] = await self.rebuild(name)
        for stale in await asyncio.to_thread(self._on_disk):
            if stale not in names:
                await self._drop(stale)
        return orders

    def _on_disk(self) -> list[str]:
        root = hips_root(self.archive.settings.data)
        if not root.is_dir():
            return []
        return [path.name for path in root.iterdir() if path.is_dir() and is_survey_name(path.name)]

    async def _drop(self, name: str) -> None:
        async with self._lock:
            await asyncio.to_thread(_remove, str(self.folder(name)))

    async def _rebuild_from(self, name: str, members: list[Member]) -> int:
        settings = self.archive.settings
        return await self.archive.run_in_pool(_rebuild, str(self.folder(name)), name, settings.max_pixels,
                                              settings.hips_overlap, [m.to_dict() for m in members])

    def refresh(self, images: Iterable[ImageRecord] = (), removed: Iterable[ImageRecord] = ()) -> None:
        """Queue the update of every survey for these images (catalogued or changed: in or out of each
        survey by their visibility and their owner's account now) and these deleted images (unless
        IMAGEX_HIPS is off)."""
        if not self.archive.settings.hips:
            return
        self._changes.append((list(images), list(removed)))
        self._queue(self._refresh())

    def owner_changed(self, username: str) -> None:
        """Queue the update of every survey for the images `username` owns (their account was disabled or
        enabled again)."""
        if self.archive.settings.hips:
            self._queue(self._owner_changed(username))

    def rebuild_later(self) -> None:
        """Queue a rebuild of every survey: what each audience may see changed for many images at once (the
        site's sharing policy, per-user surveys switched on or off)."""
        if self.archive.settings.hips:
            self._queue(self._rebuild_all())

    def _queue(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work)
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    def _failed(self, error: BaseException, what: str) -> None:
        """Keep the failure where administrators look (the monitor, /healthz) until an update succeeds."""
        self.last_error = f"{type(error).__name__}: {error}"
        self.archive.task_failed(TASK, error)
        log.exception("%s failed", what)

    def _succeeded(self) -> None:
        self.last_error = ""
        state = self.archive.tasks.get(TASK)
        if state is not None:
            state.state, state.error = "running", ""

    async def _rebuild_all(self) -> None:
        try:
            await self.rebuild_all()
        except Exception as error:
            self._failed(error, "rebuilding the HiPS surveys")
        else:
            self._succeeded()

    async def _owner_changed(self, username: str) -> None:
        done = 0
        try:
            while batch := await self.archive.store.find_images(FieldIn("owner", (username,)), offset=done,
                                                                limit=_BATCH):
                done += len(batch)
                self._changes.append((batch, []))
                await self._refresh()
            if username in await self._disabled():
                await self._drop(user_survey(username))
        except Exception as error:
            self._failed(error, "updating the HiPS surveys")

    async def _refresh(self) -> None:
        """Apply every change queued so far (none when an update before this one took them)."""
        try:
            async with self._lock:
                latest: dict[str, tuple[ImageRecord, bool]] = {}
                for changed, deleted in self._changes:
                    latest.update({image.id: (image, False) for image in changed})
                    latest.update({image.id: (image, True) for image in deleted})
                self._changes.clear()
                if not latest:
                    return
                images = [image for image, gone in latest.values() if not gone]
                removed = [image for image, gone in latest.values() if gone]
                site = await self._site()
                disabled = await self._disabled() if any(image.owner for image in images) else set()
                now = {image.id: surveys_of(image, site, image.owner in disabled) for image in images}
                # every survey an image may have been in: the shared ones and its owner's
                names = list(SHARED) + sorted({user_survey(image.owner) for image in [*images, *removed]
                                               if image.owner})
                for name in names:
                    out = [image.id for image in [*removed, *images]
                           if image.sky and name not in now.get(image.id, ())]
                    await self._apply(name, [image for image in images if name in now[image.id]], out)
        except Exception as error:  # the survey stays as it was; the next change or a rebuild mends it
            self._failed(error, "updating the HiPS surveys")
        else:
            self._succeeded()

    async def _apply(self, name: str, images: list[ImageRecord], out: list[str]) -> None:
        """One survey's update: these images in (or changed), these ids out."""
        changed = [m for image in images if (m := member(self.archive, image)) is not None]
        if not changed and not out:
            return
        log.debug("HiPS survey %s: %d image(s) in or changed, %d out", name, len(changed), len(out))
        settings = self.archive.settings
        outcome = await self.archive.run_in_pool(
            _update, str(self.folder(name)), name, settings.max_pixels, settings.hips_overlap,
            [m.to_dict() for m in changed], out)
        if outcome == "missing" and changed:
            await self._rebuild_from(name, await self.members(name))

    async def ensure(self) -> None:
        """Build every survey that was never built (its folder is missing), or all of them after a shutdown
        that cancelled updates, that has members (unless IMAGEX_HIPS is off)."""
        if not self.archive.settings.hips:
            return
        stale = hips_root(self.archive.settings.data) / STALE
        rebuild_all = await asyncio.to_thread(stale.is_file)
        failed = False
        names = await self.names()
        for name in names:
            built = await asyncio.to_thread(self.built, name)
            if built and not rebuild_all:
                continue
            if not await self.members(name):
                if built:  # every member left while updates were cancelled: nothing may stay shown
                    await self._drop(name)
                continue
            try:
                await self.rebuild(name)
            except Exception as error:
                failed = True
                self._failed(error, f"building the HiPS survey {name}")
        for name in await asyncio.to_thread(self._on_disk):
            if name not in names:  # per-user surveys switched off, or their account disabled
                await self._drop(name)
        if rebuild_all and not failed:
            await asyncio.to_thread(stale.unlink, True)

    async def settle(self, timeout: float | None = None) -> bool:
        """Wait until every queued update is done, at most `timeout` seconds (None: however long). Updates
        still queued then are cancelled and the surveys marked for a rebuild at the next start (`ensure`):
        a stopping server must not outlast its grace time, and no change may be lost. True when done."""
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        try:
            while self._pending:
                left = None if deadline is None else deadline - loop.time()
                if left is not None and left <= 0:
                    break
                await asyncio.wait(list(self._pending), timeout=left)
        except asyncio.CancelledError:  # Ctrl-C while waiting: no change may be lost either
            await self._abandon()
            raise
        if not self._pending:
            return True
        await self._abandon()
        return False

    async def _abandon(self) -> None:
        """Cancel the updates still queued; the surveys are rebuilt at the next start."""
        await asyncio.to_thread(self._mark_stale)
        for task in list(self._pending):
            task.cancel()
        await asyncio.gather(*list(self._pending), return_exceptions=True)
        log.warning("stopped before the HiPS surveys were up to date: they are rebuilt at the next start")

    def _mark_stale(self) -> None:
        root = hips_root(self.archive.settings.data)
        root.mkdir(parents=True, exist_ok=True)
        (root / STALE).write_text("updates were cancelled at shutdown: rebuild at the next start\n")
