"""Benchmark: an 8192x8192 float32 FITS file through ImageX's pipeline to a full-resolution Deep Zoom
pyramid, against bare libvips dzsave of the same image already scaled to 8 bits, in the same run.

    .venv/bin/python bench/tiling.py [--size 8192] [--repeat 3]

Prints seconds for each and the ratios (target for the pixel path: <= 1.3x).
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyvips
from astropy.io import fits

from app.archive import Archive
from app.ingest.jobs import JobRunner
from app.ingest.scan import job_for
from app.ingest.tiling import render_file
from app.samples import FIELD_DEC, FIELD_RA, celestial_wcs, star_field
from app.settings import Settings
from app.tiles.pyramid import OVERLAP, TILE_SIZE

QUALITY = 85


def timed(repeat: int, setup: Callable[[], None], run: Callable[[], None]) -> list[float]:
    times = []
    for _ in range(repeat):
        setup()
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return times


async def full_ingest(data: Path, source: Path, pool_size: int) -> float:
    """Whole job: sniff, SHA-256, pool render, publish, catalog (fresh catalog each time)."""
    shutil.rmtree(data, ignore_errors=True)
    archive = Archive(Settings.load(environ={}, data=str(data), workers=pool_size))
    await archive.startup()
    try:
        await archive.run_in_pool(int, "0")  # start the worker process outside the timing
        [job] = await archive.store.enqueue([job_for(source)])
        runner = JobRunner(archive, concurrency=1, role="bench")
        start = time.perf_counter()
        await runner.run_one()
        elapsed = time.perf_counter() - start
        [done] = await archive.store.get_jobs([job.id])
        if done.state != "done":
            raise SystemExit(f"ingest failed: {done.error}")
        return elapsed
    finally:
        await archive.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--size", type=int, default=8192)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    size = args.size
    pyvips.cache_set_max(0)

    with tempfile.TemporaryDirectory(prefix="imagex-bench-") as tmp:
        root = Path(tmp)
        print(f"writing a {size}x{size} float32 FITS star field ...", flush=True)
        wcs = celestial_wcs(FIELD_RA, FIELD_DEC, size, size, scale_arcsec=0.2)
        data = star_field(wcs, size, size)
        source = root / "field.fits"
        fits.PrimaryHDU(data, wcs.to_header()).writeto(source)

        # the baseline's input: the same picture already scaled to 8 bits, as a libvips file on disk
        low, high = np.percentile(data[::8, ::8], [0.5, 99.5])
        scaled = np.clip((data - low) * (255.0 / (high - low)), 0, 255).astype(np.uint8)[::-1]
        eight_bit = root / "scaled.v"
        pyvips.Image.new_from_memory(np.ascontiguousarray(scaled).data, size, size, 1, "uchar").write_to_file(
            str(eight_bit))
        del data, scaled

        out = root / "out"

        def clean() -> None:
            shutil.rmtree(out, ignore_errors=True)
            out.mkdir()

        def bare() -> None:
            pyvips.Image.new_from_file(str(eight_bit)).dzsave(
                str(out / "image"), tile_size=TILE_SIZE, overlap=OVERLAP, depth="onepixel",
                suffix=f".jpeg[Q={QUALITY},strip]", layout="dz")

        def ours() -> None:
            render_file(str(source), str(out), {}, 10**9, QUALITY)

        # interleave so that both see the same machine state
        bare_times, our_times = [], []
        for _ in range(args.repeat):
            bare_times += timed(1, clean, bare)
            our_times += timed(1, clean, ours)
        full_times = [asyncio.run(full_ingest(root / "var", source, 1)) for _ in range(args.repeat)]

    base = statistics.median(bare_times)
    pixel = statistics.median(our_times)
    full = statistics.median(full_times)
    print(f"bare vips dzsave of the 8-bit image : {base:6.2f} s  (runs: {_runs(bare_times)})")
    print(f"ImageX read + scale + tile (FITS)   : {pixel:6.2f} s  (runs: {_runs(our_times)})")
    print(f"ImageX whole ingest job (+SHA-256, catalog, publish, pool): {full:6.2f} s")
    print(f"ratio pixel path / bare dzsave      : {pixel / base:5.2f}x   (target <= 1.30x)")
    print(f"ratio whole job  / bare dzsave      : {full / base:5.2f}x")


def _runs(times: list[float]) -> str:
    return ", ".join(f"{t:.2f}" for t in times)


if __name__ == "__main__":
    main()
