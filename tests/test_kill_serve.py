"""kill -9 of a real `imagex serve` while uploads stream, then a restart: the killed server's pool
processes die with it, the spool is emptied, the dead uploads' quota reservations are released at once
(not after their 10 minutes), and the owner's usage is exact. Then one user's 12 parallel uploads of
unknown length (chunked), each about a quarter of the free quota: exactly the 4 that fit are kept, the
others are refused with the quota's message."""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
import signal
import subprocess
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import numpy as np
from astropy.io import fits

from app.ingest.spool import SPOOL
from app.samples import FIELD_DEC, FIELD_RA, celestial_wcs
from tests.cli_helpers import IMAGEX, catalog, environment, running, wait_until
from tests.helpers import PASSWORD, csrf_from
from tests.processes import answers, children_of, free_port, stop, wait_dead

SIDE = 200  # pixels: a file of ~166 KB
PARALLEL = 12
IN_FLIGHT = 3


def fits_body(seed: int) -> bytes:
    """A distinct FITS image with a real WCS; every seed gives a file of the same size."""
    wcs = celestial_wcs(FIELD_RA + seed * 0.001, FIELD_DEC, SIDE, SIDE)
    pixels = np.random.default_rng(seed).normal(1000.0, 30.0, (SIDE, SIDE)).astype("float32")
    buffer = io.BytesIO()
    fits.PrimaryHDU(pixels, wcs.to_header()).writeto(buffer)
    return buffer.getvalue()


SIZE = len(fits_body(0))
# one stored image, then room for 4.2 more: 4 of the parallel uploads fit, a fifth does not
QUOTA = SIZE + int(4.2 * SIZE)


def log_in(port: int) -> httpx.Client:
    client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30)
    token = csrf_from(client.get("/login").text)
    response = client.post("/login", data={"username": "alice", "password": PASSWORD, "csrf_token": token})
    assert response.status_code == 302, response.text
    client.headers["X-CSRF-Token"] = csrf_from(client.get("/upload").text)
    return client


def reservations(data: Path) -> list[tuple[str, int, int]]:
    with catalog(data) as db:
        return [tuple(row) for row in db.execute("SELECT owner, bytes, pid FROM upload_reservations")]


def spool_files(data: Path) -> list[Path]:
    return [path for path in (data / SPOOL).rglob("*") if path.is_file()]


def stored_bytes(data: Path) -> tuple[int, int]:
    """alice's images and the bytes of their distinct files, straight from the catalog."""
    with catalog(data) as db:
        rows = db.execute("SELECT sha256, max(size) FROM images WHERE owner = 'alice' "
                          "GROUP BY sha256").fetchall()
        images = db.execute("SELECT count(*) FROM images WHERE owner = 'alice'").fetchone()[0]
    return images, sum(size for _, size in rows)


def jobs_finished(data: Path) -> bool:
    with catalog(data) as db:
        states = [row[0] for row in db.execute("SELECT state FROM jobs")]
    return bool(states) and all(state in ("done", "failed") for state in states)


def held_body(body: bytes, go_on: threading.Event) -> Iterator[bytes]:
    """The first half of `body`, then nothing until `go_on` (the server is killed meanwhile)."""
    yield body[:len(body) // 2]
    go_on.wait(60)
    yield body[len(body) // 2:]


def upload_in_flight(port: int, body: bytes, go_on: threading.Event, *, declared: bool) -> threading.Thread:
    client = log_in(port)
    headers = {"Content-Length": str(len(body))} if declared else {}

    def send() -> None:
        try:
            client.put("/api/uploads/inflight.fits", content=held_body(body, go_on), headers=headers)
        except httpx.HTTPError:
            pass  # the server was killed under it
        finally:
            client.close()

    thread = threading.Thread(target=send, daemon=True)
    thread.start()
    return thread


async def chunks(body: bytes, parts: int = 16) -> AsyncIterator[bytes]:
    step = -(-len(body) // parts)
    for start in range(0, len(body), step):
        yield body[start:start + step]
        await asyncio.sleep(0.005)  # the uploads interleave as real ones from one browser do


async def parallel_uploads(port: int, cookies: httpx.Cookies, csrf: str) -> list[httpx.Response]:
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", cookies=cookies, timeout=60,
                                 headers={"X-CSRF-Token": csrf}) as client:
        # no Content-Length: each body is sent chunked and its size is known only at its end
        return list(await asyncio.gather(*(client.put(f"/api/uploads/part{n}.fits",
                                                      content=chunks(fits_body(100 + n)))
                                           for n in range(PARALLEL))))


def add_alice(data: Path) -> None:
    made = subprocess.run([str(IMAGEX), "user", "add", "alice", "--password-stdin"], input=PASSWORD + "\n",
                          env=environment(data), capture_output=True, text=True, timeout=60)
    assert made.returncode == 0, made.stdout + made.stderr
    with catalog(data) as db:
        db.execute("UPDATE users SET quota = ? WHERE username = 'alice'", (QUOTA,))


def test_serve_killed_during_uploads_restarts_clean_and_parallel_uploads_fill_the_quota(tmp_path):
    data, port = tmp_path / "var", free_port()
    env = environment(data, IMAGEX_WORKERS="1")
    add_alice(data)
    first_log, second_log = tmp_path / "serve1.log", tmp_path / "serve2.log"
    go_on = threading.Event()
    with running(["serve", "--port", str(port)], env, first_log) as web:
        wait_until(lambda: answers(f"http://127.0.0.1:{port}/healthz"), "the server", web, first_log)
        with contextlib.closing(log_in(port)) as client:
            response = client.put("/api/uploads/first.fits", content=fits_body(1))
            assert response.status_code == 201, response.text
        wait_until(lambda: jobs_finished(data), "the first upload's ingest", web, first_log)
        assert stored_bytes(data) == (1, SIZE)
        threads = [upload_in_flight(port, fits_body(10 + n), go_on, declared=n < 2) for n in range(IN_FLIGHT)]
        wait_until(lambda: len(reservations(data)) == IN_FLIGHT and len(spool_files(data)) == IN_FLIGHT,
                   "the uploads to be in flight", web, first_log)
        pool = children_of(web.pid)
        assert pool, "the server had no pool process"
        os.kill(web.pid, signal.SIGKILL)
        web.wait(timeout=30)
    go_on.set()
    for thread in threads:
        thread.join(30)
    assert wait_dead(pool) == set(), "pool processes outlived the killed server"
    # what the killed server left: spool files and reservations that would hold 2 files' worth for 10 min
    assert len(spool_files(data)) == IN_FLIGHT
    assert {pid for _, _, pid in reservations(data)} == {web.pid}

    with running(["serve", "--port", str(port)], env, second_log) as web:
        wait_until(lambda: answers(f"http://127.0.0.1:{port}/healthz"), "the restarted server", web,
                   second_log)
        assert spool_files(data) == []
        assert reservations(data) == []
        with contextlib.closing(log_in(port)) as client:
            me = client.get("/api/me").json()
            assert (me["storage"]["images"], me["storage"]["bytes"]) == (1, SIZE)
            answers_ = asyncio.run(parallel_uploads(port, client.cookies, client.headers["X-CSRF-Token"]))
            statuses = sorted(response.status_code for response in answers_)
            assert statuses == [201] * 4 + [413] * (PARALLEL - 4), [r.text for r in answers_]
            for refused in (r for r in answers_ if r.status_code == 413):
                assert "does not fit in your quota" in refused.json()["error"], refused.text
            wait_until(lambda: jobs_finished(data), "the parallel uploads' ingest", web, second_log)
            me = client.get("/api/me").json()
        assert reservations(data) == [] and spool_files(data) == []
        images, used = stored_bytes(data)
        assert (images, used) == (5, 5 * SIZE) and used <= QUOTA
        assert (me["storage"]["images"], me["storage"]["bytes"]) == (images, used)
        stop(web)
