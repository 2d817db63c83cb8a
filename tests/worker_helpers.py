"""What the tests of `imagex worker` and of a fleet share: a worker's environment, the job queue and
catalog as its processes leave them, and a large image that keeps a worker busy."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from app.ingest.scan import job_for, walk
from app.store.sqlite import SQLiteStore
from tests.cli_helpers import catalog, environment

BIG = 5000  # pixels on a side: a job that takes seconds, long enough to be caught mid-way
READY = "SIGTERM or Ctrl-C stops"


async def queue(data: Path, *paths: Path) -> list[str]:
    """Queue every image file under `paths` in the catalog of `data`, as `imagex ingest` does."""
    store = SQLiteStore(data / "catalog.sqlite")
    await store.open()
    try:
        jobs = await store.enqueue([job_for(path) for path in walk(paths)])
    finally:
        await store.close()
    return [job.id for job in jobs]


def jobs_of(data: Path) -> list[dict[str, Any]]:
    with catalog(data) as db:
        return [dict(row) for row in db.execute("SELECT id, path, state, worker, attempts, error, image_ids "
                                                "FROM jobs")]


def rendering(data: Path) -> list[Path]:
    """Work folders in which libvips is writing tiles right now."""
    return [folder for folder in work_folders(data) if any(folder.glob("*/image_files/*/*.jpeg"))]


def worker_env(data: Path, **extra: str) -> dict[str, str]:
    return environment(data, IMAGEX_WORKERS="1", **extra)


def work_folders(data: Path) -> list[Path]:
    work = data / "tiles" / ".work"
    return sorted(work.iterdir()) if work.is_dir() else []
