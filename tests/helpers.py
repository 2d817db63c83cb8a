"""What tests call to do what a user does: run the real job queue over files, log in through the real form,
read the CSRF token a page gives its forms."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

from argon2 import PasswordHasher, profiles

from app.archive import Archive
from app.ingest.jobs import JobRunner
from app.ingest.scan import job_for, walk
from app.passwords import Passwords
from app.store.records import JobRecord

PASSWORD = "correct horse battery"
# The archives tests build in their own process hash and check passwords with argon2's cheapest parameters:
# they make and check hundreds (the real parameters cost about a quarter of a second of CPU each). The
# servers and commands the browser, CLI and deployment tests start keep the real ones
# (tests/test_accounts.py checks what those are).
QUICK_PASSWORDS = Passwords(PasswordHasher.from_parameters(profiles.CHEAPEST))


async def ingest(archive: Archive, *paths: Path, owner: str = "", scaling: dict[str, Any] | None = None,
                 visibility: str = "private", timeout: float = 120.0) -> list[JobRecord]:
    """Queue `paths` (files or folders) and run the real job queue until every job is done or failed."""
    jobs = [job_for(path, owner=owner) for path in walk(paths)]
    for job in jobs:
        job.options["visibility"] = visibility
        if scaling:
            job.options["scaling"] = scaling
    queued = await archive.store.enqueue(jobs)
    runner = JobRunner(archive, concurrency=2, role="test")

    async def drain() -> None:
        while await runner.run_one():
            pass

    await asyncio.wait_for(asyncio.gather(drain(), drain()), timeout)
    return await archive.store.get_jobs([job.id for job in queued])


def csrf_from(html: str) -> str:
    """The CSRF token of the first form (or the page's htmx headers) in `html`."""
    match = re.search(r'name="csrf_token" value="([^"]+)"', html) or re.search(
        r'"X-CSRF-Token": "([^"]+)"', html)
    assert match, "no CSRF token in the page"
    return match.group(1)


async def log_in(client: Any, username: str, password: str = PASSWORD) -> Any:
    """Log in through the real login form (GET for the CSRF token, then POST); returns the response."""
    page = await client.get("/login")
    token = csrf_from(await page.get_data(as_text=True))
    return await client.post("/login", form={"username": username, "password": password,
                                             "csrf_token": token})


async def csrf_of(client: Any, path: str = "/") -> str:
    """The CSRF token the client's browser would hold after loading `path`."""
    page = await client.get(path)
    return csrf_from(await page.get_data(as_text=True))
