"""Benchmark: many small FITS files (256x256 float32 star fields with a real TAN WCS) through
`imagex ingest` run as a subprocess, against bare astropy header reads (`fits.getheader`) of the same
files in the same run: the floor for any tool that has to open every file.

    .venv/bin/python bench/batch.py [--files 2000] [--size 256] [--workers N] [--two-phase-above 0]
        [--catalogue-first-from 0] [--keep]

Prints files/s for both and the ratio. The ImageX figure is measured three times: until every file is
searchable (the catalog, read every 0.1 s while the command runs, holds an image for each: a batch of at
least IMAGEX_CATALOGUE_FIRST_FROM FITS files is catalogued from its headers first, app/ingest/catalogue.py;
`--catalogue-first-from 0` measures without), the whole command (process start, catalog, pool
start, queueing, every job and its pyramids, summary), and the queue alone (the time the command's own
summary line reports). It also prints the CPU time of the command and its pool processes, a file's share:
on a machine shared with other work it moves far less than the wall time.
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from astropy.io import fits

from app.samples import FIELD_DEC, FIELD_RA, celestial_wcs, star_field

IMAGEX = Path(sys.executable).parent / "imagex"
SUMMARY = re.compile(r"^(\d+) file\(s\) in ([\d.]+) s: (\d+) ingested .*?(\d+) failed\.$", re.MULTILINE)
PER_FOLDER = 250


def write_one(folder: Path, index: int, size: int) -> Path:
    """One distinct star field: its own pointing (a grid around the sample field) and noise seed."""
    column, row = index % 40, index // 40
    ra = FIELD_RA + (column - 20) * size / 3600 / 4
    dec = FIELD_DEC + (row - 25) * size / 3600 / 4
    wcs = celestial_wcs(ra, dec, size, size)
    header = wcs.to_header()
    header["OBJECT"] = f"Bench field {index}"
    header["EXPTIME"] = 30.0
    header["FILTER"] = "r"
    path = folder / f"night{index // PER_FOLDER:02d}" / f"frame_{index:05d}.fits"
    path.parent.mkdir(parents=True, exist_ok=True)
    fits.PrimaryHDU(star_field(wcs, size, size, seed=index), header).writeto(path)
    return path


def write_files(folder: Path, count: int, size: int, workers: int) -> list[Path]:
    with ProcessPoolExecutor(workers) as pool:
        return list(pool.map(write_one, [folder] * count, range(count), [size] * count, chunksize=50))


def header_reads(paths: list[Path]) -> float:
    """Seconds for `fits.getheader` of every file, one after the other."""
    start = time.perf_counter()
    for path in paths:
        fits.getheader(path)
    return time.perf_counter() - start


def run_ingest(files: Path, data: Path, workers: int, hips: bool, count: int,
               two_phase_above: int | None = None,
               catalogue_first_from: int | None = None,
               ) -> tuple[float, float, float | None, str, float, float]:
    """Seconds for the whole `imagex ingest` command, for its queue (from its summary line), until the
    catalog held `count` images (None if it never did while the command ran), and the CPU seconds (user,
    system) of the command and its pool processes together."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("IMAGEX_")}
    env["IMAGEX_DATA"] = str(data)
    env["IMAGEX_HIPS"] = "true" if hips else "false"
    if two_phase_above is not None:
        env["IMAGEX_TWO_PHASE_ABOVE"] = str(two_phase_above)
    if catalogue_first_from is not None:
        env["IMAGEX_CATALOGUE_FIRST_FROM"] = str(catalogue_first_from)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    searchable: float | None = None
    with subprocess.Popen([str(IMAGEX), "ingest", str(files), "--workers", str(workers), "--no-progress"],
                          env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as process:
        while process.poll() is None:
            if searchable is None and catalogued(data) >= count:
                searchable = time.perf_counter() - start
            time.sleep(0.1)
        stdout, stderr = process.communicate()
    wall = time.perf_counter() - start
    # the command waited for its pool processes, and this process for the command: both counted here
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    match = SUMMARY.search(stdout)
    if process.returncode != 0 or match is None:
        raise SystemExit(f"imagex ingest failed ({process.returncode}):\n{stdout}\n{stderr}")
    if int(match.group(4)):
        raise SystemExit(f"imagex ingest reported failures:\n{stdout}")
    return (wall, float(match.group(2)), searchable, match.group(0), after.ru_utime - before.ru_utime,
            after.ru_stime - before.ru_stime)


def catalogued(data: Path) -> int:
    """How many images the command's catalog holds now (0 before it exists)."""
    path = data / "catalog.sqlite"
    if not path.exists():
        return 0
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=1) as db:
            return int(db.execute("SELECT count(*) FROM images").fetchone()[0])
    except sqlite3.Error:  # not created yet, or busy
        return 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--files", type=int, default=2000, help="number of FITS files (default 2000)")
    parser.add_argument("--size", type=int, default=256, help="width and height in pixels (default 256)")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                        help="imagex ingest --workers (default: one per core)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder and print it")
    parser.add_argument("--hips", action="store_true", help="keep the HiPS survey's live updates on (the "
                        "command then waits for them): off by default, so the figure is the catalog's and "
                        "the pyramids' alone, as before the surveys existed")
    parser.add_argument("--two-phase-above", type=int, default=None, metavar="PIXELS",
                        help="IMAGEX_TWO_PHASE_ABOVE for the run (0: every file in two phases: catalogued "
                        "first, tiled next); default: the setting's default")
    parser.add_argument("--catalogue-first-from", type=int, default=None, metavar="FILES",
                        help="IMAGEX_CATALOGUE_FIRST_FROM for the run (0: no batch is catalogued from its "
                        "headers first); default: the setting's default")
    args = parser.parse_args()
    if args.files < 1 or args.size < 8 or args.workers < 1:
        parser.error("--files and --workers must be at least 1, --size at least 8")

    root = Path(tempfile.mkdtemp(prefix="imagex-batch-"))
    try:
        files = root / "files"
        print(f"writing {args.files} FITS files of {args.size}x{args.size} float32 ...", flush=True)
        started = time.perf_counter()
        paths = write_files(files, args.files, args.size, args.workers)
        megabytes = sum(path.stat().st_size for path in paths) / 1e6
        print(f"  {megabytes:.0f} MB in {time.perf_counter() - started:.1f} s", flush=True)

        header_reads(paths[:20])  # import and warm up astropy outside the timing
        floor = header_reads(paths)
        survey = "on" if args.hips else "off"
        print(f"running imagex ingest --workers {args.workers} (HiPS survey {survey}) ...", flush=True)
        count = len(paths)
        wall, queue, searchable, line, user, system = run_ingest(
            files, root / "var", args.workers, args.hips, count, args.two_phase_above,
            args.catalogue_first_from)
        print(f"  {line}")

        floor_rate, wall_rate, queue_rate = count / floor, count / wall, count / queue
        print(f"bare astropy fits.getheader        : {floor_rate:9.0f} files/s  ({floor:.2f} s)")
        if searchable is not None:
            print(f"imagex ingest, every file found    : {count / searchable:9.1f} files/s  "
                  f"({searchable:.1f} s)  ratio {searchable / floor:.1f}x")
        print(f"imagex ingest, whole command       : {wall_rate:9.1f} files/s  ({wall:.1f} s)")
        print(f"imagex ingest, queue (its summary) : {queue_rate:9.1f} files/s  ({queue:.1f} s)")
        print(f"imagex ingest, CPU of its processes: {(user + system) / count * 1e3:9.1f} ms a file  "
              f"({user:.1f} s user, {system:.1f} s system: steadier than the wall time on a shared machine)")
        print(f"ratio header reads / whole command : {floor_rate / wall_rate:9.1f}x")
        print(f"ratio header reads / queue         : {floor_rate / queue_rate:9.1f}x")
    finally:
        if args.keep:
            print(f"kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
