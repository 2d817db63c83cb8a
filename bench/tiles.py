"""Benchmark: tile throughput over loopback, 64 connections on one ~36 KB tile, in one run:

    nginx static           nginx serving the file, no check (the ceiling of any front)
    nginx + token checks   the site `imagex nginx-config` writes (njs checks the signed token)
    nginx + empty njs      the same tile location with an njs function that checks nothing (what any
                           per-request njs costs with this nginx: the ceiling of the row above)
    imagex serve           the real server, direct (the thin ASGI tile layer in front of Quart)
    bare ASGI              a dozen-line ASGI file server under the same Hypercorn (the in-process ceiling),
                           answering with the headers ImageX's answer carries (security headers, ETag,
                           Cache-Control: every tile answer must send them, and Hypercorn's h11 checks
                           each one), so it does all the work ImageX must do but the token check

    .venv/bin/python bench/tiles.py [--seconds 5] [--rounds 2] [--connections 64]

Needs Debian's nginx, libnginx-mod-http-js and wrk (apt-get install nginx-light libnginx-mod-http-js wrk).
Each server is loaded by `wrk` for a bounded time, rounds interleaved, best round kept. Targets: nginx with
token checks >= 80 % of nginx static; imagex serve >= 90 % of the bare ASGI server.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from astropy.io import fits

from app.samples import FIELD_DEC, FIELD_RA, celestial_wcs, star_field

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the test helpers that run nginx
from tests.deploy import nginx
from tests.processes import free_port, stop

BIN = Path(sys.executable).parent
TARGET_BYTES = 36_000

# The bare ASGI server: one file's bytes for every request, read per request as the tile layer does, with
# the headers given (as JSON) besides its length.
BARE = '''
import asyncio, json, os, sys
from hypercorn.asyncio import serve
from hypercorn.config import Config
PATH = sys.argv[2]
HEADERS = [(name.encode(), value.encode()) for name, value in json.loads(sys.argv[3])]
async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    descriptor = os.open(PATH, os.O_RDONLY)
    try:
        body = os.pread(descriptor, os.fstat(descriptor).st_size, 0)
    finally:
        os.close(descriptor)
    await send({"type": "http.response.start", "status": 200, "headers": [
        *HEADERS, (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
config = Config()
config.bind = [f"127.0.0.1:{sys.argv[1]}"]
config.accesslog = None
asyncio.run(serve(app, config))
'''


def wait_for(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 90
    while True:
        try:
            urllib.request.urlopen(url, timeout=2).close()
            return
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"{url} did not answer: {log.read_text()[-2000:]}") from None
            time.sleep(0.2)


def load(url: str, seconds: int, connections: int) -> float:
    """Requests per second `wrk` measures (non-2xx/3xx answers count as a failure)."""
    done = subprocess.run(["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--latency", url],
                          capture_output=True, text=True, timeout=seconds + 60)
    if done.returncode != 0 or "Non-2xx" in done.stdout or "Socket errors" in done.stdout:
        raise SystemExit(f"wrk {url}:\n{done.stdout}{done.stderr}")
    match = re.search(r"Requests/sec:\s+([\d.]+)", done.stdout)
    if not match:
        raise SystemExit(f"wrk {url}: no rate in\n{done.stdout}")
    return float(match.group(1))


# The floor of any check in njs: the function nginx calls for each tile only names the file.
FLOOR_JS = """function path(r) {
    r.variables.imagex_floor_cache = 'public, max-age=3600, immutable';
    return '@PATH@';
}
export default { path };
"""


def floor_site(root: Path, tiles: Path, tile: Path, port: int) -> Path:
    """A site whose tile location is the generated one's, with a JavaScript function that checks nothing."""
    (root / "floor.js").write_text(FLOOR_JS.replace("@PATH@", "/" + tile.relative_to(tiles).as_posix()))
    site = root / "floor.conf"
    site.write_text(f"""js_import imagex_floor from {root / 'floor.js'};
js_set $imagex_floor_tile imagex_floor.path;
js_var $imagex_floor_cache;
server {{
    listen 127.0.0.1:{port};
    location /tiles/ {{
        root {tiles};
        try_files $imagex_floor_tile =404;
        sendfile on;
        tcp_nopush on;
        etag on;
        types {{ image/jpeg jpeg; }}
        add_header Cache-Control $imagex_floor_cache;
    }}
}}
""")
    return site


def closest_tile(folder: Path) -> Path:
    files = list((folder / "image_files").glob("*/*.jpeg"))
    return min(files, key=lambda path: abs(path.stat().st_size - TARGET_BYTES))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--connections", type=int, default=64)
    args = parser.parse_args()
    if nginx.missing() or shutil.which("wrk") is None:
        raise SystemExit(nginx.missing() or "wrk is not installed (apt-get install wrk)")
    with tempfile.TemporaryDirectory(prefix="imagex-bench-tiles-") as temporary:
        run(Path(temporary), args.seconds, args.rounds, args.connections)


def run(root: Path, seconds: int, rounds: int, connections: int) -> None:
    data = root / "var"
    size = 2048
    wcs = celestial_wcs(FIELD_RA, FIELD_DEC, size, size)
    fits.PrimaryHDU(star_field(wcs, size, size, seed=3), wcs.to_header()).writeto(root / "field.fits")
    direct, front, plain, bare, empty = free_port(), free_port(), free_port(), free_port(), free_port()
    env = {key: value for key, value in os.environ.items() if not key.startswith("IMAGEX_")}
    env.update(IMAGEX_DATA=str(data), IMAGEX_WORKERS="1", IMAGEX_PORT=str(direct), IMAGEX_HOST="127.0.0.1")
    subprocess.run([str(BIN / "imagex"), "ingest", "--no-progress", "--visibility", "public",
                    str(root / "field.fits")], env=env, check=True, capture_output=True, timeout=600)
    subprocess.run([str(BIN / "imagex"), "nginx-config", "--output", str(root / "conf"), "--listen",
                    f"127.0.0.1:{front}"], env=env, check=True, capture_output=True, timeout=60)
    sites = root / "conf" / "sites.conf"
    sites.write_text(f"""include {root / 'conf' / 'imagex.conf'};
server {{
    listen 127.0.0.1:{plain};
    location / {{
        root {data / 'tiles'};
        sendfile on;
        tcp_nopush on;
        types {{ image/jpeg jpeg; }}
    }}
}}
""")
    processes: list[subprocess.Popen[bytes]] = []
    try:
        log = root / "serve.log"
        with log.open("wb") as output:
            processes.append(subprocess.Popen([str(BIN / "imagex"), "serve"], env=env, stdout=output,
                                              stderr=subprocess.STDOUT))
        wait_for(f"http://127.0.0.1:{direct}/healthz", processes[-1], log)
        with urllib.request.urlopen(f"http://127.0.0.1:{direct}/api/images", timeout=10) as response:
            [image] = json.loads(response.read())["images"]
        base = image["dzi_url"].removesuffix("/image.dzi")
        [folder] = [path for path in (data / "tiles").glob(f"*/{image['id']}/*") if path.is_dir()]
        tile = closest_tile(folder)
        name = tile.relative_to(folder).as_posix()
        with urllib.request.urlopen(f"http://127.0.0.1:{direct}{base}/{name}", timeout=10) as response:
            headers = [(key.lower(), value) for key, value in response.getheaders()
                       if key.lower() not in ("content-length", "date", "server", "connection")]
        bare_log = root / "bare.log"
        with bare_log.open("wb") as output:
            processes.append(subprocess.Popen([sys.executable, "-c", BARE, str(bare), str(tile),
                                               json.dumps(headers)],
                                              stdout=output, stderr=subprocess.STDOUT))
        wait_for(f"http://127.0.0.1:{bare}/", processes[-1], bare_log)
        floor = floor_site(root, data / "tiles", tile, empty)
        with nginx.running(root / "nginx", sites, f"http://127.0.0.1:{plain}/", workers=1), \
                nginx.running(root / "nginx-floor", floor, f"http://127.0.0.1:{empty}/", workers=1):
            urls = {
                "nginx static": f"http://127.0.0.1:{plain}/{tile.relative_to(data / 'tiles').as_posix()}",
                "nginx + token checks": f"http://127.0.0.1:{front}{base}/{name}",
                "nginx + empty njs": f"http://127.0.0.1:{empty}{base}/{name}",
                "imagex serve": f"http://127.0.0.1:{direct}{base}/{name}",
                "bare ASGI (Hypercorn)": f"http://127.0.0.1:{bare}/{name}",
            }
            bodies = set()
            for url in urls.values():
                with urllib.request.urlopen(url, timeout=10) as response:
                    bodies.add(response.read())
            if len(bodies) != 1:
                raise SystemExit("the servers do not answer the same bytes")
            print(f"tile {name}: {tile.stat().st_size:,} bytes; {connections} connections, {seconds:g} s per "
                  f"run, best of {rounds} interleaved rounds; {os.cpu_count()} cores, load "
                  f"{os.getloadavg()[0]:.1f}")
            best = dict.fromkeys(urls, 0.0)
            for _ in range(rounds):
                for label, url in urls.items():
                    best[label] = max(best[label], load(url, seconds, connections))
            for label, rate in best.items():
                print(f"  {label:24s} {rate:9,.0f} tiles/s")
            checks = best["nginx + token checks"] / best["nginx static"]
            served = best["imagex serve"] / best["bare ASGI (Hypercorn)"]
            empty_js = best["nginx + empty njs"] / best["nginx static"]
            print(f"nginx + token checks / nginx static : {checks:6.1%}  (target >= 80 %)")
            print(f"nginx + empty njs / nginx static    : {empty_js:6.1%}  (the most any njs check reaches)")
            print(f"imagex serve / bare ASGI            : {served:6.1%}  (target >= 90 %)")
    finally:
        for process in processes:
            stop(process)


if __name__ == "__main__":
    main()
