"""Benchmark: a 2 GiB upload over loopback to a real `imagex serve`, against the same bytes received by a bare
socket reader that writes them to a file, in the same run (the floor on this machine).

    .venv/bin/python bench/upload.py [--gib 2] [--repeat 2] [--chunk-kib 1024] [--no-ingest]

The body is generated on the fly from one reusable block of zeros behind a valid FITS header: a
1024x1024x2048 8-bit data cube, so the upload passes the content check and its ingest (the first plane)
is quick. The MB/s figure is the transfer: from the first byte sent to the `201 Created` answer, which
includes the server's checks of the complete file, the move into `uploads/` and queueing the job, but not
the ingest, which is reported on its own line. RSS: the server's resident memory is sampled every 20 ms
during the upload (with its process-pool children, which are idle during a transfer: the job starts after
the answer), and its VmHWM read from /proc before and after. The first upload to a fresh server also
pays for importing astropy (about 20 MiB, once per process), which checks the FITS header of the complete
file; the second run shows the steady state, and its file is a duplicate the ingest recognises.
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

from app.archive import Archive
from app.routes.accounts import create_token
from app.settings import Settings

IMAGEX = Path(sys.executable).parent / "imagex"
BLOCK = 2880
CUBE = (1024, 1024)  # pixels per plane of the data cube; planes fill the requested size


def fits_header(planes: int) -> bytes:
    cards = [f"SIMPLE  = {'T':>20}", f"BITPIX  = {8:20d}", f"NAXIS   = {3:20d}", f"NAXIS1  = {CUBE[0]:20d}",
             f"NAXIS2  = {CUBE[1]:20d}", f"NAXIS3  = {planes:20d}", "OBJECT  = 'Upload benchmark cube'",
             "END"]
    text = "".join(card.ljust(80) for card in cards)
    return text.encode("ascii").ljust(BLOCK, b" ")


def body_size(planes: int) -> int:
    data = CUBE[0] * CUBE[1] * planes
    return BLOCK + -(-data // BLOCK) * BLOCK


def send_body(sock: socket.socket, header: bytes, total: int, chunk: int) -> None:
    """The header, then zeros from one reusable block: nothing of the body is held in memory."""
    sock.sendall(header)
    zeros = memoryview(bytes(chunk))
    left = total - len(header)
    while left > 0:
        step = min(left, chunk)
        sock.sendall(zeros[:step])
        left -= step


# memory of the server ----------------------------------------------------------------------------------
def status_kib(pid: int, field: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
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


def tree_rss_kib(pid: int) -> tuple[int, int]:
    """(server VmRSS, children's VmRSS summed), KiB."""
    return status_kib(pid, "VmRSS"), sum(status_kib(child, "VmRSS") for child in children(pid))


class Sampler(threading.Thread):
    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.peak_server = 0
        self.peak_children = 0
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            server, kids = tree_rss_kib(self.pid)
            self.peak_server = max(self.peak_server, server)
            self.peak_children = max(self.peak_children, kids)
            time.sleep(0.02)


# the server --------------------------------------------------------------------------------------------
async def prepare(data: Path, total: int) -> str:
    """A user with an API token; the site's maximum file size and default quota raised for the body."""
    archive = Archive(Settings.load(environ={}, data=str(data), workers=1))
    await archive.startup()
    try:
        from app.identity import new_user

        user = await new_user(archive, "bench", "bench password 123")
        await archive.store.save_site_settings({"max_file_size": total + 10**9, "default_quota": 4 * total})
        return str((await create_token(archive, user, "benchmark"))["token"])
    finally:
        await archive.close()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def start_server(data: Path, port: int) -> subprocess.Popen[bytes]:
    env = {**os.environ, "IMAGEX_DATA": str(data), "IMAGEX_PORT": str(port), "IMAGEX_WORKERS": "1",
           "IMAGEX_HOST": "127.0.0.1"}
    env.pop("IMAGEX_SAMPLES", None)
    process = subprocess.Popen([str(IMAGEX), "serve"], env=env, stdout=subprocess.DEVNULL,
                               stderr=open(data.parent / "serve.log", "wb"))
    deadline = time.monotonic() + 60
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/images", timeout=2):
                return process
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                raise SystemExit("imagex serve did not start: "
                                 + (data.parent / "serve.log").read_text()) from None
            time.sleep(0.2)


def upload(port: int, token: str, header: bytes, total: int, chunk: int) -> tuple[float, dict[str, Any]]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    connection.putrequest("PUT", "/api/uploads/bench-cube.fits")
    connection.putheader("Authorization", f"Bearer {token}")
    connection.putheader("Content-Type", "application/octet-stream")
    connection.putheader("Content-Length", str(total))
    connection.endheaders()
    assert connection.sock is not None
    start = time.perf_counter()
    send_body(connection.sock, header, total, chunk)
    response = connection.getresponse()
    answer = json.loads(response.read())
    elapsed = time.perf_counter() - start
    connection.close()
    if response.status != 201:
        raise SystemExit(f"upload refused: {response.status} {answer}")
    return elapsed, answer


def wait_job(port: int, token: str, status_url: str, timeout: float = 600) -> tuple[float, dict[str, Any]]:
    start = time.perf_counter()
    while True:
        request = urllib.request.Request(f"http://127.0.0.1:{port}{status_url}",
                                         headers={"Authorization": f"Bearer {token}"})
        with urllib.request.urlopen(request, timeout=10) as response:
            job = json.loads(response.read())
        if job["finished"] or time.perf_counter() - start > timeout:
            return time.perf_counter() - start, job
        time.sleep(0.2)


# the floor ---------------------------------------------------------------------------------------------
def bare_receive(folder: Path, header: bytes, total: int, chunk: int) -> float:
    """The same bytes over loopback into a file by a plain socket reader (recv_into + write)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    target = folder / "bare.bin"

    def sink() -> None:
        connection, _ = server.accept()
        buffer = bytearray(1 << 20)
        view = memoryview(buffer)
        left = total
        with connection, target.open("wb", buffering=0) as handle:
            while left:
                count = connection.recv_into(view, min(len(buffer), left))
                if not count:
                    break
                handle.write(view[:count])
                left -= count
            connection.sendall(b"ok")

    thread = threading.Thread(target=sink)
    thread.start()
    client = socket.create_connection(server.getsockname())
    start = time.perf_counter()
    send_body(client, header, total, chunk)
    client.recv(2)
    elapsed = time.perf_counter() - start
    client.close()
    thread.join()
    server.close()
    target.unlink()
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--gib", type=float, default=2.0, help="body size in GiB (default 2)")
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--chunk-kib", type=int, default=1024, help="client send size (default 1024 KiB)")
    parser.add_argument("--no-ingest", action="store_true", help="do not wait for the ingest job")
    args = parser.parse_args()
    planes = max(1, round(args.gib * 2**30 / (CUBE[0] * CUBE[1])))
    total, header, chunk = body_size(planes), fits_header(planes), args.chunk_kib * 1024

    root = Path(tempfile.mkdtemp(prefix="imagex-bench-upload-"))
    try:
        data = root / "var"
        token = asyncio.run(prepare(data, total))
        port = free_port()
        process = start_server(data, port)
        try:
            for run in range(1, args.repeat + 1):
                bare = bare_receive(root, header, total, chunk)
                rss_before, kids_before = tree_rss_kib(process.pid)
                hwm_before = status_kib(process.pid, "VmHWM")
                sampler = Sampler(process.pid)
                sampler.start()
                elapsed, answer = upload(port, token, header, total, chunk)
                sampler.stop.set()
                sampler.join()
                rss_after, kids_after = tree_rss_kib(process.pid)
                hwm_after = status_kib(process.pid, "VmHWM")
                megabytes = total / 1e6
                print(f"run {run}: {total:,} bytes ({total / 2**30:.2f} GiB)")
                print(f"  bare loopback socket -> file : {megabytes / bare:7.0f} MB/s ({bare:.2f} s)")
                print(f"  imagex PUT /api/uploads      : {megabytes / elapsed:7.0f} MB/s ({elapsed:.2f} s, "
                      f"{bare / elapsed:.2f}x the floor)   target >= 200 MB/s")
                print(f"  server RSS: {rss_before / 1024:.1f} MiB before, peak "
                      f"{sampler.peak_server / 1024:.1f} MiB while uploading, {rss_after / 1024:.1f} MiB "
                      "after: growth "
                      f"{(sampler.peak_server - rss_before) / 1024:.1f} MiB   target < 100 MiB")
                print(f"  server VmHWM: {hwm_before / 1024:.1f} MiB before, {hwm_after / 1024:.1f} MiB after")
                print(f"  pool children RSS: {kids_before / 1024:.1f} MiB before, peak "
                      f"{sampler.peak_children / 1024:.1f} MiB, {kids_after / 1024:.1f} MiB after")
                if not args.no_ingest:
                    seconds, job = wait_job(port, token, answer["status_url"])
                    outcome = job["state"] + (f" ({job['error']})" if job["error"] else "")
                    print(f"  ingest job (not part of the MB/s figure): {outcome} after {seconds:.1f} s")
                stored = data / "uploads" / "bench" / answer["path"]  # users get the file's name only
                stored.unlink(missing_ok=True)  # room for the next run
        finally:
            process.terminate()
            process.wait(timeout=30)
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
