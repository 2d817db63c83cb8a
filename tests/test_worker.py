"""`imagex worker` as real processes on one SQLite catalog and data folder: three workers and `imagex serve`
ingest a tree of 200 files exactly once; a worker killed with SIGKILL mid-job loses nothing (its lease runs
out, another worker redoes the job from the start, no half-written pyramid is ever in place, nothing is
duplicated); SIGTERM stops a worker promptly with exit status 0, its job finished or back in the queue."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from astropy.io import fits

from app.samples import FIELD_DEC, FIELD_RA, celestial_wcs
from app.tiles.pyramid import one_tile_level
from tests.cli_helpers import (
    assert_each_file_once,
    catalog,
    environment,
    image_folder,
    running,
    tile_folders,
    wait_until,
    write_tree,
)
from tests.processes import answers, free_port
from tests.worker_helpers import BIG, READY, jobs_of, queue, rendering, work_folders, worker_env


def images_of(data: Path) -> list[dict[str, Any]]:
    with catalog(data) as db:
        return [dict(row) for row in db.execute("SELECT id, sha256, path, width, height FROM images")]


def harvested_alone(data: Path) -> dict[str, Any]:
    """The one image in the catalog, harvested (found by searches, with its thumbnail) and without any
    pyramid in place: what a job stopped while it built the pyramids leaves, for the next runner."""
    [image] = images_of(data)
    assert tile_folders(data) == [image["id"]]
    folder = image_folder(data, image["id"])
    assert sorted(path.name for path in folder.iterdir()) == ["thumb.jpeg"]
    with catalog(data) as db:
        [display] = [json.loads(row[0]) for row in db.execute("SELECT display FROM images")]
    assert display["tiling"] == {"scaling": {}}
    return image


def write_big(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    wcs = celestial_wcs(FIELD_RA, FIELD_DEC, BIG, BIG)
    pixels = np.random.default_rng(7).normal(1000.0, 30.0, (BIG, BIG)).astype("float32")
    path = folder / "big.fits"
    fits.PrimaryHDU(pixels, wcs.to_header()).writeto(path)
    return path


def assert_complete_pyramid(folder: Path, width: int, height: int) -> None:
    """Every level of the Deep Zoom pyramid written at ingest holds every tile (254 px, levels halving
    down to the one that fits in one tile: those below are made on request)."""
    assert (folder / "image.dzi").is_file() and (folder / "thumb.jpeg").is_file()
    deepest = math.ceil(math.log2(max(width, height)))
    levels = sorted(int(p.name) for p in (folder / "image_files").iterdir() if p.name.isdigit())
    assert levels == list(range(one_tile_level(width, height), deepest + 1))
    for level in levels:
        scale = 2 ** (deepest - level)
        across, down = math.ceil(math.ceil(width / scale) / 254), math.ceil(math.ceil(height / scale) / 254)
        tiles = list((folder / "image_files" / str(level)).glob("*.jpeg"))
        assert len(tiles) == across * down, (folder, level)
        assert all(tile.stat().st_size > 0 for tile in tiles)


def children_of(pid: int) -> list[int]:
    """The processes whose parent is `pid` (the worker's pool processes)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                found.append(int(entry.name))
    return found


def alive(pid: int) -> bool:
    try:
        state = (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def all_gone(pids: list[int], timeout: float = 15) -> bool:
    """True once none of `pids` runs any more (the pool and multiprocessing's resource tracker, which
    leaves a moment after its parent)."""
    deadline = time.monotonic() + timeout
    while any(alive(pid) for pid in pids):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


async def test_three_workers_and_serve_ingest_200_files_exactly_once(tmp_path):
    data, port = tmp_path / "var", free_port()
    files = write_tree(tmp_path / "tree", 200, size=48)
    logs = [tmp_path / f"worker{n}.log" for n in range(3)]
    serve_log = tmp_path / "serve.log"
    with running(["serve", "--port", str(port)], worker_env(data), serve_log) as web, \
            running(["worker"], worker_env(data), logs[0]) as first, \
            running(["worker"], worker_env(data), logs[1]) as second, \
            running(["worker"], worker_env(data), logs[2]) as third:
        workers = [first, second, third]
        wait_until(lambda: answers(f"http://127.0.0.1:{port}/healthz"), "the web process", web, serve_log)
        for process, log in zip(workers, logs, strict=True):
            wait_until(lambda log=log: READY in log.read_text(), "a worker to start", process, log)
        ids = await queue(data, tmp_path / "tree")
        assert len(ids) == 200
        wait_until(lambda: all(job["state"] in ("done", "failed") for job in jobs_of(data)),
                   "every job to finish", web, serve_log, timeout=240)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz") as response:
            health = json.loads(response.read())
        for process, log in zip(workers, logs, strict=True):
            process.send_signal(signal.SIGTERM)
            assert process.wait(timeout=60) == 0, log.read_text()
            assert "0 given back to the queue" in log.read_text()

    assert health["status"] == "ok" and health["store"]["reachable"] is True
    assert health["store"]["migration"] == health["store"]["migrations_known"]
    jobs = jobs_of(data)
    assert_each_file_once(data, files)  # one image each, no duplicate checksum, every job done
    assert all(job["attempts"] == 1 for job in jobs)  # nobody's lease ran out: no job was run twice
    runners = {job["worker"].split(":")[1] for job in jobs}
    worker_pids = {str(process.pid) for process in workers}
    assert worker_pids <= runners, f"each worker ran jobs: {runners}"
    images = images_of(data)
    assert tile_folders(data) == sorted(image["id"] for image in images)
    for image in images:
        folder = image_folder(data, image["id"])
        assert_complete_pyramid(folder, image["width"], image["height"])
    assert work_folders(data) == []


async def test_a_worker_killed_mid_job_loses_nothing_and_another_redoes_the_job(tmp_path):
    data = tmp_path / "var"
    big = write_big(tmp_path / "in")
    env = worker_env(data, IMAGEX_JOB_LEASE="3")
    with running(["worker"], env, tmp_path / "doomed.log", start_new_session=True) as doomed:
        wait_until(lambda: READY in (tmp_path / "doomed.log").read_text(), "the worker to start", doomed,
                   tmp_path / "doomed.log")
        pool = children_of(doomed.pid)
        assert pool, "the worker has its pool process"
        [job_id] = await queue(data, big)
        wait_until(lambda: rendering(data), "tiles being written", doomed, tmp_path / "doomed.log")
        os.kill(doomed.pid, signal.SIGKILL)
        doomed.wait(timeout=10)
    # its pool process dies with it instead of writing on for a job it can no longer publish
    assert all_gone(pool)
    [job] = jobs_of(data)
    assert job["state"] == "running" and f":{doomed.pid}:" in job["worker"]
    leftover = work_folders(data)
    assert len(leftover) == 1 and leftover[0].name.startswith(f"{job_id}-")
    assert not (leftover[0] / "0" / "image.dzi").exists()
    # nothing half-written is in place: the image was catalogued by the job's first phase (its thumbnail
    # alone in its tile folder); its pyramid was being built in the work area
    harvested_alone(data)

    log = tmp_path / "rescuer.log"
    with running(["worker"], env, log) as rescuer:
        wait_until(lambda: jobs_of(data)[0]["state"] in ("done", "failed"), "the job to be redone", rescuer,
                   log, timeout=120)
        rescuer.send_signal(signal.SIGTERM)
        assert rescuer.wait(timeout=60) == 0, log.read_text()
    [job] = jobs_of(data)
    assert job["state"] == "done", job["error"]
    assert f":{rescuer.pid}:" in job["worker"] and job["attempts"] == 2
    assert_each_file_once(data, [big])
    [image] = images_of(data)
    assert json.loads(job["image_ids"]) == [image["id"]]
    assert tile_folders(data) == [image["id"]]
    assert_complete_pyramid(image_folder(data, image["id"]), BIG, BIG)
    assert work_folders(data) == []  # the dead attempt's folder was removed when the job was taken again


@pytest.mark.parametrize(("grace", "expected"), [("120", "done"), ("0.2", "queued")])
async def test_sigterm_finishes_or_gives_back_the_job_and_exits_0_promptly(tmp_path, grace, expected):
    data, log = tmp_path / "var", tmp_path / "worker.log"
    big = write_big(tmp_path / "in")
    env = worker_env(data, IMAGEX_STOP_GRACE=grace)
    with running(["worker"], env, log, start_new_session=True) as worker:
        wait_until(lambda: READY in log.read_text(), "the worker to start", worker, log)
        pool = children_of(worker.pid)
        await queue(data, big)
        wait_until(lambda: rendering(data), "tiles being written", worker, log)
        signalled = time.monotonic()
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=float(grace) + 30) == 0, log.read_text()
        took = time.monotonic() - signalled
    output = log.read_text()
    assert "Stopping: no new jobs" in output
    [job] = jobs_of(data)
    assert job["state"] == expected, output
    assert all_gone(pool)
    assert work_folders(data) == []
    if expected == "done":
        assert "Stopped: 1 job(s) finished, 0 given back to the queue." in output
        [image] = images_of(data)
        assert_complete_pyramid(image_folder(data, image["id"]), BIG, BIG)
    else:
        # given back at once, while it built the pyramids: the next worker builds them afresh; nothing of
        # them is in place (the image, harvested, is catalogued with its thumbnail)
        assert took < 15, output
        assert "Stopped: 0 job(s) finished, 1 given back to the queue." in output
        assert job["worker"] == ""
        harvested_alone(data)


def test_the_worker_refuses_a_bad_setting_before_starting(tmp_path):
    result = subprocess.run([str(Path(sys.executable).parent / "imagex"), "worker", "--stop-grace", "-1"],
                            env=environment(tmp_path / "var"), capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "imagex: --stop-grace: must be a positive number, got '-1'" in result.stderr
    assert not (tmp_path / "var").exists()
