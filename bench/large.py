"""Benchmark: one large float32 FITS image through `imagex ingest` (run as a subprocess, its pool
processes included), against bare `vips dzsave` of the same image already scaled to 8 bits, in the same
run: the floor for any tool that has to write a Deep Zoom pyramid of that many pixels.

    .venv/bin/python bench/large.py [--sizes 8192,16384,32768] [--huge] [--compressed | --gzipped]
                                    [--two-phase-above N] [--keep]

For each size prints seconds, MPix/s, the peak RSS of the whole process tree (the command and every
process it started, summed, sampled every 20 ms), the ratio of ImageX's time to bare dzsave's, and the
seconds until the image was catalogued (found by searches, its thumbnail shown: the harvest of a two-phase
ingest; `--two-phase-above N` sets IMAGEX_TWO_PHASE_ABOVE, so a large N measures the one-phase ingest).
`--huge` adds 65536^2 (16 GB of pixels; needs IMAGEX_MAX_PIXELS raised past the default and the disk room
for about 40 GB). The images are written strip by strip (bounded memory) as a smooth sky with noise.
`--compressed` ingests each image as a RICE tile-compressed `.fz` instead (fpack's default: a tile a row,
quantized floats), written from the plain file by astropy (which holds the image to compress it: the
benchmark's own memory, not measured); bare dzsave still reads the plain file. `--gzipped` ingests a
gzipped copy (`.fits.gz`, level 1), which ImageX unzips into its work folder and streams from there.
"""

from __future__ import annotations

import argparse
import gzip
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

IMAGEX = Path(sys.executable).parent / "imagex"
SUMMARY = re.compile(r"^(\d+) file\(s\) in ([\d.]+) s: (\d+) ingested .*?(\d+) failed\.$", re.MULTILINE)
SEARCHABLE = re.compile(r"^Every file was catalogued \(found by searches\) after ([\d.]+) s", re.MULTILINE)
STRIP_ROWS = 256
PAGE = os.sysconf("SC_PAGE_SIZE")


def write_fits(path: Path, side: int) -> None:
    """A side x side float32 FITS image, written strip by strip after its header."""
    from astropy.io import fits

    header = fits.Header()
    header.update({"SIMPLE": True, "BITPIX": -32, "NAXIS": 2, "NAXIS1": side, "NAXIS2": side,
                   "OBJECT": f"Large bench {side}"})
    rng = np.random.default_rng(side)
    columns = np.linspace(0, 6 * np.pi, side, dtype=np.float32)
    with path.open("wb") as handle:
        handle.write(header.tostring().encode("ascii"))
        for top in range(0, side, STRIP_ROWS):
            rows = min(STRIP_ROWS, side - top)
            sky = 100 + 20 * np.sin(columns)[None, :] + np.float32(top / side * 30)
            strip = (sky + rng.normal(0, 5, (rows, side))).astype(">f4")
            handle.write(strip.tobytes())
        written = handle.tell()
        handle.write(b"\0" * (-written % 2880))


def write_compressed(plain: Path, target: Path) -> None:
    """`plain` as a RICE tile-compressed image in an extension, a tile a row (as fpack writes it)."""
    from astropy.io import fits

    with fits.open(plain, memmap=True) as hdul:
        data, header = hdul[0].data, hdul[0].header
        compressed = fits.CompImageHDU(data, header=header, compression_type="RICE_1",
                                       tile_shape=(1, data.shape[1]))
        fits.HDUList([fits.PrimaryHDU(), compressed]).writeto(target)


class TreeMemory:
    """The peak of the summed RSS of a process and all its descendants, sampled from /proc."""

    def __init__(self, pid: int) -> None:
        self.pid, self.peak, self._stop = pid, 0, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _tree(self) -> list[int]:
        children: dict[int, list[int]] = {}
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                with open(f"/proc/{entry}/stat") as stat:
                    parent = int(stat.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(parent, []).append(int(entry))
        found, queue = [], [self.pid]
        while queue:
            pid = queue.pop()
            found.append(pid)
            queue.extend(children.get(pid, []))
        return found

    def _run(self) -> None:
        while not self._stop.is_set():
            total = 0
            for pid in self._tree():
                try:
                    with open(f"/proc/{pid}/statm") as statm:
                        total += int(statm.read().split()[1]) * PAGE
                except (OSError, IndexError, ValueError):
                    continue
            self.peak = max(self.peak, total)
            self._stop.wait(0.02)

    def stop(self) -> int:
        self._stop.set()
        self._thread.join()
        return self.peak


def run(command: list[str], env: dict[str, str] | None = None) -> tuple[float, int, str]:
    """Seconds, peak tree RSS in bytes and the output of `command`."""
    start = time.perf_counter()
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    memory = TreeMemory(process.pid)
    output, _ = process.communicate()
    seconds = time.perf_counter() - start
    peak = memory.stop()
    if process.returncode != 0:
        raise SystemExit(f"{command[0]} failed ({process.returncode}):\n{output}")
    return seconds, peak, output


def bare_dzsave(source: Path, folder: Path) -> tuple[float, int]:
    """Scale the image to 8 bits once (not timed), then time `vips dzsave` of that 8-bit image."""
    import pyvips
    from astropy.io import fits

    with fits.open(source, memmap=True) as hdul:
        data = hdul[0].data  # big-endian, memory-mapped: libvips swaps the bytes as it goes
        height, width = data.shape
        image = pyvips.Image.new_from_memory(data.data, width, height, 1, "float").byteswap()
    scaled = folder / "scaled.v"
    image.linear(255 / 200, 0).cast("uchar").write_to_file(str(scaled))
    del image
    script = ("import pyvips, sys; pyvips.Image.new_from_file(sys.argv[1], access='sequential')"
              ".dzsave(sys.argv[2], suffix='.jpeg[Q=85]', overlap=1, tile_size=254)")
    seconds, peak, _ = run([sys.executable, "-c", script, str(scaled), str(folder / "bare")])
    scaled.unlink()
    return seconds, peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--sizes", default="8192,16384,32768", help="image sides, comma-separated")
    parser.add_argument("--huge", action="store_true", help="also 65536 x 65536")
    parser.add_argument("--compressed", action="store_true", help="ingest RICE-compressed .fz copies")
    parser.add_argument("--gzipped", action="store_true", help="ingest gzipped .fits.gz copies")
    parser.add_argument("--two-phase-above", type=int, default=None,
                        help="IMAGEX_TWO_PHASE_ABOVE for the ingest (default: the setting's default)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder and print it")
    args = parser.parse_args()
    sides = [int(text) for text in args.sizes.split(",") if text.strip()]
    if args.huge:
        sides.append(65536)
    root = Path(tempfile.mkdtemp(prefix="imagex-large-"))
    rows = []
    try:
        for side in sides:
            folder = root / str(side)
            folder.mkdir()
            source = folder / f"large_{side}.fits"
            print(f"writing {side}x{side} float32 ({side * side * 4 / 1e9:.1f} GB) ...", flush=True)
            write_fits(source, side)
            ingested = source
            if args.compressed:
                ingested = folder / f"large_{side}.fits.fz"
                write_compressed(source, ingested)
                print(f"  compressed to {ingested.stat().st_size / 1e9:.2f} GB", flush=True)
            elif args.gzipped:
                ingested = folder / f"large_{side}.fits.gz"
                with source.open("rb") as plain, gzip.open(ingested, "wb", compresslevel=1) as packed:
                    shutil.copyfileobj(plain, packed, 1 << 20)
                print(f"  gzipped to {ingested.stat().st_size / 1e9:.2f} GB", flush=True)
            env = {key: value for key, value in os.environ.items() if not key.startswith("IMAGEX_")}
            env["IMAGEX_DATA"] = str(folder / "var")
            env["IMAGEX_MAX_PIXELS"] = str(max(side * side, 500_000_000))
            env["IMAGEX_HIPS"] = "false"  # the sky survey is not part of the pixel path measured here
            if args.two_phase_above is not None:
                env["IMAGEX_TWO_PHASE_ABOVE"] = str(args.two_phase_above)
            command = [str(IMAGEX), "ingest", "--no-progress", "--workers", "1", str(ingested)]
            seconds, peak, output = run(command, env)
            match = SUMMARY.search(output)
            if match is None or int(match.group(4)):
                raise SystemExit(f"imagex ingest did not ingest {ingested.name}:\n{output}")
            found = SEARCHABLE.search(output)
            # one phase: catalogued when its pyramids were built
            searchable = float(found.group(1)) if found else seconds
            shutil.rmtree(folder / "var", ignore_errors=True)
            bare_seconds, bare_peak = bare_dzsave(source, folder)
            source.unlink()
            shutil.rmtree(folder, ignore_errors=True)
            mpix = side * side / 1e6
            rows.append((side, seconds, mpix / seconds, peak, bare_seconds, searchable))
            print(f"  imagex ingest {seconds:7.1f} s (catalogued after {searchable:.1f} s), "
                  f"{mpix / seconds:6.1f} MPix/s, peak RSS {peak / 2**30:5.2f} GiB; bare dzsave "
                  f"{bare_seconds:6.1f} s, peak RSS {bare_peak / 2**30:5.2f} GiB", flush=True)
        print()
        print(f"{'size':>12} {'seconds':>8} {'MPix/s':>7} {'peak RSS':>9} {'dzsave s':>9} {'ratio':>6} "
              f"{'found s':>8}")
        for side, seconds, rate, peak, bare_seconds, searchable in rows:
            print(f"{side:>5} x {side:<5} {seconds:8.1f} {rate:7.1f} {peak / 2**30:7.2f} G "
                  f"{bare_seconds:9.1f} {seconds / bare_seconds:5.1f}x {searchable:8.1f}")
    finally:
        if args.keep:
            print(f"kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
