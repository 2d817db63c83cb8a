"""The fleet with real processes on one SQLite catalog: `imagex serve` and two `imagex worker`s register and
beat; the administrator's monitor lists all three live; a worker killed with SIGKILL mid-job is shown lost
with the job it was running, the job is taken again by the other worker once its lease runs out, and a
worker stopped cleanly leaves the fleet. `/healthz` counts the fleet. `imagex watch` and `imagex ingest`
join and leave too; the heartbeat's clock and the forgetting of long-lost entries without waiting."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import urllib.request
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from astropy.io import fits

from app.samples import FIELD_DEC, FIELD_RA, celestial_wcs
from tests.cli_helpers import running, wait_until
from tests.helpers import QUICK_PASSWORDS, csrf_from
from tests.processes import answers, free_port, stop
from tests.worker_helpers import BIG, READY, jobs_of, queue, rendering, worker_env

# a beat every 0.3 s and lost after 4 s of silence: the test waits seconds, not minutes
FAST = {"IMAGEX_HEARTBEAT": "0.3", "IMAGEX_JOB_LEASE": "4"}


def admin_session(port: int, log: Path) -> httpx.Client:
    """An HTTP client logged in as the administrator `imagex serve` created at its first start."""
    match = re.search(r"Created administrator 'admin' with password '([^']+)'", log.read_text())
    assert match, log.read_text()
    client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10)
    token = csrf_from(client.get("/login").text)
    response = client.post("/login", data={"username": "admin", "password": match.group(1),
                                           "csrf_token": token})
    assert response.status_code == 302, response.text
    return client


def fleet(client: httpx.Client) -> dict[str, Any]:
    response = client.get("/api/admin/monitor")
    assert response.status_code == 200
    facts: dict[str, Any] = response.json()["fleet"]
    return facts


def by_pid(facts: dict[str, Any]) -> dict[int, dict[str, Any]]:
    return {process["pid"]: process for process in facts["processes"]}


def job_of(data: Path, job_id: str) -> dict[str, Any]:
    [job] = [job for job in jobs_of(data) if job["id"] == job_id]
    return job


def write_big(folder: Path, seed: int) -> Path:
    """A FITS file whose job takes seconds (distinct content for each seed)."""
    folder.mkdir(parents=True)
    wcs = celestial_wcs(FIELD_RA, FIELD_DEC, BIG, BIG)
    pixels = np.random.default_rng(seed).normal(1000.0, 30.0, (BIG, BIG)).astype("float32")
    path = folder / "big.fits"
    fits.PrimaryHDU(pixels, wcs.to_header()).writeto(path)
    return path


def healthz(port: int) -> dict[str, Any]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=10) as response:
        health: dict[str, Any] = json.loads(response.read())
    return health


async def test_serve_and_two_workers_one_killed_shown_lost_the_other_alive(tmp_path):
    data, port = tmp_path / "var", free_port()
    env = worker_env(data, **FAST)
    logs = {name: tmp_path / f"{name}.log" for name in ("serve", "first", "second")}
    with running(["serve", "--port", str(port)], env, logs["serve"]) as web, \
            running(["worker"], env, logs["first"], start_new_session=True) as first, \
            running(["worker"], env, logs["second"], start_new_session=True) as second:
        wait_until(lambda: answers(f"http://127.0.0.1:{port}/healthz"), "the web process", web, logs["serve"])
        for worker, log in ((first, logs["first"]), (second, logs["second"])):
            wait_until(lambda log=log: READY in log.read_text(), "a worker to start", worker, log)
        with contextlib.closing(admin_session(port, logs["serve"])) as client:
            live = wait_until(lambda: (facts := fleet(client))["alive"] == 3 and facts,
                              "three processes in the fleet", web, logs["serve"])
            assert live["lost"] == 0
            listed = by_pid(live)
            assert set(listed) == {web.pid, first.pid, second.pid}
            assert [listed[pid]["role"] for pid in (web.pid, first.pid, second.pid)] == \
                ["serve", "worker", "worker"]
            assert listed[web.pid]["self"] and not listed[first.pid]["self"]
            assert all(process["pool_size"] == 1 and process["version"] for process in listed.values())
            assert all(process["jobs"] == [] for process in listed.values())
            assert healthz(port)["fleet"] == {"alive": 3, "lost": 0}

            # a job for a worker to be killed in the middle of; the web process runs jobs too, and when it
            # takes the job, the next file is queued once it is done
            for attempt in range(10):  # the claim is a race: on a busy machine the web process may win often
                big = write_big(tmp_path / f"in{attempt}", seed=attempt)
                [job_id] = await queue(data, big)
                wait_until(lambda: rendering(data), "the job to be running", web, logs["serve"])
                runner = job_of(data, job_id)["worker"]
                # the process running it lists it, under the name it claimed it with
                running_it = wait_until(lambda: [process for process in fleet(client)["processes"]
                                                 if process["jobs"]],
                                        "the job in the fleet", web, logs["serve"])
                assert [(process["id"], process["jobs"]) for process in running_it] == \
                    [(runner, [{"id": job_id, "path": str(big)}])]
                if f":{web.pid}:" not in runner:
                    break
                wait_until(lambda job_id=job_id: job_of(data, job_id)["state"] == "done",
                           "the web process's job", web, logs["serve"], timeout=180)
            assert f":{web.pid}:" not in runner, "the web process took every job"
            doomed, survivor = (second, first) if f":{second.pid}:" in runner else (first, second)
            os.killpg(doomed.pid, signal.SIGKILL)  # the worker and its pool, at once
            doomed.wait(timeout=10)

            lost = wait_until(lambda: (facts := fleet(client))["lost"] == 1 and facts,
                              "the killed worker to be shown lost", web, logs["serve"])
            listed = by_pid(lost)
            assert listed[doomed.pid]["lost"] and lost["alive"] == 2
            assert listed[doomed.pid]["silent"] > float(FAST["IMAGEX_JOB_LEASE"])
            assert not listed[survivor.pid]["lost"] and not listed[web.pid]["lost"]
            assert healthz(port)["fleet"] == {"alive": 2, "lost": 1}
            page = client.get("/admin/monitor").text
            row = page.split(f'id="process-{listed[doomed.pid]["id"]}"', 1)[1].split("</tr>", 1)[0]
            assert f"<td>{doomed.pid}</td>" in row and ">lost<" in row

            # the lost worker's job is taken again (its lease ran out with its heartbeats) and finished
            assert listed[doomed.pid]["jobs"] == [{"id": job_id, "path": str(big)}]
            wait_until(lambda: job_of(data, job_id)["state"] == "done", "the job to be redone", web,
                       logs["serve"], timeout=180)
            job = job_of(data, job_id)
            assert job["attempts"] == 2 and f":{doomed.pid}:" not in job["worker"]

            stop(survivor)  # a clean stop leaves the fleet
            assert survivor.returncode == 0, logs["first" if survivor is first else "second"].read_text()
            assert set(by_pid(fleet(client))) == {web.pid, doomed.pid}
            assert healthz(port)["fleet"] == {"alive": 1, "lost": 1}
        stop(web)
        assert web.returncode == 0, logs["serve"].read_text()
    # the web process left too; only the lost worker's entry remains (forgotten after a day)
    from app.store.sqlite import SQLiteStore

    store = SQLiteStore(data / "catalog.sqlite")
    await store.open()
    try:
        assert [process.pid for process in await store.list_processes()] == [doomed.pid]
    finally:
        await store.close()


async def test_join_registers_at_once_and_close_removes_the_entry(settings, pool):
    from app.archive import Archive
    from app.fleet import join_fleet

    archive = Archive(settings, pool=pool, passwords=QUICK_PASSWORDS)
    await archive.startup()
    ticks = iter([500.0, 510.0, 520.0])
    heartbeat = await join_fleet(archive, "ingest", clock=lambda: next(ticks))
    [entry] = await archive.store.list_processes()
    assert (entry.id, entry.role, entry.pid, entry.started, entry.last_seen) == \
        (heartbeat.name, "ingest", os.getpid(), 500.0, 510.0)
    assert entry.lease == settings.job_lease and entry.jobs == [] and (entry.done, entry.failed) == (0, 0)
    assert entry.lost(510.0 + settings.job_lease + 1) and not entry.lost(510.0 + settings.job_lease)
    await heartbeat.beat()
    assert [process.last_seen for process in await archive.store.list_processes()] == [520.0]
    await archive.close()
    store = archive.store
    await store.open()
    try:
        assert await store.list_processes() == []
    finally:
        await store.close()


async def test_joining_forgets_processes_lost_for_a_day(archive):
    from app.fleet import FORGET_AFTER, join_fleet
    from app.store.records import ProcessRecord

    def old(name: str, seen: float) -> ProcessRecord:
        return ProcessRecord(id=name, role="worker", host="elsewhere", pid=1, version="0", started=seen,
                             last_seen=seen, lease=60.0)

    await archive.store.beat(old("ancient", 1000.0))
    await archive.store.beat(old("recent", 1000.0 + FORGET_AFTER + 5))
    await join_fleet(archive, "watch", clock=lambda: 2000.0 + FORGET_AFTER)
    assert sorted(process.id for process in await archive.store.list_processes()) == \
        sorted(["recent", archive.heartbeat.name])


def fleet_in_store(data: Path) -> list[dict[str, Any]]:
    from tests.cli_helpers import catalog

    with catalog(data) as db:
        return [dict(row) for row in db.execute("SELECT id, role, pid, jobs FROM processes")]


async def test_watch_and_ingest_join_the_fleet_and_leave_when_they_end(tmp_path):
    data, inbox = tmp_path / "var", tmp_path / "inbox"
    inbox.mkdir()
    env = worker_env(data, **FAST)
    big = write_big(tmp_path / "in", seed=11)
    with running(["watch", str(inbox)], env, tmp_path / "watch.log") as watcher:
        wait_until(lambda: "Ctrl-C stops" in (tmp_path / "watch.log").read_text(), "the watcher", watcher,
                   tmp_path / "watch.log")
        with running(["ingest", "--no-progress", str(big)], env, tmp_path / "ingest.log") as ingester:
            wanted = {("watch", watcher.pid), ("ingest", ingester.pid)}
            wait_until(lambda: {(entry["role"], entry["pid"]) for entry in fleet_in_store(data)} == wanted,
                       "the watcher and the ingest run in the fleet", ingester, tmp_path / "ingest.log")
            assert ingester.wait(timeout=180) == 0, (tmp_path / "ingest.log").read_text()
        # the ingest run ended: its entry is gone, the watcher's stays
        assert [(entry["role"], entry["pid"]) for entry in fleet_in_store(data)] == [("watch", watcher.pid)]
        stop(watcher)
        assert watcher.returncode == 0, (tmp_path / "watch.log").read_text()
    assert fleet_in_store(data) == []
