"""Bounds on the disk cache of dynamic tiles (`<image tile folder>/display/<spec>/...`, see render.py).

Any viewer may ask for any display spec (an arbitrary manual interval, say), and every tile rendered for it
is kept: without bounds a guest fills the disk. Two bounds hold it:

- **Displays per image** (`IMAGEX_DISPLAY_SPECS`): before a new spec folder is made for an image that has
  that many already, its least recently used specs are removed (`admit`). Evicting, not refusing, keeps
  the cache useful for the displays people look at now, whoever asked for the others before.
- **Total size** (`IMAGEX_DISPLAY_CACHE_MB`): every `sweep_every` tiles a process writes, a background
  thread of that process measures the whole cache and removes the least recently used tiles until it is
  under 90 % of the limit (`sweep`); a request never waits for it. A spec left without tiles goes too.

"Recently used" is a tile's access time: serving a cached tile sets it (`used`, at most once a minute per
tile, so the hot path pays one `stat`), and rendering sets its modification time. The cache finds its
folders through a registry under the tiles root (`.display-cache/folders`: the `display` folder of each
image that has cached displays, appended when a spec folder is made), so a sweep reads only the display
caches, never the static pyramids, and needs nothing of how image folders are laid out.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import shutil
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from app.settings import Settings

log = logging.getLogger(__name__)
REGISTRY = ".display-cache"
FOLDERS = "folders"
SWEEP_EVERY = 200  # tiles written by one process between two sweeps
LOW_WATER = 0.9  # a sweep removes tiles until the cache is this fraction of its limit
TOUCH_AFTER = 60.0  # seconds: serving a tile records its use at most this often
TILE_SUFFIX = (".jpeg", ".png")  # dynamic tiles, and those drawn resampled into a mosaic (warped.py)
SPEC_LOCK = ".specs.lock"


@dataclass(frozen=True)
class Limits:
    """The bounds, passed to the pool process that renders (so: plain, picklable values). `root` is the
    tiles root, where the registry lives."""

    root: str
    max_bytes: int
    max_specs: int
    sweep_every: int = SWEEP_EVERY


def limits_of(settings: Settings) -> Limits:
    """The bounds the settings ask for."""
    return Limits(str(settings.tiles_dir), settings.display_cache_mb * 1024 * 1024, settings.display_specs)


@dataclass(frozen=True)
class Swept:
    """What one sweep found and did."""

    tiles: int
    bytes: int
    removed: int
    removed_bytes: int


@contextlib.contextmanager
def _locked(path: Path, *, wait: bool = True) -> Iterator[bool]:
    """An exclusive lock on `path` for the block; with `wait=False` the block gets False when another
    process holds it."""
    descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        yield True
    finally:
        os.close(descriptor)  # closing releases the lock


def _registry(limits: Limits) -> Path:
    folder = Path(limits.root) / REGISTRY
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def last_use(path: Path) -> float:
    """When a tile (or, for a folder, any tile in it) was last rendered or served; 0 when none is there."""
    if path.is_file():
        stat = path.stat()
        return max(stat.st_atime, stat.st_mtime)
    newest = 0.0
    for tile in _tiles(path):
        with contextlib.suppress(OSError):
            stat = tile.stat()
            newest = max(newest, stat.st_atime, stat.st_mtime)
    return newest


def _tiles(folder: Path) -> Iterator[Path]:
    for parent, _, names in os.walk(folder):
        for name in names:
            if name.endswith(TILE_SUFFIX):
                yield Path(parent) / name


def admit(display: Path, spec_text: str, limits: Limits) -> Path:
    """Make the folder of a spec in an image's `display` folder, first removing the image's least recently
    used specs when it has `max_specs` already; returns the spec folder. Call it in the folder of an image
    that exists (it makes `display` when missing)."""
    target = display / spec_text
    if target.is_dir():
        return target
    display.mkdir(exist_ok=True)
    with _locked(display / SPEC_LOCK):  # two first requests for new specs must not both evict
        if target.is_dir():
            return target
        specs = [entry for entry in display.iterdir() if entry.is_dir()]
        surplus = len(specs) - limits.max_specs + 1
        if surplus > 0:
            for old in sorted(specs, key=last_use)[:surplus]:
                shutil.rmtree(old, ignore_errors=True)
        target.mkdir()
    registry = _registry(limits)
    with _locked(registry / "lock"), (registry / FOLDERS).open("a", encoding="utf-8") as listing:
        listing.write(f"{display}\n")
    return target


def used(path: Path | int, stat: os.stat_result | None = None) -> None:
    """Note that a cached tile (a path or an open descriptor, with its stat when known) was served: its
    access time, unless that was noted less than a minute ago; a tile removed meanwhile is no matter."""
    with contextlib.suppress(OSError):
        stat = stat or os.stat(path)
        if time.time() - stat.st_atime > TOUCH_AFTER:
            os.utime(path, ns=(time.time_ns(), stat.st_mtime_ns))  # the ETag reads mtime: keep it


_written = 0
_guard = threading.Lock()
_sweeper = {"running": False, "again": False}


def wrote(limits: Limits) -> None:
    """Count a tile written by this process; every `sweep_every` tiles, sweep in a background thread (or,
    when this process is sweeping already, once more right after)."""
    global _written
    _written += 1
    if _written % limits.sweep_every:
        return
    with _guard:
        if _sweeper["running"]:
            _sweeper["again"] = True
            return
        _sweeper["running"] = True

    def run() -> None:
        while True:
            try:
                sweep(limits)
            except Exception:  # a sweep must never take a render down with it
                log.exception("display cache: the sweep failed")
            with _guard:
                if not _sweeper["again"]:
                    _sweeper["running"] = False
                    return
                _sweeper["again"] = False

    threading.Thread(target=run, name="display-cache-sweep", daemon=True).start()


def sweep(limits: Limits) -> Swept | None:
    """Measure the display caches and remove the least recently used tiles until they hold at most
    `LOW_WATER` of `max_bytes` (nothing when under the limit); spec folders left without tiles are removed
    and the registry is rewritten without folders that are gone. None when another process is sweeping."""
    registry = _registry(limits)
    with _locked(registry / "sweep.lock", wait=False) as mine:
        if not mine:
            return None
        listing = registry / FOLDERS
        lines = _lines(listing)
        present = [Path(line) for line in dict.fromkeys(lines) if line and Path(line).is_dir()]
        tiles: list[tuple[float, int, Path]] = []
        for display in present:
            for tile in _tiles(display):
                with contextlib.suppress(OSError):
                    stat = tile.stat()
                    tiles.append((max(stat.st_atime, stat.st_mtime), stat.st_size, tile))
        total = sum(size for _, size, _ in tiles)
        removed = removed_bytes = 0
        if total > limits.max_bytes:
            goal = total - int(limits.max_bytes * LOW_WATER)
            touched: set[Path] = set()
            for _, size, tile in sorted(tiles, key=lambda entry: entry[0]):
                if removed_bytes >= goal:
                    break
                with contextlib.suppress(FileNotFoundError):
                    tile.unlink()
                    removed += 1
                    removed_bytes += size
                    touched.add(tile.parent)
            _prune(touched)
        with _locked(registry / "lock"):
            # appended meanwhile: kept; gone: dropped
            appended = _lines(listing)[len(lines):]  # only appends happen while a sweep holds its lock
            keep = dict.fromkeys([str(folder) for folder in present if folder.is_dir()] + appended)
            temporary = listing.with_name(f".{FOLDERS}.{os.getpid()}")
            temporary.write_text("".join(f"{line}\n" for line in keep if line), encoding="utf-8")
            os.replace(temporary, listing)
    if removed:
        log.info("display cache: removed %d least recently used tiles (%d bytes) to stay under %d MB",
                 removed, removed_bytes, limits.max_bytes // (1024 * 1024))
    return Swept(len(tiles), total, removed, removed_bytes)


def _lines(listing: Path) -> list[str]:
    try:
        return listing.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return []


def _prune(levels: set[Path]) -> None:
    """Remove level folders left empty, and spec folders left without tiles (`<spec>/image_files/<level>`)."""
    for level in levels:
        with contextlib.suppress(OSError):
            level.rmdir()  # only when empty
    for spec in {level.parent.parent for level in levels}:
        if spec.is_dir() and next(_tiles(spec), None) is None:
            shutil.rmtree(spec, ignore_errors=True)
