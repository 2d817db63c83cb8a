"""Benchmark: the live update of the public HiPS survey when one image arrives, for images of growing area
in a survey that already holds other images elsewhere on the sky, against the floor measured in the same
run: astropy's own `world_to_pixel` of as many HEALPix cell centres as the update computed tiles for.

    .venv/bin/python bench/hips.py [--sizes 128,256,512] [--others 8] [--workers 2]
    .venv/bin/python bench/hips.py --rival [--count 50] [--size 2048] [--workers 2]

Prints, for each size, the seconds of the update, the deepest tiles it computed, and the ratio to the floor.
An update should take time in proportion to the image's area (its tiles), not to the survey's size.

With --rival: `count` overlapping images of `size`^2 pixels; the whole survey built from scratch (`imagex
hips rebuild`'s work: FITS, PNG and JPEG tiles, all orders, Allsky, MOC) against reproject's own HiPS writer
on the same images in the same run (`reproject_to_hips` of each image with `reproject_interp`, FITS tiles
only, then their tiles merged, the later image on top: reproject's `coadd_hips` cannot combine FITS tiles;
given as many threads as we have workers), and the live update when one more image arrives (the newest,
overlapping others) against the full rebuild. Targets (issue 15): ours / reproject <= 1; update / rebuild
<= 5%.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from pathlib import Path

import numpy as np
from astropy.io import fits

from app.archive import Archive
from app.hips import geometry
from app.ingest.jobs import JobRunner
from app.ingest.scan import job_for
from app.samples import celestial_wcs
from app.settings import Settings

SCALE = 2.0  # arcsec per pixel


def write(folder: Path, name: str, ra: float, dec: float, size: int) -> Path:
    wcs = celestial_wcs(ra, dec, size, size, scale_arcsec=SCALE)
    path = folder / f"{name}.fits"
    data = np.random.default_rng(size).normal(100.0, 5.0, (size, size)).astype(np.float32)
    fits.PrimaryHDU(data, wcs.to_header()).writeto(path)
    return path


async def ingest(archive: Archive, path: Path) -> str:
    """Ingest one file as a public image and wait for the survey's update; its image id."""
    job = job_for(path, owner="")
    job.options["visibility"] = "public"
    [queued] = await archive.store.enqueue([job])
    runner = JobRunner(archive, concurrency=1, role="bench")
    while await runner.run_one():
        pass
    await archive.hips.settle()
    [done] = await archive.store.get_jobs([queued.id])
    return done.image_ids[0]


def floor(tiles: int) -> float:
    """Seconds astropy takes to place the centres of `tiles` deepest tiles' cells on an image."""
    wcs = celestial_wcs(0.0, 0.0, 512, 512, scale_arcsec=SCALE)
    lon, lat = geometry.tile_lonlat(geometry.order_for_scale(SCALE), 0)
    started = time.perf_counter()
    for _ in range(tiles):
        wcs.all_world2pix(lon.ravel(), lat.ravel(), 0)
    return time.perf_counter() - started


async def main(sizes: list[int], others: int, workers: int) -> None:
    with tempfile.TemporaryDirectory() as temporary:
        root = Path(temporary)
        settings = Settings.load(environ={}, data=str(root / "var"), workers=workers, hips=True)
        archive = Archive(settings)
        await archive.startup()
        try:
            for index in range(others):
                await ingest(archive, write(root, f"other{index}", 30.0 * index, -30.0, 256))
            index_file = archive.hips.folder("public") / ".index.json"
            print(f"survey: {others} image(s), order {json.loads(index_file.read_text())['order']}")
            print(f"{'size':>6} {'seconds':>8} {'tiles':>6} {'s/tile':>7} {'floor s':>8} {'ratio':>6}")
            for size in sizes:
                path = write(root, f"image{size}", 150.0, 2.0 + size / 3600, size)
                image = await archive.store.get_image(await ingest(archive, path))
                assert image is not None
                # the update of an image that arrives, measured alone: the same image once more
                started = time.perf_counter()
                archive.hips.refresh([image])
                await archive.hips.settle()
                seconds = time.perf_counter() - started
                members = json.loads(index_file.read_text())["members"]
                tiles = next(len(m["tiles"]) for m in members if m["original"] == str(path))
                base = floor(tiles)
                print(f"{size:>6} {seconds:>8.2f} {tiles:>6} {seconds / tiles:>7.3f} {base:>8.2f} "
                      f"{seconds / base:>6.1f}")
        finally:
            await archive.close()


def merge(folders: list[Path], into: Path) -> None:
    """The FITS tiles of several single-image surveys as one, the later image on top where it has values
    (what `coadd_hips` does for PNG tiles; it refuses FITS)."""
    for folder in folders:
        for tile in folder.glob("Norder*/Dir*/Npix*.fits"):
            target = into / tile.relative_to(folder)
            data = fits.getdata(tile)
            if target.exists():
                below = fits.getdata(target)
                data = np.where(np.isfinite(data), data, below)
            target.parent.mkdir(parents=True, exist_ok=True)
            fits.PrimaryHDU(data).writeto(target, overwrite=True)


async def rival(count: int, size: int, workers: int) -> None:
    from reproject import reproject_interp
    from reproject.hips import reproject_to_hips

    with tempfile.TemporaryDirectory() as temporary:
        root = Path(temporary)
        # overlapping fields: a grid of centres a third of a field apart around (150, 2)
        step = size * SCALE / 3600 / 3
        paths = [write(root, f"field{index:03d}", 150.0 + step * (index % 7), 2.0 + step * (index // 7), size)
                 for index in range(count + 1)]
        paths, arriving = paths[:-1], paths[-1]  # the last arrives after the survey is built
        settings = Settings.load(environ={}, data=str(root / "var"), workers=workers, hips=False)
        archive = Archive(settings)
        await archive.startup()
        try:
            for path in paths:  # no survey yet: hips=False
                await ingest(archive, path)
            hips_on = Settings.load(environ={}, data=str(root / "var"), workers=workers, hips=True)
            archive.settings = hips_on
            started = time.perf_counter()
            await archive.hips.rebuild()  # the public survey: the one reproject's is compared with
            ours = time.perf_counter() - started
            started = time.perf_counter()
            surveys = await archive.hips.rebuild_all()  # a public image is in the registered survey too
            everything = time.perf_counter() - started
            order = json.loads((archive.hips.folder("public") / ".index.json").read_text())["order"]
            archive.settings = settings  # the newcomer catalogued with the survey off, then updated alone
            image = await archive.store.get_image(await ingest(archive, arriving))
            assert image is not None
            archive.settings = hips_on
            started = time.perf_counter()
            archive.hips.refresh([image])
            await archive.hips.settle()
            update = time.perf_counter() - started
        finally:
            await archive.close()
        started = time.perf_counter()
        folders = []
        for index, path in enumerate(paths):
            folders.append(root / f"reproject{index:03d}")
            reproject_to_hips(str(path), coord_system_out="equatorial", reproject_function=reproject_interp,
                              output_directory=str(folders[-1]), level=order, threads=workers)
        merge(folders, root / "reproject-merged")
        theirs = time.perf_counter() - started
    print(f"{count} images of {size}^2, order {order}, {workers} worker(s)")
    print(f"whole survey: ours {ours:.1f} s (FITS+PNG+JPEG), reproject {theirs:.1f} s (FITS): "
          f"ratio {ours / theirs:.2f} (target <= 1)")
    print(f"live update of one image in its {len(surveys)} surveys ({', '.join(surveys)}): {update:.2f} s, "
          f"{100 * update / everything:.1f}% of rebuilding them ({everything:.1f} s; target <= 5%)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="128,256,512")
    parser.add_argument("--others", type=int, default=8)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--rival", action="store_true", help="the whole survey against reproject's writer")
    parser.add_argument("--count", type=int, default=50)
    parser.add_argument("--size", type=int, default=2048)
    args = parser.parse_args()
    if args.rival:
        asyncio.run(rival(args.count, args.size, args.workers))
    else:
        asyncio.run(main([int(size) for size in args.sizes.split(",")], args.others, args.workers))
