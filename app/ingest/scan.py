"""Batch mode: walk files and folders and turn every image file into a job."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Iterator
from pathlib import Path

from app.formats import is_candidate
from app.store.records import NewJob

# Names that say "image" even when the content turns out not to be one: such files are queued so that
# their job fails with a message instead of being skipped in silence.
IMAGE_SUFFIXES = (".fits", ".fit", ".fts", ".fz", ".fits.gz", ".fit.gz", ".tif", ".tiff", ".png", ".jpg",
                  ".jpeg", ".dm3", ".dm4", ".dcm", ".dicom")
PARTIAL_SUFFIXES = (".part", ".tmp", ".partial", ".crdownload")

log = logging.getLogger(__name__)


def is_hidden_or_partial(name: str) -> bool:
    return name.startswith(".") or name.lower().endswith(PARTIAL_SUFFIXES)


def stays_inside(path: Path, root: Path) -> bool:
    """Whether `path`, with every symbolic link on the way resolved, is still under the folder `root`
    (resolved). A link in a watched or walked folder to a file elsewhere must not publish that file."""
    try:
        return path.resolve().is_relative_to(root.resolve())
    except (OSError, RuntimeError):  # a link loop
        return False


def walk(paths: Iterable[Path], *, follow_links: bool = False) -> Iterator[Path]:
    """Every file named, and every file under every folder named (sorted, hidden names skipped).
    Files named explicitly are always yielded; files found in folders only when they look like images.
    Symbolic links found in a folder are followed only to files inside that folder, unless `follow_links`
    (IMAGEX_FOLLOW_LINKS); links to folders are never descended into (a loop could never end)."""
    for path in paths:
        if path.is_dir():
            yield from _under(path.resolve(), follow_links)
        else:
            yield path.resolve()


def _under(folder: Path, follow_links: bool, root: Path | None = None) -> Iterator[Path]:
    """`walk` of the resolved `folder` inside the resolved `root` (the folder named, when not given): its
    files, then each of its folders'. A file that is no link is its own resolved path, as the folders
    descended into are no links either: only links are resolved, one at a time."""
    root = root or folder
    try:
        with os.scandir(folder) as listing:
            entries = sorted((entry for entry in listing if not entry.name.startswith(".")),
                             key=lambda entry: entry.name)
    except OSError as error:  # unreadable, or gone meanwhile
        log.warning("%s cannot be read (%s); skipped", folder, error.strerror or error)
        return
    folders = []
    for entry in entries:
        try:
            if entry.is_dir(follow_symlinks=False):
                folders.append(entry.name)
                continue
            link = entry.is_symlink()
            if is_hidden_or_partial(entry.name) or (link and entry.is_dir()):
                continue
            candidate = folder / entry.name
            if link and not follow_links and not stays_inside(candidate, root):
                log.warning("%s is a link to a file outside %s; skipped (IMAGEX_FOLLOW_LINKS=true "
                            "follows such links)", candidate, root)
                continue
            if entry.is_file() and (entry.name.lower().endswith(IMAGE_SUFFIXES) or is_candidate(candidate)):
                yield candidate.resolve() if link else candidate
        except OSError:  # gone meanwhile
            continue
    for name in folders:
        yield from _under(folder / name, follow_links, root)


def job_for(path: Path, *, owner: str = "", provenance: str = "batch") -> NewJob:
    """A job keyed by this version of the file: path, size and modification time."""
    try:
        stat = path.stat()
        key = f"{path}|{stat.st_size}|{stat.st_mtime_ns}"
    except OSError:
        key = f"{path}|missing"
    return NewJob(key=key, path=str(path), owner=owner, provenance=provenance)
