"""Benchmark: dynamic tiles rendered from the science pyramid (cold and cached) against the static Deep Zoom
tile, all through the real tile route (in-process Quart client, the real process pool), in the same run.

    .venv/bin/python bench/render.py [--size 4096] [--tiles 60]

A star field with noise (float32 FITS with a TAN WCS) is ingested by the real job queue, then tiles are
asked one at a time. Prints median and p95 in milliseconds and the ratios against the static tile.
Target: cold dynamic tile < 25 ms median.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from astropy.io import fits

from app import create_app
from app.archive import Archive
from app.ingest.jobs import JobRunner
from app.ingest.scan import job_for
from app.samples import FIELD_DEC, FIELD_RA, celestial_wcs, star_field
from app.settings import Settings
from app.tiles import render
from app.tiles.pyramid import TILE_SIZE


def tiles_of(size: int, level: int) -> list[tuple[int, int]]:
    width, height = render.level_size(size, size, level)
    return [(col, row) for col in range(-(-width // TILE_SIZE)) for row in range(-(-height // TILE_SIZE))]


async def timed(ask: Callable[[str], Awaitable[Any]], paths: list[str]) -> list[float]:
    times = []
    for path in paths:
        start = time.perf_counter()
        response = await ask(path)
        body = await response.get_data()
        times.append((time.perf_counter() - start) * 1000)
        if response.status_code != 200 or not body:
            raise SystemExit(f"{path}: {response.status_code} {body[:200]!r}")
    return times


def summary(name: str, times: list[float]) -> float:
    ordered = sorted(times)
    median = statistics.median(ordered)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    print(f"{name:52s} median {median:7.2f} ms   p95 {p95:7.2f} ms   (n={len(times)})")
    return median


async def bench(root: Path, size: int, count: int) -> None:
    print(f"writing a {size}x{size} float32 FITS star field ...", flush=True)
    wcs = celestial_wcs(FIELD_RA, FIELD_DEC, size, size, scale_arcsec=0.2)
    source = root / "field.fits"
    fits.PrimaryHDU(star_field(wcs, size, size), wcs.to_header()).writeto(source)
    settings = Settings.load(environ={}, data=str(root / "var"), workers=2)

    archive = Archive(settings)
    await archive.startup()
    try:
        await archive.run_in_pool(int, "0")
        [job] = await archive.store.enqueue([job_for(source)])
        start = time.perf_counter()
        await JobRunner(archive, concurrency=1, role="bench").run_one()
        print(f"ingest (DZI + science pyramid): {time.perf_counter() - start:.2f} s")
        [done] = await archive.store.get_jobs([job.id])
        if done.state != "done":
            raise SystemExit(f"ingest failed: {done.error}")
        [image_id] = done.image_ids
    finally:
        await archive.close()

    app = create_app(settings, run_jobs=False)
    async with app.test_app() as test_app:
        client = test_app.test_client()
        served = app.extensions["imagex"]
        await served.run_in_pool(int, "0")  # start the pool's workers outside the timing
        await served.run_in_pool(int, "0")
        base = f"/tiles/{image_id}/{served.tile_token(image_id)}"
        deepest = render.max_level(size, size)
        rng = random.Random(1)
        spec = "zscale~asinh~viridis"

        # each worker imports what rendering needs (astropy.visualization) once: not part of the timing
        await asyncio.gather(*(client.get(f"{base}/display/{s}/image_files/{deepest}/1_1.jpeg")
                               for s in ("minmax~linear~grey", "zscale~linear~grey")))
        first_spec = await timed(client.get, [f"{base}/display/{s}/image_files/{deepest}/0_0.jpeg"
                                              for s in ("p99.5~linear~grey", "minmax~sqrt~magma",
                                                        "zscale~histeq~heat")])
        await timed(client.get, [f"{base}/display/{spec}/image_files/{deepest}/0_0.jpeg"])  # limits
        cold: dict[int, list[float]] = {}
        asked: list[str] = []
        for level in (deepest, deepest - 1, deepest - 2, deepest - 4, deepest - 8):
            tiles = [t for t in tiles_of(size, level) if level != deepest or t != (0, 0)]
            chosen = rng.sample(tiles, min(len(tiles), count))
            paths = [f"{base}/display/{spec}/image_files/{level}/{col}_{row}.jpeg" for col, row in chosen]
            cold[level] = await timed(client.get, paths)
            asked += paths
        ahe = "zscale~ahisteq~grey"
        await timed(client.get, [f"{base}/display/{ahe}/image_files/{deepest}/0_0.jpeg"])
        ahe_paths = [f"{base}/display/{ahe}/image_files/{deepest}/{col}_{row}.jpeg"
                     for col, row in rng.sample(tiles_of(size, deepest)[1:], count)]
        cold_ahe = await timed(client.get, ahe_paths)
        cached = await timed(client.get, rng.sample(asked, min(len(asked), 3 * count)))
        static_paths = [path.replace(f"/display/{spec}/", "/") for path in asked]
        static = await timed(client.get, rng.sample(static_paths, min(len(static_paths), 3 * count)))

    print()
    print(f"{size}x{size} float32, tiles of {TILE_SIZE} px, {settings.pool_size} pool workers, one request "
          "at a time")
    static_median = summary("static DZI tile", static)
    cached_median = summary("dynamic tile, cached", cached)
    all_cold = [t for times in cold.values() for t in times]
    for level, times in cold.items():
        summary(f"dynamic tile, cold, level {level}" + (" (full resolution)" if level == deepest else ""),
                times)
    cold_median = summary("dynamic tile, cold, all levels", all_cold)
    summary("dynamic tile, cold, ahisteq, full resolution", cold_ahe)
    summary("first tile of a new spec (limits measured)", first_spec)
    print()
    print(f"ratio cold dynamic / static   : {cold_median / static_median:6.1f}x")
    print(f"ratio cached dynamic / static : {cached_median / static_median:6.2f}x")
    verdict = "met" if cold_median < 25 else "NOT met"
    print(f"cold dynamic tile median {cold_median:.1f} ms: target < 25 ms {verdict}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--size", type=int, default=4096)
    parser.add_argument("--tiles", type=int, default=60, help="tiles timed per level and kind")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="imagex-bench-") as tmp:
        asyncio.run(bench(Path(tmp), args.size, args.tiles))


if __name__ == "__main__":
    main()
