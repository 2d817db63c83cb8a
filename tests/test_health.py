"""`/healthz`: open to anyone, even with guest access off; reports the store (reachable, migrations), the
pool, the job runner and the watcher; 503 when the store does not answer; nothing secret in it."""

from __future__ import annotations

import asyncio
import json
import os
import time
from pathlib import Path
from typing import Any

import pytest

from app import create_app
from app.ingest.jobs import JobRunner
from app.settings import Settings
from app.store.sqlite.connection import MIGRATIONS
from app.tiles.pool import Pool
from tests.helpers import QUICK_PASSWORDS

NEWEST_MIGRATION = max(int(script.name.split("_", 1)[0]) for script in MIGRATIONS.glob("[0-9]*.sql"))


async def health(client: Any) -> tuple[int, dict[str, Any]]:
    response = await client.get("/healthz")
    assert response.headers["Content-Type"].startswith("application/json")
    assert response.headers["Cache-Control"] == "no-store"
    return response.status_code, json.loads(await response.get_data(as_text=True))


async def test_a_healthy_process_reports_its_store_pool_runner_and_watcher(client, settings):
    status, facts = await health(client)
    assert status == 200
    assert facts["status"] == "ok"
    assert facts["store"] == {"kind": "sqlite", "reachable": True, "problem": "",
                              "migration": NEWEST_MIGRATION, "migrations_known": NEWEST_MIGRATION,
                              "latency_ms": facts["store"]["latency_ms"]}
    assert 0 <= facts["store"]["latency_ms"] < 5000
    assert facts["pool"] == {"size": 2, "busy": 0}
    # the test client's app runs no job runner and no watcher
    assert facts["runner"]["present"] is False and facts["watcher"]["present"] is False
    assert facts["uptime"] >= 0


async def test_nothing_secret_is_in_it(client, settings, make_user):
    await make_user("alice")
    body = await (await client.get("/healthz")).get_data(as_text=True)
    secret = (settings.data / "secret.key").read_text().strip()
    for private in (str(settings.data), "catalog.sqlite", settings.store_url, secret, "alice"):
        assert private not in body


async def test_it_answers_guests_when_guest_access_is_off_and_sets_no_cookie(client, archive):
    await archive.store.save_site_settings({"guest_access": False})
    assert (await client.get("/")).status_code == 302  # the rest of the site wants a login
    response = await client.get("/healthz")
    assert response.status_code == 200
    assert "Set-Cookie" not in response.headers


async def test_an_unreachable_store_answers_503(client):
    app_archive = client.app.extensions["imagex"]
    await app_archive.store.close()  # the catalog is gone for this process, as when its disk disappears
    try:
        status, facts = await health(client)
    finally:
        await app_archive.store.open()
    assert status == 503
    assert facts["status"] == "unavailable"
    assert facts["store"]["reachable"] is False
    assert facts["store"]["problem"] == "StoreError"
    assert facts["store"]["migration"] is None


async def test_a_catalog_behind_the_code_is_degraded(client, settings):
    import sqlite3

    with sqlite3.connect(settings.data / "catalog.sqlite") as db:
        db.execute("DELETE FROM schema_migrations WHERE version = ?", (NEWEST_MIGRATION,))
    status, facts = await health(client)
    assert status == 200
    assert facts["status"] == "degraded"
    # the one before it (numbers may have gaps while branches that add migrations are merged)
    assert facts["store"]["migration"] == max(int(script.name.split("_", 1)[0])
                                              for script in MIGRATIONS.glob("[0-9]*.sql")
                                              if int(script.name.split("_", 1)[0]) < NEWEST_MIGRATION)


@pytest.fixture
async def serving(tmp_path: Path, pool: Pool) -> Any:
    """An app whose job runner and folder watcher run, as under `imagex serve`."""
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    settings = Settings.load(environ={}, hips=False,
                             data=str(tmp_path / "var"), workers=2, watch_dirs=str(inbox))
    app = create_app(settings, first_admin=False, pool=pool, passwords=QUICK_PASSWORDS)
    async with app.test_app() as test_app:
        yield test_app.test_client()


async def test_the_runner_and_watcher_of_a_serving_process_are_reported(serving):
    _, facts = await health(serving)
    # at once, before the watcher has looked at its folder: nothing is missing, and nothing is degraded
    assert facts["status"] == "ok"
    assert facts["runner"] == {"present": True, "alive": True, "busy": 0, "concurrency": 2, "finished": 0}
    assert facts["watcher"]["present"] is True and facts["watcher"]["alive"] is True
    assert facts["watcher"]["folders"] == 1 and facts["watcher"]["missing"] == 0
    archive = serving.app.extensions["imagex"]
    assert isinstance(archive.runner, JobRunner)
    archive.task_failed("job runner", RuntimeError("boom"))
    _, facts = await health(serving)
    assert facts["status"] == "degraded" and facts["runner"]["alive"] is False


async def test_a_watched_folder_is_missing_once_found_missing(tmp_path: Path, pool: Pool) -> None:
    inbox, unplugged = tmp_path / "inbox", tmp_path / "unplugged"
    inbox.mkdir()
    settings = Settings.load(environ={}, hips=False, data=str(tmp_path / "var"), workers=1,
                             watch_dirs=f"{inbox}{os.pathsep}{unplugged}")
    app = create_app(settings, first_admin=False, pool=pool, passwords=QUICK_PASSWORDS)
    async with app.test_app() as test_app:
        client = test_app.test_client()
        watcher = app.extensions["imagex"].watcher
        deadline = time.monotonic() + 30
        while not watcher.missing and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        _, facts = await health(client)
    assert facts["watcher"]["folders"] == 2 and facts["watcher"]["missing"] == 1
