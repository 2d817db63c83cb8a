"""Benchmark: tiling throughput (megapixels/s) of `imagex worker` processes sharing one SQLite catalog, with
1, 2 and one-per-core workers on the same tree of FITS files, in the same run. The 1-worker figure is the
baseline; each other count prints its scaling efficiency against linear (target: at least 80 % up to the
core count).

    .venv/bin/python bench/workers.py [--files 96] [--size 1024] [--counts 1,2,N] [--repeat 2] [--keep]

Each worker is a real `imagex worker` process with one pool process (IMAGEX_WORKERS=1), i.e. one core's
worth. The clock runs from the moment the jobs are queued (every worker is up and idle, its pool warmed)
to the moment the last job is done, so process start-up is not counted (an idle worker looks for jobs
every second: up to a second of each figure is that wait, alike for every count). Every count starts on
a fresh catalog and tiles folder, and the run checks that each file was ingested exactly once. With
`--repeat R` the counts are measured R times, interleaved (1, 2, N, 1, 2, N, ...), and the best time of
each is kept: other load on the machine then hurts every count alike instead of whichever ran while it
lasted.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from astropy.io import fits

from app.ingest.scan import job_for, walk
from app.samples import FIELD_DEC, FIELD_RA, celestial_wcs, star_field
from app.store.sqlite import SQLiteStore

IMAGEX = Path(sys.executable).parent / "imagex"
READY = "SIGTERM or Ctrl-C stops"
TARGET = 0.80


def write_one(folder: Path, index: int, size: int) -> Path:
    wcs = celestial_wcs(FIELD_RA + index * size / 3600 / 4, FIELD_DEC, size, size)
    header = wcs.to_header()
    header["OBJECT"] = f"Bench field {index}"
    path = folder / f"frame_{index:04d}.fits"
    fits.PrimaryHDU(star_field(wcs, size, size, seed=index), header).writeto(path)
    return path


def write_files(folder: Path, count: int, size: int) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    with ProcessPoolExecutor(os.cpu_count() or 1) as pool:
        return list(pool.map(write_one, [folder] * count, range(count), [size] * count))


async def queue(data: Path, files: Path) -> int:
    store = SQLiteStore(data / "catalog.sqlite")
    await store.open()
    try:
        return len(await store.enqueue([job_for(path) for path in walk([files])]))
    finally:
        await store.close()


def states(data: Path) -> dict[str, int]:
    with sqlite3.connect(data / "catalog.sqlite") as db:
        return dict(db.execute("SELECT state, count(*) FROM jobs GROUP BY state").fetchall())


def checked(data: Path, count: int) -> int:
    """Images catalogued; exits when a file was ingested twice or not at all."""
    with sqlite3.connect(data / "catalog.sqlite") as db:
        images, distinct = db.execute("SELECT count(*), count(DISTINCT sha256) FROM images").fetchone()
        failed = db.execute("SELECT path, error FROM jobs WHERE state = 'failed'").fetchall()
    if failed or images != count or distinct != count:
        raise SystemExit(f"expected {count} images once each, got {images} ({distinct} distinct); "
                         f"failed: {failed[:3]}")
    return int(images)


def run(count: int, files: Path, root: Path, jobs: int) -> float:
    """Seconds from queueing to the last job done, with `count` workers."""
    data = root / f"var-{count}"
    (root / "nothing").mkdir(parents=True, exist_ok=True)
    env = {key: value for key, value in os.environ.items() if not key.startswith("IMAGEX_")}
    env.update(IMAGEX_DATA=str(data), IMAGEX_WORKERS="1", IMAGEX_STOP_GRACE="5")
    asyncio.run(queue(data, root / "nothing"))  # the catalog exists (empty) before the workers start
    logs = [root / f"worker-{count}-{n}.log" for n in range(count)]
    processes = []
    for log in logs:
        with log.open("w") as output:
            processes.append(subprocess.Popen([str(IMAGEX), "worker"], env=env, stdout=output,
                                              stderr=subprocess.STDOUT))
    try:
        deadline = time.monotonic() + 120
        while not all(READY in log.read_text() for log in logs):
            if time.monotonic() > deadline or any(p.poll() is not None for p in processes):
                raise SystemExit("a worker did not start:\n" + "\n".join(log.read_text() for log in logs))
            time.sleep(0.05)
        started = time.perf_counter()
        queued = asyncio.run(queue(data, files))
        assert queued == jobs
        while states(data).get("done", 0) + states(data).get("failed", 0) < jobs:
            time.sleep(0.05)
        seconds = time.perf_counter() - started
    finally:
        for process in processes:
            process.send_signal(signal.SIGTERM)
        for process in processes:
            process.wait(timeout=60)
    checked(data, jobs)
    return seconds


def main() -> None:
    cores = os.cpu_count() or 1
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--files", type=int, default=96, help="number of FITS files (default 96)")
    parser.add_argument("--size", type=int, default=1024, help="width and height in pixels (default 1024)")
    parser.add_argument("--counts", default=",".join(str(n) for n in sorted({1, min(2, cores), cores})),
                        help=f"worker counts to measure, the first being the baseline (default 1,2,{cores})")
    parser.add_argument("--repeat", type=int, default=2, help="rounds over the counts; best time kept "
                        "(default 2)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder and print it")
    args = parser.parse_args()
    counts = [int(part) for part in args.counts.split(",") if part.strip()]
    if args.files < 1 or args.size < 8 or not counts or min(counts) < 1 or args.repeat < 1:
        parser.error("--files, --repeat and every count must be at least 1, --size at least 8")
    counts = list(dict.fromkeys(counts))

    root = Path(tempfile.mkdtemp(prefix="imagex-workers-"))
    try:
        print(f"writing {args.files} FITS files of {args.size}x{args.size} float32 ...", flush=True)
        paths = write_files(root / "files", args.files, args.size)
        megapixels = len(paths) * args.size * args.size / 1e6
        print(f"{cores} cores; {megapixels:.1f} megapixels to tile per run", flush=True)
        best: dict[int, float] = {}
        for round_ in range(args.repeat):
            for count in counts:
                seconds = run(count, root / "files", root / f"round{round_}", len(paths))
                best[count] = min(seconds, best.get(count, seconds))
                print(f"  round {round_ + 1}, {count} worker(s): {seconds:6.2f} s  "
                      f"{megapixels / seconds:7.2f} megapixels/s", flush=True)
        rates = {count: megapixels / seconds for count, seconds in best.items()}
        print("best of each:")
        for count in counts:
            print(f"  {count} worker(s): {best[count]:6.2f} s  {rates[count]:7.2f} megapixels/s")
        base_count = counts[0]
        base = rates[base_count] / base_count
        print(f"scaling against {base_count} worker(s) (linear = {base:.2f} megapixels/s per worker):")
        for count in counts:
            efficiency = rates[count] / (base * count)
            verdict = "" if count > cores else ("  ok" if efficiency >= TARGET else
                                                f"  below the {TARGET:.0%} target")
            note = "  (more workers than cores)" if count > cores else ""
            print(f"  {count} worker(s): {rates[count] / rates[base_count]:5.2f}x the baseline, "
                  f"efficiency {efficiency:6.1%} of linear{verdict}{note}")
    finally:
        if args.keep:
            print(f"kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
