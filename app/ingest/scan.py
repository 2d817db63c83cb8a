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
            for root, dirs, files in os.walk(path):
                dirs[:] = sorted(d for d in dirs if not d.startswith("."))
                for name in sorted(files):
                    if is_hidden_or_partial(name):
                        continue
                    candidate = Path(root) / name
                    if not follow_links and candidate.is_symlink() and not stays_inside(candidate, path):
                        log.warning("%s is a link to a file outside %s; skipped (IMAGEX_FOLLOW_LINKS=true "
                                    "follows such links)", candidate, path)
                        continue
                    if candidate.is_file() and (name.lower().endswith(IMAGE_SUFFIXES)
                                                or is_candidate(candidate)):
                        yield candidate.resolve()
        else:
            yield path.resolve()


def job_for(path: Path, *, owner: str = "", provenance: str = "batch") -> NewJob:
    """A job keyed by this version of the file: path, size and modification time."""
    try:
        stat = path.stat()
        key = f"{path}|{stat.st_size}|{stat.st_mtime_ns}"
    except OSError:
        key = f"{path}|missing"
    return NewJob(key=key, path=str(path), owner=owner, provenance=provenance)
