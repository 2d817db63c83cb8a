"""Benchmark: 200 concurrent tile clients against a real `imagex serve` on loopback, first alone, then while
the same server ingests a batch of 50 FITS files, in the same run.

    .venv/bin/python bench/load.py [--clients 200] [--seconds 20] [--batch 50] [--workers 2]

The load comes from wrk (Debian: `apt-get install wrk`) with a Lua script that rotates over every tile of
the static pyramids of a few ingested images (signed tile URLs, as a viewer page hands them out), so the
requests spread over hundreds of files as a real audience's would. Each phase lasts `--seconds` (bounded).
For each phase it prints requests/s, the p50 and p99 latency, and the errors (socket errors, timeouts and
answers other than 2xx/3xx), which must be 0; then the server's resident memory (VmRSS) and its pool
processes' before and after, and how many of the batch's jobs the server finished while under load. Exit
status 1 when any request failed.

Measured before the fleet work (2-core machine, shared): about 1,400 requests/s with p99 235 ms without
ingest, p99 576 ms while ingesting.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from astropy.io import fits

from app.archive import Archive
from app.ingest.scan import job_for, walk
from app.samples import FIELD_DEC, FIELD_RA, celestial_wcs, star_field
from app.settings import Settings

IMAGEX = Path(sys.executable).parent / "imagex"
VIEWED = 4  # images whose tiles the clients ask for
VIEWED_SIZE = 2048  # pixels on a side: 12 levels, ~110 tiles each
BATCH_SIZE = 768  # pixels on a side of each batch file

LUA = r"""
-- rotates over the tile URLs listed in the file given after `--`; each thread starts at a random place
local urls = {}
local index = 0

function init(args)
  for line in io.lines(args[1]) do urls[#urls + 1] = line end
  math.randomseed(os.time() + tonumber(tostring({}):sub(8), 16))
  index = math.random(#urls)
end

function request()
  index = index % #urls + 1
  return wrk.format("GET", urls[index])
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'RESULT {"requests": %d, "duration_us": %d, "bytes": %d, "connect": %d, "read": %d, "write": %d, ' ..
    '"status": %d, "timeout": %d, "p50_us": %d, "p99_us": %d, "max_us": %d}\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(99), latency.max))
end
"""


def write_fits(path: Path, size: int, seed: int) -> Path:
    """A float32 star field with a real TAN WCS."""
    wcs = celestial_wcs(FIELD_RA, FIELD_DEC, size, size)
    pixels = star_field(wcs, size, size, seed=seed)
    fits.PrimaryHDU(pixels, wcs.to_header()).writeto(path, overwrite=True)
    return path


def ingest(data: Path, folder: Path) -> None:
    """`imagex ingest` of `folder` (public), before the server starts."""
    env = {**os.environ, "IMAGEX_DATA": str(data)}
    subprocess.run([str(IMAGEX), "ingest", "--visibility", "public", "--no-progress", str(folder)], env=env,
                   check=True, stdout=subprocess.DEVNULL)


async def tile_urls(data: Path) -> list[str]:
    """Every static tile of every catalogued image, as signed URLs (what the viewer page hands out)."""
    archive = Archive(Settings.load(environ={}, data=str(data), workers=1))
    await archive.startup()
    try:
        urls = []
        for image in await archive.store.find_images(limit=1000):
            folder = archive.tile_folder(image.id)
            token = archive.tile_token(image.id)
            for tile in sorted((folder / "image_files").glob("*/*.jpeg")):
                urls.append(f"/tiles/{image.id}/{token}/{tile.relative_to(folder)}")
        return urls
    finally:
        await archive.close()


async def queue(data: Path, folder: Path) -> list[str]:
    """Queue the batch in the server's catalog: the server's own job runner ingests it."""
    archive = Archive(Settings.load(environ={}, data=str(data), workers=1))
    await archive.startup()
    try:
        jobs = [job_for(path) for path in walk([folder])]
        for job in jobs:
            job.options["visibility"] = "public"
        return [job.id for job in await archive.store.enqueue(jobs)]
    finally:
        await archive.close()


async def finished(data: Path, ids: list[str]) -> int:
    archive = Archive(Settings.load(environ={}, data=str(data), workers=1))
    await archive.startup()
    try:
        return sum(job.state in ("done", "failed") for job in await archive.store.get_jobs(ids))
    finally:
        await archive.close()


# the server and its memory --------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def rss_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def children(pid: int) -> list[int]:
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*/children"):
        try:
            found += [int(child) for child in task.read_text().split()]
        except OSError:
            continue
    return found


def memory(pid: int) -> tuple[float, float, int]:
    """(server VmRSS MiB, its children's summed MiB, how many children)."""
    kids = children(pid)
    return rss_kib(pid) / 1024, sum(rss_kib(kid) for kid in kids) / 1024, len(kids)


def start_server(data: Path, port: int, workers: int, log: Path) -> subprocess.Popen[bytes]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("IMAGEX_")}
    env.update(IMAGEX_DATA=str(data), IMAGEX_PORT=str(port), IMAGEX_HOST="127.0.0.1",
               IMAGEX_WORKERS=str(workers))
    process = subprocess.Popen([str(IMAGEX), "serve"], env=env, stdout=subprocess.DEVNULL,
                               stderr=log.open("wb"))
    deadline = time.monotonic() + 60
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2):
                return process
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                raise SystemExit("imagex serve did not start:\n" + log.read_text()) from None
            time.sleep(0.2)


def wrk(port: int, clients: int, seconds: float, script: Path, urls: Path) -> dict[str, Any]:
    """One wrk run; its `done` hook's figures."""
    threads = max(1, min(os.cpu_count() or 1, clients))
    result = subprocess.run(
        ["wrk", f"-t{threads}", f"-c{clients}", f"-d{seconds:g}s", "--timeout", "10s", "-s", str(script),
         f"http://127.0.0.1:{port}", "--", str(urls)],
        capture_output=True, text=True, timeout=seconds + 60, check=True)
    line = next((line for line in result.stdout.splitlines() if line.startswith("RESULT ")), None)
    if line is None:
        raise SystemExit(f"wrk printed no result:\n{result.stdout}\n{result.stderr}")
    figures: dict[str, Any] = json.loads(line.removeprefix("RESULT "))
    return figures


def report(name: str, figures: dict[str, Any]) -> int:
    seconds = figures["duration_us"] / 1e6
    kinds = ("connect", "read", "write", "status", "timeout")
    errors = int(sum(figures[kind] for kind in kinds))
    detail = ", ".join(f"{kind} {figures[kind]}" for kind in kinds if figures[kind])
    print(f"{name:<22} {figures['requests'] / seconds:>8,.0f} req/s   "
          f"p50 {figures['p50_us'] / 1000:>6.1f} ms   p99 {figures['p99_us'] / 1000:>6.1f} ms   "
          f"max {figures['max_us'] / 1000:>7.1f} ms   "
          f"{figures['requests']:,} requests, {figures['bytes'] / 1e6:,.0f} MB   "
          f"errors {errors}{f' ({detail})' if detail else ''} {'ok' if errors == 0 else 'FAILED'}")
    return errors


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=200, help="concurrent connections (default 200)")
    parser.add_argument("--seconds", type=float, default=20.0, help="length of each phase (default 20)")
    parser.add_argument("--batch", type=int, default=50, help="FITS files ingested under load (default 50)")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                        help="the server's pool processes (default: one per core)")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("bench/load.py needs wrk: apt-get install wrk")
    root = Path(tempfile.mkdtemp(prefix="imagex-load-"))
    server: subprocess.Popen[bytes] | None = None
    try:
        data, viewed, batch = root / "var", root / "viewed", root / "batch"
        viewed.mkdir()
        batch.mkdir()
        for n in range(VIEWED):
            write_fits(viewed / f"viewed{n}.fits", VIEWED_SIZE, seed=100 + n)
        for n in range(args.batch):
            write_fits(batch / f"batch{n:03d}.fits", BATCH_SIZE, seed=1000 + n)
        ingest(data, viewed)
        urls = asyncio.run(tile_urls(data))
        (root / "urls.txt").write_text("".join(f"{url}\n" for url in urls))
        (root / "rotate.lua").write_text(LUA)
        port = free_port()
        server = start_server(data, port, args.workers, root / "serve.log")
        print(f"imagex serve (pool of {args.workers}) on 127.0.0.1:{port}; {args.clients} clients rotating "
              f"over {len(urls)} tiles of {VIEWED} images; {args.seconds:g} s per phase")
        # warm: every tile once, so both phases read the page cache alike
        wrk(port, min(args.clients, 20), 2, root / "rotate.lua", root / "urls.txt")
        before = memory(server.pid)
        print(f"server RSS before      {before[0]:6.1f} MiB; pool {before[1]:6.1f} MiB "
              f"({before[2]} processes)")
        errors = report("tiles alone", wrk(port, args.clients, args.seconds, root / "rotate.lua",
                                           root / "urls.txt"))
        ids = asyncio.run(queue(data, batch))
        loaded = wrk(port, args.clients, args.seconds, root / "rotate.lua", root / "urls.txt")
        done = asyncio.run(finished(data, ids))
        errors += report(f"tiles + ingest of {len(ids)}", loaded)
        print(f"{done} of {len(ids)} batch jobs finished during the loaded phase")
        after = memory(server.pid)
        print(f"server RSS after       {after[0]:6.1f} MiB; pool {after[1]:6.1f} MiB ({after[2]} processes) "
              f"(change {after[0] - before[0]:+.1f} MiB, pool {after[1] - before[1]:+.1f} MiB)")
        print("0 errors: ok" if errors == 0 else f"{errors} errors: FAILED")
        return 0 if errors == 0 else 1
    finally:
        if server is not None:
            server.terminate()
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
