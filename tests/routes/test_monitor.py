"""The system monitor: disk use, background parts, jobs and the retry button, and its JSON twin."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from app.formatting import human_bytes, human_duration
from app.ingest.jobs import JobRunner
from app.monitor import cached_folder_size, catalog_files, folder_size, originals
from tests.clock import Clock
from tests.helpers import ingest
from tests.routes.admin_helpers import HTMX, admin_client, failed_job, post, sign_in
from tests.routes.pages import text_of
from tests.store.examples import job


async def test_disk_use_after_an_ingest(archive, client, account, add_image):
    await admin_client(client, account)
    image = await add_image("field.fits", size=300)
    facts = await (await client.get("/api/admin/monitor")).get_json()
    disk = facts["disk"]
    assert disk["tiles"]["bytes"] > 0 and disk["tiles"]["files"] > 2
    assert (disk["originals"]["bytes"], disk["originals"]["images"]) == (image.size, 1)
    catalog = Path(disk["catalog"]["path"])
    assert catalog.name == "catalog.sqlite"
    assert disk["catalog"]["bytes"] >= catalog.stat().st_size > 0
    assert 0 < disk["free"]["bytes"] <= disk["free"]["total"]
    assert facts["jobs"]["counts"] == {"queued": 0, "running": 0, "harvested": 0, "done": 1, "failed": 0}
    assert facts["jobs"]["failures"] == []

    html = await text_of(await client.get("/admin/monitor"))
    assert human_bytes(disk["tiles"]["bytes"]) in html
    assert human_bytes(image.size) in html and "(1 image catalogued" in html
    assert "No failed jobs." in html


async def test_failures_are_listed_and_retried(archive, client, account, tmp_path):
    await admin_client(client, account)
    broken = tmp_path / "in" / "broken.fits"
    broken.parent.mkdir(parents=True)
    broken.write_bytes(b"SIMPLE  = this is not a FITS header" + b" " * 100)
    [job] = await ingest(archive, broken, owner="alice")
    assert job.state == "failed" and job.error

    html = await text_of(await client.get("/admin/monitor"))
    assert f'<tr id="job-{job.id}">' in html
    row = html.split(f'<tr id="job-{job.id}">', 1)[1].split("</tr>", 1)[0]
    assert "broken.fits" in row and "alice" in row
    assert job.error.replace("'", "&#39;").replace('"', "&#34;")[:40] in row
    assert f'hx-post="/admin/jobs/{job.id}/retry"' in row and 'name="csrf_token"' in row

    response = await post(client, f"/admin/jobs/{job.id}/retry", headers=HTMX)
    assert response.status_code == 200
    row = await text_of(response)
    assert row.lstrip().startswith(f'<tr id="job-{job.id}">')
    assert "broken.fits is queued again." in row and ">queued<" in row
    [again] = await archive.store.get_jobs([job.id])
    assert again.state == "queued" and again.error == ""
    assert f'id="job-{job.id}"' not in await text_of(await client.get("/admin/monitor"))

    response = await post(client, f"/admin/jobs/{job.id}/retry", headers=HTMX)
    assert response.status_code == 409
    assert "This job is queued, not failed" in await text_of(response)
    assert (await post(client, "/admin/jobs/nosuchjob/retry")).status_code == 404


async def test_retry_without_script_answers_the_page(archive, client, account):
    await admin_client(client, account)
    job_id = await failed_job(archive)
    response = await post(client, f"/admin/jobs/{job_id}/retry")
    assert response.status_code == 200
    html = await text_of(response)
    assert "<title>System monitor" in html and "broken.fits is queued again." in html
    assert (await archive.store.job_counts())["queued"] == 1


async def test_the_body_refreshes_itself(archive, client, account):
    await admin_client(client, account)
    page = await text_of(await client.get("/admin/monitor"))
    assert '<section id="monitor" hx-get="/admin/monitor" hx-trigger="every 5s" hx-swap="outerHTML">' in page
    fragment = await text_of(await client.get("/admin/monitor", headers=HTMX))
    assert fragment.lstrip().startswith('<section id="monitor"') and "<html" not in fragment


async def test_background_parts(archive, client, account):
    await admin_client(client, account)
    served = client.app.extensions["imagex"]
    facts = await (await client.get("/api/admin/monitor")).get_json()
    background = facts["background"]
    assert not background["job_runner"]["present"]  # the test app runs no job runner
    assert background["watcher"] == {"present": False, "alive": False,
                                     "state": "not configured (set IMAGEX_WATCH_DIRS)", "settle": 0.0,
                                     "folders": [], "waiting": 0, "building": 0, "queued": 0,
                                     "last_error": ""}
    assert background["pool"]["size"] == served.pool.size
    assert facts["background_errors"] == []

    served.runner = JobRunner(served, concurrency=3)
    facts = await (await client.get("/api/admin/monitor")).get_json()
    runner = facts["background"]["job_runner"]
    assert runner["present"] and runner["alive"] and runner["busy"] == 0 and runner["concurrency"] == 3
    assert runner["state"] == "idle, waiting for jobs"
    html = await text_of(await client.get("/admin/monitor"))
    assert "0 of 3" in html and served.runner.worker in html

    served.runner.last_error = "StoreError: the catalog is not open"
    served.task_failed("job runner", RuntimeError("boom"))
    facts = await (await client.get("/api/admin/monitor")).get_json()
    runner = facts["background"]["job_runner"]
    assert not runner["alive"] and runner["state"] == "stopped after an error"
    assert facts["background_errors"] == ["job runner: RuntimeError: boom"]
    html = await text_of(await client.get("/admin/monitor"))
    assert "job runner: RuntimeError: boom" in html and "last error: StoreError" in html


async def test_the_json_twin_has_what_the_page_shows(archive, client, account):
    await admin_client(client, account)
    await failed_job(archive)
    facts = await (await client.get("/api/admin/monitor")).get_json()
    assert set(facts) == {"time", "uptime", "disk", "background", "background_errors", "fleet", "jobs"}
    assert set(facts["disk"]) == {"originals", "tiles", "catalog", "free"}
    [listed] = facts["jobs"]["failures"]
    assert listed["name"] == "broken.fits" and listed["error"] == "broken.fits: not a FITS file"
    assert facts["jobs"]["counts"]["failed"] == 1 and facts["jobs"]["pending"] == 0


def test_folder_size_counts_files_and_skips_links(tmp_path):
    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / "a" / "one").write_bytes(b"x" * 10)
    (tmp_path / "a" / "b" / "two").write_bytes(b"y" * 32)
    os.symlink(tmp_path / "a", tmp_path / "loop")
    os.symlink(tmp_path / "a" / "one", tmp_path / "alias")
    measured = folder_size(tmp_path)
    assert (measured.files, measured.bytes) == (2, 42)
    assert folder_size(tmp_path / "missing").files == 0


async def test_folder_walks_are_reused_for_a_while(tmp_path):
    (tmp_path / "one").write_bytes(b"x" * 10)
    first = await cached_folder_size(tmp_path)
    (tmp_path / "two").write_bytes(b"y" * 5)
    assert await cached_folder_size(tmp_path) == first  # an auto-refresh does not walk again
    fresh = await cached_folder_size(tmp_path, ttl=0)
    assert (fresh.files, fresh.bytes) == (2, 15)


def test_catalog_files():
    assert [path.name for path in catalog_files("sqlite:///data/catalog.sqlite")] == [
        "catalog.sqlite", "catalog.sqlite-wal", "catalog.sqlite-shm"]
    assert catalog_files("mongodb://db/imagex") == []


async def test_originals_are_counted_again_only_after_a_while(archive, client, account, add_image):
    await admin_client(client, account)
    before = (await (await client.get("/api/admin/monitor")).get_json())["disk"]["originals"]
    assert before["images"] == 0
    await add_image("field.fits")
    after = (await (await client.get("/api/admin/monitor")).get_json())["disk"]["originals"]
    assert after == before  # an auto-refresh does not scan the catalog again
    fresh = await originals(client.app.extensions["imagex"], ttl=0)
    assert fresh["images"] == 1 and fresh["bytes"] > 0


async def test_the_fleet_lists_this_process_and_shows_a_silent_one_lost(archive, client, account):
    import time

    from app.store.records import ProcessRecord

    await admin_client(client, account)
    silent = ProcessRecord(id="node9:77:worker:abcdef", role="worker", host="node9", pid=77, version="0.1.0",
                           started=time.time() - 900, last_seen=time.time() - 600, lease=60.0, pool_size=8,
                           jobs=[{"id": "j1", "path": "/in/m31.fits"}], done=5, failed=2)
    await archive.store.beat(silent)
    facts = (await (await client.get("/api/admin/monitor")).get_json())["fleet"]
    assert (facts["alive"], facts["lost"]) == (1, 1)
    own, lost = facts["processes"]  # by role: serve before worker
    assert (own["role"], own["pid"], own["self"], own["lost"]) == ("serve", os.getpid(), True, False)
    assert (lost["id"], lost["lost"], lost["self"], lost["pool_size"], lost["done"], lost["failed"]) == \
        (silent.id, True, False, 8, 5, 2)
    assert lost["silent"] >= 600 and lost["jobs"] == [{"id": "j1", "path": "/in/m31.fits"}]

    html = await text_of(await client.get("/admin/monitor"))
    assert "1 process alive" in html and "1 lost" in html
    row = html.split(f'<tr id="process-{silent.id}" class="process-lost">', 1)[1].split("</tr>", 1)[0]
    assert "node9" in row and "<td>77</td>" in row and ">lost<" in row and "m31.fits" in row
    health = await (await client.get("/healthz")).get_json()
    assert health["fleet"] == {"alive": 1, "lost": 1}


async def test_the_ingest_rate_and_time_left_on_the_monitor_and_the_portal(archive, client, account):
    """Measured on the jobs finished in the last five minutes (every process's, from the shared store):
    from the first of them to now. Each user's portal measures their own jobs; guests see none."""
    clock = Clock(time.time())
    for store in (archive.store, client.app.extensions["imagex"].store):  # the test's and the app's
        store.use_clock(clock)
    await admin_client(client, account)
    await account("alice")
    html = await text_of(await client.get("/admin/monitor"))
    assert "No jobs finished in the last 5 min." in html
    jobs = await archive.store.enqueue([job(f"f{n}", owner="alice") for n in range(5)] + [job("old")])
    first = await archive.store.claim_job("w", 60)
    await archive.store.finish_job(first.id, "w", state="done")
    clock.advance(400)  # outside the window now
    for _ in range(3):
        clock.advance(10)
        claimed = await archive.store.claim_job("w", 60)
        await archive.store.finish_job(claimed.id, "w", state="done" if _ else "failed")
    # 3 finished in the window, the first 20 s ago: a rate of 2 in 20 s; 2 queued left: 20 s
    facts = (await (await client.get("/api/admin/monitor")).get_json())["jobs"]
    assert (facts["finished"], facts["pending"], facts["window"]) == (3, 2, 300.0)
    assert facts["rate"] == pytest.approx(0.1) and facts["eta"] == pytest.approx(20.0)
    html = await text_of(await client.get("/admin/monitor"))
    assert "6.0 files a minute over the last 5 min (3 finished): about 20 s left for 2 pending." in html

    # alice's own queue: her jobs alone (one left: "old" is not hers), at her own rate
    await sign_in(client, "alice")
    portal = await text_of(await client.get("/"))
    assert ('Ingesting: 0 running, 1 queued<span id="ingest-rate">, 6.0 files a minute: about 10 s left'
            '</span>.') in portal
    client.cookie_jar.clear()
    assert "files a minute" not in await text_of(await client.get("/"))
    # nothing finished for a while: no rate is claimed
    clock.advance(600)
    await sign_in(client, "alice")
    portal = await text_of(await client.get("/"))
    assert "Ingesting: 0 running, 1 queued." in portal and "files a minute" not in portal
    assert len(jobs) == 6


def test_durations_are_written_to_plan_by():
    assert [human_duration(s) for s in (None, 0, 20.4, 89, 95, 3600, 5340, 5400, 7260, 172800, 190800)] == [
        "", "0 s", "20 s", "89 s", "2 min", "60 min", "89 min", "1 h 30 min", "2 h 1 min", "2 d", "2 d 5 h"]
