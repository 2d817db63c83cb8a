"""Benchmark: `imagex watch` catching up with a folder already full of small FITS files (the files of
bench/batch.py, settled an hour ago), run as a subprocess until every file's job is done.

    .venv/bin/python bench/watch.py [--files 2000] [--size 256] [--workers N] [--rounds 1] [--keep]

A folder of at least IMAGEX_CATALOGUE_FIRST_FROM FITS files is catalogued from its headers as the watch
starts, then the watcher builds the pyramids a few files to a pool call (app/ingest/catalogue.py), the job
runner taking some of them singly. Prints, for each round, the seconds until every file is found by
searches and until every job is done (from the command's start), files/s, and the CPU time of the command
and its pool processes, a file's share (on a machine shared with other work it moves far less than the wall
time). The catalog is read every 0.1 s.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from batch import IMAGEX, write_files

POLL = 0.1
TIMEOUT = 1800.0


def counts(data: Path) -> tuple[int, int, int]:
    """Images catalogued, jobs done and jobs failed so far (0s before the catalog exists)."""
    path = data / "catalog.sqlite"
    if not path.exists():
        return 0, 0, 0
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=1) as db:
            images = int(db.execute("SELECT count(*) FROM images").fetchone()[0])
            states = dict(db.execute("SELECT state, count(*) FROM jobs GROUP BY state").fetchall())
    except sqlite3.Error:  # not created yet, or busy
        return 0, 0, 0
    return images, int(states.get("done", 0)), int(states.get("failed", 0))


def run_watch(files: Path, data: Path, workers: int, count: int) -> tuple[float, float, float, int]:
    """Seconds until `count` images were catalogued and until `count` jobs ended, the CPU seconds of the
    command and its pool processes, and the number of failed jobs."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("IMAGEX_")}
    env.update(IMAGEX_DATA=str(data), IMAGEX_HIPS="false", IMAGEX_WORKERS=str(workers))
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    found: float | None = None
    log = data.with_name(f"{data.name}.log")  # a file: the command logs a line a file it queues
    with log.open("w") as output:
        process = subprocess.Popen([str(IMAGEX), "watch", str(files)], env=env, stdout=output,
                                   stderr=subprocess.STDOUT)
    try:
        while True:
            time.sleep(POLL)
            if process.poll() is not None:
                raise SystemExit(f"imagex watch stopped ({process.returncode}):\n{log.read_text()[-4000:]}")
            images, done, failed = counts(data)
            if found is None and images >= count:
                found = time.perf_counter() - start
            if done + failed >= count:
                break
            if time.perf_counter() - start > TIMEOUT:
                raise SystemExit(f"not done after {TIMEOUT:.0f} s: {done} done, {failed} failed")
        finished = time.perf_counter() - start
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(60)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
    return found if found is not None else finished, finished, cpu, failed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--files", type=int, default=2000, help="number of FITS files (default 2000)")
    parser.add_argument("--size", type=int, default=256, help="image side in pixels (default 256)")
    parser.add_argument("--workers", type=int, default=2, help="pool processes (default 2)")
    parser.add_argument("--rounds", type=int, default=1, help="runs over the same files (default 1)")
    parser.add_argument("--keep", action="store_true", help="keep the files and the archive")
    args = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="imagex-watch-bench-"))
    try:
        files = base / "files"
        paths = write_files(files, args.files, args.size, args.workers)
        settled = time.time() - 3600  # long settled: caught up with at once, not waited for
        for path in paths:
            os.utime(path, (settled, settled))
        for round_number in range(1, args.rounds + 1):
            data = base / f"data{round_number}"
            found, finished, cpu, failed = run_watch(files, data, args.workers, args.files)
            print(f"round {round_number}: every file found after {found:.1f} s, every job ended after "
                  f"{finished:.1f} s ({args.files / finished:.1f} files/s, {failed} failed), CPU a file "
                  f"{cpu / args.files * 1000:.1f} ms", flush=True)
            if not args.keep:
                shutil.rmtree(data, ignore_errors=True)
    finally:
        if args.keep:
            print(f"kept {base}", file=sys.stderr)
        else:
            shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
