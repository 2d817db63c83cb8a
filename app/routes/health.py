"""`/healthz`: is this process able to serve? For container health checks, load balancers and operators.

Open to anyone (no session, no CSRF, no site settings: it must answer even when the catalog does not), so
it says nothing secret: no paths, no store address, no error texts, no user or image data. 200 when the
store answers, 503 when it does not.
"""

from __future__ import annotations

import asyncio
import shutil
import time
from pathlib import Path
from typing import Any

from quart import Blueprint, Response, jsonify

from app.archive import Archive, get_archive
from app.ingest.watch import TASK_NAME
from app.monitor import disk_is_full

bp = Blueprint("health", __name__)


# Seconds the store may take to answer before the process is reported unhealthy (below the 10 s timeout
# of the Dockerfile's HEALTHCHECK).
STORE_TIMEOUT = 5.0


@bp.get("/healthz")
async def healthz() -> Response:
    archive = get_archive()
    facts = await health_facts(archive)
    response = jsonify(facts)
    response.status_code = 200 if facts["store"]["reachable"] else 503
    response.headers["Cache-Control"] = "no-store"
    return response


async def health_facts(archive: Archive) -> dict[str, Any]:
    """The state of the store, the process pool, the job runner, the folder watcher and the count of the
    fleet (processes alive and lost), JSON-ready."""
    store = await _store_state(archive)
    runner, watcher, hips = _runner_state(archive), _watcher_state(archive), _hips_state(archive)
    disk = await asyncio.to_thread(disk_state, archive.settings.data)
    if not store["reachable"]:
        status = "unavailable"
    elif _stopped(runner) or _stopped(watcher) or _stopped(hips) or _behind(store) or disk["full"]:
        # a background part failed, the store lacks migrations, or nothing new can be written
        status = "degraded"
    else:
        status = "ok"
    return {
        "status": status,
        "time": time.time(),
        "uptime": time.time() - archive.started if archive.started else 0.0,
        "store": store,
        "pool": {"size": archive.pool.size, "busy": archive.runner.active if archive.runner else 0},
        "runner": runner,
        "watcher": watcher,
        "hips": hips,
        "disk": disk,
        "fleet": await _fleet_state(archive) if store["reachable"] else None,
    }


def disk_state(data: Path) -> dict[str, Any]:
    """Room on the data folder's disk (sizes only, never the path), and whether it is full."""
    try:
        usage = shutil.disk_usage(data)
    except OSError:
        return {"free": None, "total": None, "full": False}
    return {"free": usage.free, "total": usage.total,
            "full": disk_is_full(usage.free, usage.total)}


async def _fleet_state(archive: Archive) -> dict[str, int] | None:
    """How many ImageX processes beat into this store, and how many of them are lost (counts only)."""
    from app.fleet import fleet_facts

    try:
        processes = await asyncio.wait_for(archive.store.list_processes(), STORE_TIMEOUT)
    except Exception:  # the store went away between the two questions: no count rather than no answer
        return None
    facts = fleet_facts(processes, time.time())
    return {"alive": facts["alive"], "lost": facts["lost"]}


def _behind(store: dict[str, Any]) -> bool:
    return store["migration"] is not None and bool(store["migration"] < store["migrations_known"])


def _stopped(part: dict[str, Any]) -> bool:
    return bool(part["present"] and not part["alive"])


async def _store_state(archive: Archive) -> dict[str, Any]:
    url = archive.settings.store_url
    kind = url.split(":", 1)[0].removesuffix("+srv")
    started = time.monotonic()
    try:
        await asyncio.wait_for(archive.store.site_settings(), STORE_TIMEOUT)
        migration = await asyncio.wait_for(_migration(archive), STORE_TIMEOUT)
    except Exception as error:  # unreachable, closed, timed out, damaged: the kind of error only
        return {"kind": kind, "reachable": False, "problem": type(error).__name__, "migration": None,
                "migrations_known": _migrations_known(archive), "latency_ms": None}
    return {"kind": kind, "reachable": True, "problem": "", "migration": migration,
            "migrations_known": _migrations_known(archive),
            "latency_ms": round((time.monotonic() - started) * 1000, 1)}


async def _migration(archive: Archive) -> int | None:
    """The newest migration applied to the store."""
    return await archive.store.migration_version()


def _migrations_known(archive: Archive) -> int:
    """The newest migration this version of ImageX ships for the archive's kind of catalog."""
    return max((version for version, _ in archive.store.shipped_migrations()), default=0)


def _runner_state(archive: Archive) -> dict[str, Any]:
    runner = archive.runner
    if runner is None:
        return {"present": False, "alive": False, "busy": 0, "concurrency": 0, "finished": 0}
    failed = archive.failed("job runner")
    return {"present": True, "alive": not failed, "busy": runner.active, "concurrency": runner.concurrency,
            "finished": runner.finished}


def _hips_state(archive: Archive) -> dict[str, Any]:
    """The HiPS surveys' updates: failed until an update succeeds again (app/hips/live.py)."""
    from app.hips.live import TASK

    return {"present": archive.settings.hips, "alive": not archive.failed(TASK),
            "queued": archive.hips.queued}


def _watcher_state(archive: Archive) -> dict[str, Any]:
    watcher = archive.watcher
    if watcher is None:
        return {"present": False, "alive": False, "folders": 0, "missing": 0, "waiting": 0}
    task = archive.tasks.get(TASK_NAME)  # alive from its start (its first look at the folders may be pending)
    return {"present": True, "alive": task is not None and task.state == "running",
            "folders": len(watcher.folders),
            "missing": len(watcher.missing), "waiting": watcher.waiting}
