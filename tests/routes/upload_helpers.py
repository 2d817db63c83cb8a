"""Helpers of the upload tests (and of the hostile-upload, fuzz, series and disk-full tests): FITS bytes,
API tokens, `PUT /api/uploads` in one go or part by part, the spool and upload folders, the queue run."""

from __future__ import annotations

import asyncio
import io
import time
from pathlib import Path
from typing import Any

import numpy as np
from astropy.io import fits

from app.archive import Archive
from app.ingest.jobs import JobRunner
from app.routes.accounts import create_token
from tests.routes.pages import text_of

HTML_NAME = "<img src=x onerror=alert(1)> deep.fits"


def fits_bytes(size: int = 32, **cards: Any) -> bytes:
    """A small FITS image (no OBJECT unless given), different for every seed card."""
    header = fits.Header()
    for keyword, value in cards.items():
        header[keyword] = value
    buffer = io.BytesIO()
    pixels = np.random.default_rng(len(str(cards))).normal(100, 10, (size, size)).astype("float32")
    fits.PrimaryHDU(pixels, header).writeto(buffer)
    return buffer.getvalue()


async def token_for(archive: Archive, user: Any) -> dict[str, str]:
    created = await create_token(archive, user, "uploads")
    return {"Authorization": f"Bearer {created['token']}"}


async def run_jobs(archive: Archive) -> None:
    runner = JobRunner(archive, concurrency=1, role="test")
    while await asyncio.wait_for(runner.run_one(), 120):
        pass


async def stored_path(archive: Archive, answer: dict[str, Any]) -> Path:
    """Where an upload's file lies (the job's path; the answer names the file only)."""
    [job] = await archive.store.get_jobs([answer["id"]])
    return Path(job.path)


def files_under(folder: Path) -> list[Path]:
    return sorted(path for path in folder.rglob("*") if path.is_file()) if folder.exists() else []


def spooled(archive: Archive) -> list[Path]:
    return files_under(archive.settings.data / "spool")


def uploaded(archive: Archive) -> list[Path]:
    return files_under(archive.settings.data / "uploads")


async def put(client: Any, name: str, body: bytes, headers: dict[str, str], query: str = "") -> Any:
    """As a script would: the body with its Content-Length."""
    return await client.put(f"/api/uploads/{name}{query}", data=body,
                            headers={"Content-Type": "application/octet-stream",
                                     "Content-Length": str(len(body)), **headers})


async def error_of(response: Any, status: int) -> str:
    assert response.status_code == status, await text_of(response)
    payload = await response.get_json()
    assert payload["status"] == status
    return str(payload["error"])


async def stream(client: Any, name: str, parts: list[bytes], headers: dict[str, str], *,
                 end: str = "complete", before_end: Any = None) -> Any:
    """Send a body part by part on one connection; `end` is "complete" or "disconnect" (the client goes
    away); `before_end` is awaited before that. Returns the response (None after a disconnect)."""
    async with client.request(name if name.startswith("/") else f"/api/uploads/{name}", method="PUT",
                              headers=headers) as connection:
        for part in parts:
            await connection.send(part)
        if before_end is not None:
            await before_end()
        if end == "disconnect":
            await connection.disconnect()
        else:
            await connection.send_complete()
    return None if end == "disconnect" else await connection.as_response()


async def until(condition: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.01)
