"""What the system is doing, for the administrator's monitor: disk use (originals, tiles, catalog, free),
the background parts (job runner, watcher, process pool), the fleet (every ImageX process that uses this
store, from its heartbeats) and the job queue with its recent failures."""

from __future__ import annotations

import asyncio
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from app.archive import Archive
from app.fleet import fleet_facts
from app.ingest.watch import TASK_NAME
from app.store.records import JobRecord

# Seconds a measurement that reads a whole folder or table is reused: the monitor refreshes every few
# seconds, and the catalog has one writer thread that a full scan would hold up.
MEASURE_TTL = 30.0
RECENT_FAILURES = 20
RATE_WINDOW = 300.0  # seconds of finished jobs an ingest rate is measured over


@dataclass(frozen=True)
class FolderSize:
    files: int
    bytes: int
    measured: float


_walks: dict[Path, FolderSize] = {}
_originals: dict[str, dict[str, Any]] = {}


def folder_size(folder: Path) -> FolderSize:
    """Files and bytes under `folder` (symbolic links are not followed; unreadable parts are skipped)."""
    files = total = 0
    pending = [str(folder)]
    while pending:
        try:
            with os.scandir(pending.pop()) as entries:
                for entry in entries:
                    try:
                        if entry.is_dir(follow_symlinks=False):
                            pending.append(entry.path)
                        elif entry.is_file(follow_symlinks=False):
                            files += 1
                            total += entry.stat(follow_symlinks=False).st_size
                    except OSError:  # removed while we looked (a job's work folder, say)
                        continue
        except OSError:
            continue
    return FolderSize(files, total, time.time())


async def cached_folder_size(folder: Path, ttl: float = MEASURE_TTL) -> FolderSize:
    """`folder_size`, walked in a thread and reused for `ttl` seconds."""
    key = folder.resolve()
    known = _walks.get(key)
    if known is not None and time.time() - known.measured < ttl:
        return known
    measured = await asyncio.to_thread(folder_size, key)
    _walks[key] = measured
    return measured


async def originals(archive: Archive, ttl: float = MEASURE_TTL) -> dict[str, Any]:
    """Bytes and images of the catalogued originals, reused for `ttl` seconds. Identical content is
    catalogued once, so the per-owner sums add up to the distinct files."""
    key = archive.settings.store_url
    known = _originals.get(key)
    if known is not None and time.time() - known["measured"] < ttl:
        return known
    usage = (await archive.store.usage()).values()
    measured = {"bytes": sum(entry.bytes for entry in usage), "images": sum(entry.images for entry in usage),
                "measured": time.time()}
    _originals[key] = measured
    return measured


def catalog_files(store_url: str) -> list[Path]:
    """The files of an SQLite catalog (the database and its write-ahead log); none for other stores."""
    if not store_url.startswith("sqlite:///"):
        return []
    database = Path(store_url.removeprefix("sqlite:///"))
    return [database, Path(f"{database}-wal"), Path(f"{database}-shm")]


DISK_LOW = 256 * 2**20
DISK_LOW_SHARE = 0.02


def disk_is_full(free: int, total: int) -> bool:
    """Below the smaller of 256 MiB and 2 % of the disk: uploads, tiles and the catalog's own writes are
    about to fail (the monitor and `/healthz` say so)."""
    return free < min(DISK_LOW, total * DISK_LOW_SHARE)


def _disk_facts(data: Path, catalog: list[Path]) -> dict[str, Any]:
    catalog_bytes = 0
    for path in catalog:
        try:
            catalog_bytes += path.stat().st_size
        except OSError:  # no -wal or -shm file right now
            continue
    disk = shutil.disk_usage(data)
    return {"catalog": {"bytes": catalog_bytes if catalog else None,
                        "path": str(catalog[0]) if catalog else ""},
            "free": {"bytes": disk.free, "total": disk.total, "used": disk.used, "path": str(data),
                     "full": disk_is_full(disk.free, disk.total)}}


def failure(job: JobRecord) -> dict[str, Any]:
    """A failed job as the monitor lists it."""
    return {"id": job.id, "name": job.path.rsplit("/", 1)[-1], "path": job.path, "owner": job.owner,
            "state": job.state, "error": job.error, "attempts": job.attempts, "updated": job.updated}


def _background(archive: Archive) -> dict[str, Any]:
    runner = archive.runner
    if runner is None:
        job_runner: dict[str, Any] = {
            "present": False, "alive": False, "busy": 0, "concurrency": 0, "worker": "", "last_error": "",
            "state": "not running in this process (jobs are run by `imagex ingest` or `imagex worker`)"}
    else:
        # the runner's task ends only at shutdown or when it fails, and a failure is recorded there
        failed = archive.failed("job runner")
        job_runner = {
            "present": True, "alive": not failed, "busy": runner.active, "concurrency": runner.concurrency,
            "worker": runner.worker, "last_error": runner.last_error,
            "state": "stopped after an error" if failed else
            ("busy" if runner.active else "idle, waiting for jobs")}
    return {
        "job_runner": job_runner,
        "watcher": _watcher(archive),
        "hips": _hips(archive),
        "pool": {"present": True, "size": archive.pool.size,
                 "busy": runner.active if runner is not None else 0,
                 "state": f"{archive.pool.size} worker process{'' if archive.pool.size == 1 else 'es'}, "
                          "started on first use"},
    }


def _hips(archive: Archive) -> dict[str, Any]:
    """The HiPS surveys' live updates: how many are queued, and the last failure until one succeeds."""
    from app.hips.live import TASK

    failed = archive.failed(TASK)
    queued = archive.hips.queued
    state = ("off (IMAGEX_HIPS)" if not archive.settings.hips else "an update failed" if failed
             else f"{queued} update{'' if queued == 1 else 's'} queued" if queued else "up to date")
    return {"present": archive.settings.hips, "alive": not failed, "queued": queued, "state": state,
            "last_error": archive.tasks[TASK].message if failed else ""}


def _watcher(archive: Archive) -> dict[str, Any]:
    watcher = archive.watcher
    if watcher is None:
        return {"present": False, "alive": False, "state": "not configured (set IMAGEX_WATCH_DIRS)",
                "settle": 0.0, "folders": [], "waiting": 0, "building": 0, "queued": 0, "last_error": ""}
    facts = watcher.facts()
    task = archive.tasks.get(TASK_NAME)
    if task is not None and task.state == "failed":
        facts.update(alive=False, state="stopped after an error", last_error=task.message)
    return facts


async def ingest_rate(archive: Archive, pending: int, owner: str | None = None) -> dict[str, Any]:
    """Jobs finished per second (every process sharing the store, `owner`'s jobs when given), from the
    first job finished in the last RATE_WINDOW seconds to now, and the seconds left for `pending` jobs at
    that rate: None for both until two jobs finished in the window (one gives no span to measure)."""
    stamp = archive.store.now()
    count, first = await archive.store.finished_since(stamp - RATE_WINDOW, owner=owner)
    if count < 2 or first is None or stamp <= first:
        return {"rate": None, "eta": None, "finished": count, "window": RATE_WINDOW}
    rate = (count - 1) / (stamp - first)
    return {"rate": rate, "eta": pending / rate if pending else 0.0, "finished": count, "window": RATE_WINDOW}


async def monitor_facts(archive: Archive) -> dict[str, Any]:
    """Everything the monitor page shows, as one JSON-ready dict (the page and `/api/admin/monitor`)."""
    settings = archive.settings
    counts = await archive.store.job_counts()
    pending = counts.get("queued", 0) + counts.get("running", 0) + counts.get("harvested", 0)
    failed = await archive.store.list_jobs("failed", limit=RECENT_FAILURES)
    tiles = await cached_folder_size(settings.tiles_dir)
    disk = await asyncio.to_thread(_disk_facts, settings.data, catalog_files(settings.store_url))
    processes = await archive.store.list_processes()
    stamp = time.time()
    return {
        "time": stamp,
        "uptime": stamp - archive.started if archive.started else 0.0,
        "disk": {
            "originals": dict(await originals(archive)),
            "tiles": {"bytes": tiles.bytes, "files": tiles.files, "measured": tiles.measured,
                      "path": str(settings.tiles_dir)},
            **disk,
        },
        "background": _background(archive),
        "background_errors": list(archive.background_errors),
        "fleet": fleet_facts(processes, stamp, archive.heartbeat.name if archive.heartbeat else ""),
        "jobs": {"counts": counts, "pending": pending, "failures": [failure(job) for job in failed],
                 **await ingest_rate(archive, pending)},
    }
