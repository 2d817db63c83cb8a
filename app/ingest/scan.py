"""Batch mode: walk files and folders and turn every image file into a job."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from pathlib import Path

from app.formats import is_candidate
from app.store.base import NewJob

# Names that say "image" even when the content turns out not to be one: such files are queued so that
# their job fails with a message instead of being skipped in silence.
IMAGE_SUFFIXES = (".fits", ".fit", ".fts", ".fz", ".fits.gz", ".fit.gz", ".tif", ".tiff", ".png", ".jpg",
                  ".jpeg")
PARTIAL_SUFFIXES = (".part", ".tmp", ".partial", ".crdownload")


def is_hidden_or_partial(name: str) -> bool:
    return name.startswith(".") or name.lower().endswith(PARTIAL_SUFFIXES)


def walk(paths: Iterable[Path]) -> Iterator[Path]:
    """Every file named, and every file under every folder named (sorted, hidden names skipped).
    Files named explicitly are always yielded; files found in folders only when they look like images."""
    for path in paths:
        if path.is_dir():
            for root, dirs, files in os.walk(path):
                dirs[:] = sorted(d for d in dirs if not d.startswith("."))
                for name in sorted(files):
                    if is_hidden_or_partial(name):
                        continue
                    candidate = Path(root) / name
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
