"""kill -9 with real processes: `imagex ingest --workers 2` killed at three seeded random moments during 100
files and run again loses no image, catalogues none twice and leaves no half pyramid nor a tile folder
without its catalog row; the killed process's pool processes die with it. (`imagex serve` killed while
uploads stream: tests/test_kill_serve.py.)

The moments come from IMAGEX_KILL_SEED (a fixed default), printed so a failure can be replayed."""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from app.ingest.spool import holder_dead, process_started
from app.store.records import UploadHolder
from app.tiles.pyramid import DZI_NAME, current, image_root, max_level, one_tile_level
from tests.cli_helpers import (
    IMAGEX,
    assert_each_file_once,
    catalog,
    environment,
    job_states,
    summary,
    write_tree,
)
from tests.processes import alive, children_of, wait_dead

SEED = int(os.environ.get("IMAGEX_KILL_SEED", "20240611"))
FILES = 100
KILLS = 3
DEADLINE = 120.0
REPO = Path(__file__).resolve().parents[1]


def done_count(data: Path) -> int:
    try:
        return job_states(data).get("done", 0)
    except sqlite3.Error:  # the catalog is still being created
        return 0


def assert_complete_pyramids(data: Path) -> None:
    """Every catalogued image has one tile folder holding its DZI and every level from full resolution
    down to the one that fits in one tile (those below are made on request); every tile folder belongs to
    a catalogued image; no work folder is left."""
    with catalog(data) as db:
        images = {row["id"]: dict(row) for row in db.execute("SELECT id, width, height FROM images")}
    tiles = data / "tiles"
    roots = {folder.name for shard in tiles.iterdir() if not shard.name.startswith(".")
             for folder in shard.iterdir()}
    assert roots == set(images), (f"tile folders without a catalog row: {sorted(roots - set(images))}; "
                                  f"images without tiles: {sorted(set(images) - roots)}")
    for image_id, image in images.items():
        root = image_root(tiles, image_id)
        assert len(os.listdir(root)) == 1, f"{image_id}: more than one generation: {os.listdir(root)}"
        folder = current(root)
        assert folder is not None and (folder / f"{DZI_NAME}.dzi").is_file(), image_id
        levels = range(one_tile_level(image["width"], image["height"]),
                       max_level(image["width"], image["height"]) + 1)
        level_folders = folder / f"{DZI_NAME}_files"
        present = sorted(int(name) for name in os.listdir(level_folders) if name.isdigit())
        assert present == list(levels), image_id
        assert all(os.listdir(level_folders / str(level)) for level in levels), image_id
    work = tiles / ".work"
    assert not work.exists() or not os.listdir(work), os.listdir(work)


def test_ingest_killed_three_times_then_rerun_loses_and_duplicates_nothing(tmp_path):
    files = write_tree(tmp_path / "tree", FILES, size=40)
    data = tmp_path / "var"
    command = [str(IMAGEX), "ingest", str(tmp_path / "tree"), "--workers", "2", "--no-progress"]
    # a short lease: the rerun takes over the killed runner's jobs after a second, not a minute
    env = environment(data, IMAGEX_JOB_LEASE="1")
    moments = random.Random(SEED)
    print(f"IMAGEX_KILL_SEED={SEED}")
    started = time.monotonic()
    killed_at = []
    for kill in range(KILLS):
        before = done_count(data)
        # a moment in this run: after a random number of further files (at least one, so that the pool
        # has started), plus a random fraction of a file's time
        target = before + moments.randint(1, 12)
        jitter = moments.uniform(0.0, 0.08)
        runner = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            while runner.poll() is None and done_count(data) < target:
                assert time.monotonic() - started < DEADLINE, "the ingest made no progress"
                time.sleep(0.005)
            time.sleep(jitter)
            assert runner.poll() is None, f"kill {kill + 1}: the ingest ended before it could be killed"
            pool = children_of(runner.pid)
            os.kill(runner.pid, signal.SIGKILL)  # the runner alone: its pool must die with it
            runner.wait(timeout=30)
        finally:
            if runner.poll() is None:
                runner.kill()
                runner.wait(timeout=30)
        killed_at.append(done_count(data))
        assert pool, "the runner had no pool processes when it was killed"
        since = time.monotonic()
        assert wait_dead(pool) == set(), f"kill {kill + 1}: pool processes outlived their parent"
        print(f"kill {kill + 1}: {len(pool)} child process(es) gone {time.monotonic() - since:.2f} s after")
    print(f"killed after {killed_at} of {FILES} files were done")
    assert killed_at[-1] < FILES

    rerun = subprocess.run(command, env=env, capture_output=True, text=True, timeout=DEADLINE)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    counts = summary(rerun.stdout)
    assert counts["files"] == FILES and counts["failed"] == 0
    assert_each_file_once(data, files)
    assert job_states(data) == {"done": FILES}
    assert_complete_pyramids(data)
    with catalog(data) as db:
        image_ids = [json.loads(row[0]) for row in db.execute("SELECT image_ids FROM jobs")]
    assert all(len(ids) == 1 for ids in image_ids)


ORPHAN = """
import os, subprocess, sys
watch = ("import sys; from app.tiles.pool import _watch_parent; print('watching', flush=True); "
         "_watch_parent(int(sys.argv[1]))")
child = subprocess.Popen([sys.executable, "-c", watch, str(os.getpid())])
print(child.pid, flush=True)
child.wait()
"""


def test_the_watchdog_alone_ends_a_pool_process_whose_parent_was_killed(tmp_path):
    """Without PR_SET_PDEATHSIG (other systems, or a signal missed), the getppid watchdog still ends an
    orphaned pool process within about a second."""
    parent = subprocess.Popen([sys.executable, "-c", ORPHAN], stdout=subprocess.PIPE, text=True, cwd=REPO)
    try:
        assert parent.stdout is not None
        child = int(parent.stdout.readline())
        assert parent.stdout.readline().strip() == "watching"
        assert alive(child)
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait(10)
        assert wait_dead({child}, timeout=5) == set()
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait(10)


def test_reservations_of_dead_holders_are_released_and_live_ones_kept(tmp_path):
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait(10)
    try:
        live = UploadHolder(socket.gethostname(), sleeper.pid, process_started(sleeper.pid) or "")
        assert live.started and not holder_dead(live)
        assert holder_dead(UploadHolder(live.host, dead.pid, "x"))  # its pid is free (or reused)
        assert holder_dead(UploadHolder(live.host, sleeper.pid, live.started + "0"))  # pid reused
        assert not holder_dead(UploadHolder("another-host", dead.pid, "x"))  # cannot tell: kept
    finally:
        sleeper.kill()
        sleeper.wait(10)
    assert holder_dead(live)
