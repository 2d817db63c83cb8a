"""The job queue in the store: idempotent enqueue, atomic claims across tasks, connections and processes,
leases that expire and are renewed, and the runner that works through the queue."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from app.archive import Archive
from app.ingest.jobs import JobRunner, wait_for, worker_name
from app.ingest.scan import job_for
from app.settings import Settings
from app.store.records import JOB_STATES, NewJob
from app.store.sqlite import SQLiteStore
from tests.clock import Clock
from tests.helpers import QUICK_PASSWORDS

REPO = Path(__file__).resolve().parents[2]


def new_jobs(count: int, prefix: str = "file") -> list[NewJob]:
    return [NewJob(key=f"/data/{prefix}{n}.fits|2880|{n}", path=f"/data/{prefix}{n}.fits")
            for n in range(count)]


# enqueue ---------------------------------------------------------------------------------------------

async def test_enqueue_is_idempotent_by_key(store):
    [first] = await store.enqueue([NewJob(key="k1", path="/data/a.fits", owner="ann", options={"x": 1})])
    [again] = await store.enqueue([NewJob(key="k1", path="/data/a.fits", owner="bob")])
    assert again.id == first.id
    assert (again.owner, again.options, again.state) == ("ann", {"x": 1}, "queued")
    twice = await store.enqueue([NewJob(key="k2", path="/data/b.fits")] * 2)
    assert twice[0].id == twice[1].id
    assert await store.job_counts() == {"queued": 2, "running": 0, "harvested": 0, "done": 0, "failed": 0}


async def test_enqueue_returns_a_job_for_every_key_in_order(store):
    jobs = await store.enqueue(new_jobs(5))
    assert [job.key for job in jobs] == [job.key for job in new_jobs(5)]
    assert len({job.id for job in jobs}) == 5
    assert await store.enqueue([]) == []


async def claim_and_finish(store, worker: str, state: str, error: str = "") -> str:
    job = await store.claim_job(worker, 60)
    assert job is not None
    assert await store.finish_job(job.id, worker, state=state, error=error)
    return job.id


@pytest.mark.parametrize(("retry_failed", "expected_state", "expected_error"), [
    (True, "queued", ""),
    (False, "failed", "bad.fits: this is a text file, not an image"),
])
async def test_a_failed_job_is_queued_again_only_when_asked(store, retry_failed, expected_state,
                                                             expected_error):
    [job] = await store.enqueue([NewJob(key="bad", path="/data/bad.fits")])
    await claim_and_finish(store, "w", "failed", "bad.fits: this is a text file, not an image")
    [again] = await store.enqueue([NewJob(key="bad", path="/data/bad.fits")], retry_failed=retry_failed)
    assert again.id == job.id
    assert (again.state, again.error) == (expected_state, expected_error)
    if retry_failed:
        claimed = await store.claim_job("w2", 60)
        assert claimed.id == job.id and claimed.attempts == 2


async def test_a_done_job_is_never_queued_again(store):
    [job] = await store.enqueue([NewJob(key="good", path="/data/good.fits")])
    await claim_and_finish(store, "w", "done")
    [again] = await store.enqueue([NewJob(key="good", path="/data/good.fits")])
    assert (again.id, again.state) == (job.id, "done")
    assert await store.claim_job("w", 60) is None


# claims ----------------------------------------------------------------------------------------------

async def test_claim_takes_queued_jobs_oldest_first_and_then_none(store):
    store.use_clock(clock := Clock())
    older = await store.enqueue(new_jobs(1, "old"))
    clock.advance(0.01)
    newer = await store.enqueue(new_jobs(1, "new"))
    first = await store.claim_job("w", 60)
    second = await store.claim_job("w", 60)
    assert (first.id, second.id) == (older[0].id, newer[0].id)
    assert (first.state, first.worker, first.attempts) == ("running", "w", 1)
    assert first.lease_until == clock() + 60
    assert await store.claim_job("w", 60) is None


async def test_many_claimers_on_one_connection_never_share_a_job(store):
    jobs = await store.enqueue(new_jobs(60))

    async def claimer(name: str) -> list[str]:
        mine = []
        while (job := await store.claim_job(name, 60)) is not None:
            assert job.worker == name
            mine.append(job.id)
        return mine

    claimed = await asyncio.gather(*(claimer(f"w{n}") for n in range(20)))
    every = [job_id for mine in claimed for job_id in mine]
    assert Counter(every).most_common(1)[0][1] == 1
    assert sorted(every) == sorted(job.id for job in jobs)
    assert (await store.job_counts())["running"] == 60


async def test_two_connections_on_one_file_never_share_a_job(store, tmp_path):
    jobs = await store.enqueue(new_jobs(80))
    other = SQLiteStore(tmp_path / "catalog.sqlite")
    await other.open()
    try:
        async def claimer(on: SQLiteStore, name: str) -> list[str]:
            mine = []
            while (job := await on.claim_job(name, 60)) is not None:
                mine.append(job.id)
                await asyncio.sleep(0.005)  # "work" on it, so the other connection gets its turns
            return mine

        claimed = await asyncio.gather(*(claimer(on, f"{label}{n}") for n in range(5)
                                         for label, on in (("a", store), ("b", other))))
    finally:
        await other.close()
    every = [job_id for mine in claimed for job_id in mine]
    assert len(every) == len(set(every)) == 80
    assert set(every) == {job.id for job in jobs}
    # both connections did take part
    assert sum(map(len, claimed[0::2])) > 0 and sum(map(len, claimed[1::2])) > 0


CLAIMER = """
import asyncio, json, sys, time
from pathlib import Path
from app.store.sqlite import SQLiteStore

async def main(path, name, go):
    store = SQLiteStore(Path(path))
    await store.open()
    print("ready", flush=True)
    while not Path(go).exists():
        time.sleep(0.002)
    mine = []
    while (job := await store.claim_job(name, 60)) is not None:
        mine.append(job.id)
        time.sleep(0.002)
    await store.close()
    print(json.dumps(mine), flush=True)

asyncio.run(main(*sys.argv[1:]))
"""


async def test_processes_claiming_from_one_file_never_share_a_job(store, tmp_path):
    jobs = await store.enqueue(new_jobs(150))
    go = tmp_path / "go"
    processes = [subprocess.Popen([sys.executable, "-c", CLAIMER, str(store.path), f"p{n}", str(go)],
                                  cwd=REPO, stdout=subprocess.PIPE, text=True) for n in range(3)]
    try:
        for process in processes:  # every claimer has opened the catalog before any starts claiming
            assert process.stdout.readline().strip() == "ready"
        go.touch()
        outputs = [process.communicate(timeout=120)[0] for process in processes]
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()
    assert [process.returncode for process in processes] == [0, 0, 0]
    claimed = [json.loads(output.strip().splitlines()[-1]) for output in outputs]
    every = [job_id for mine in claimed for job_id in mine]
    assert len(every) == len(set(every)) == 150
    assert set(every) == {job.id for job in jobs}
    assert sum(1 for mine in claimed if mine) >= 2, "only one process claimed anything"


# leases ----------------------------------------------------------------------------------------------

async def test_a_running_job_whose_lease_ran_out_is_taken_again(store):
    store.use_clock(clock := Clock())
    [job] = await store.enqueue(new_jobs(1))
    crashed = await store.claim_job("crashed", 30)
    clock.advance(29.9)
    assert await store.claim_job("rescuer", 60) is None  # still leased
    clock.advance(0.2)
    rescued = await store.claim_job("rescuer", 60)
    assert rescued.id == crashed.id == job.id
    assert (rescued.worker, rescued.attempts, rescued.state) == ("rescuer", 2, "running")
    # the first claimer comes back to life: it no longer owns the job
    assert await store.renew_lease(job.id, "crashed", 60) is False
    assert await store.finish_job(job.id, "crashed", state="failed", error="too late") is False
    assert await store.finish_job(job.id, "rescuer", state="done", image_ids=["i1"]) is True
    [final] = await store.get_jobs([job.id])
    assert (final.state, final.error, final.image_ids, final.worker) == ("done", "", ["i1"], "rescuer")


async def test_renew_lease_keeps_the_job_and_only_for_its_owner(store):
    store.use_clock(clock := Clock())
    [job] = await store.enqueue(new_jobs(1))
    claimed = await store.claim_job("owner", 30)
    clock.advance(20)
    assert await store.renew_lease(job.id, "intruder", 60) is False
    assert await store.renew_lease(job.id, "owner", 60) is True
    [renewed] = await store.get_jobs([job.id])
    assert renewed.lease_until == claimed.lease_until + 50
    clock.advance(40)  # past the first lease
    assert await store.claim_job("other", 60) is None
    assert await store.finish_job(job.id, "owner", state="done") is True
    assert await store.renew_lease(job.id, "owner", 60) is False  # finished jobs have no lease
    assert await store.renew_lease("no-such-job", "owner", 60) is False


async def test_a_released_job_is_queued_again_at_once(store):
    [job] = await store.enqueue(new_jobs(1))
    await store.claim_job("stopping", 600)
    assert await store.release_job(job.id, "intruder") is False
    assert await store.release_job(job.id, "stopping") is True
    [released] = await store.get_jobs([job.id])
    assert (released.state, released.worker, released.lease_until) == ("queued", "", 0)
    assert await store.release_job(job.id, "stopping") is False  # no longer running
    taken = await store.claim_job("next", 60)  # no wait for the 600 s lease
    assert (taken.id, taken.worker) == (job.id, "next")
    assert await store.finish_job(job.id, "stopping", state="done") is False
    assert await store.finish_job(job.id, "next", state="done") is True
    assert await store.release_job(job.id, "next") is False  # a finished job stays finished
    assert (await store.get_jobs([job.id]))[0].state == "done"


async def test_finish_records_the_outcome(store):
    jobs = await store.enqueue(new_jobs(2))
    a = await store.claim_job("w", 60)
    b = await store.claim_job("w", 60)
    store.use_clock(clock := Clock())
    assert await store.finish_job(a.id, "w", state="done", note="HDU 1: no WCS", image_ids=["x", "y"])
    clock.advance(0.01)
    assert await store.finish_job(b.id, "w", state="failed", error="b: truncated")
    assert await store.finish_job(a.id, "w", state="failed") is False  # already finished
    got = {job.id: job for job in await store.get_jobs([job.id for job in jobs])}
    assert (got[a.id].state, got[a.id].note, got[a.id].image_ids) == ("done", "HDU 1: no WCS", ["x", "y"])
    assert (got[b.id].state, got[b.id].error) == ("failed", "b: truncated")
    assert [job.id for job in await store.list_jobs()] == [b.id, a.id]  # most recently updated first
    assert [job.id for job in await store.list_jobs("done")] == [a.id]
    assert await store.list_jobs("queued") == []
    assert [job.id for job in await store.list_jobs(offset=1, limit=1)] == [a.id]


async def test_get_jobs_with_many_ids(store):
    jobs = await store.enqueue(new_jobs(1200))
    got = await store.get_jobs([job.id for job in jobs] + ["missing"])
    assert {job.id for job in got} == {job.id for job in jobs}


async def test_job_counts_has_every_state(store):
    assert await store.job_counts() == dict.fromkeys(JOB_STATES, 0)
    await store.enqueue(new_jobs(5))
    await claim_and_finish(store, "w", "done")
    await claim_and_finish(store, "w", "failed", "broken")
    await store.claim_job("w", 60)
    assert await store.job_counts() == {"queued": 2, "running": 1, "harvested": 0, "done": 1, "failed": 1}


# the runner ------------------------------------------------------------------------------------------

def test_worker_names_are_unique_and_say_who():
    names = {worker_name("ingest") for _ in range(50)}
    assert len(names) == 50
    assert all(":ingest:" in name for name in names)


async def test_runner_with_an_empty_queue_does_nothing(archive):
    runner = JobRunner(archive, concurrency=2, role="test")
    assert await runner.run_one() is False
    assert runner.active == 0


async def test_runner_runs_good_and_bad_files_to_an_outcome(archive, write_fits, tmp_path):
    good = write_fits("good.fits", size=96)
    bad = tmp_path / "in" / "bad.fits"
    bad.write_text("observing notes, saved with the wrong name\n")
    jobs = await archive.store.enqueue([job_for(good), job_for(bad)])
    finished = []
    runner = JobRunner(archive, concurrency=2, role="test",
                       on_finish=lambda job, outcome: finished.append((job.path, outcome.state)))
    stop = asyncio.Event()
    seen: list[int] = []
    running = asyncio.create_task(runner.run(stop))
    final = await asyncio.wait_for(
        wait_for(archive, [job.id for job in jobs], stop, lambda now: seen.append(len(now)), poll=0.05), 120)
    await asyncio.wait_for(running, 10)
    by_path = {Path(job.path).name: job for job in final}
    assert by_path["good.fits"].state == "done", by_path["good.fits"].error
    assert by_path["bad.fits"].state == "failed"
    assert by_path["bad.fits"].error.startswith("bad.fits: this is a text file, not an image")
    assert sorted(finished) == sorted([(str(good), "done"), (str(bad), "failed")])
    [image] = await archive.store.find_images()
    assert by_path["good.fits"].image_ids == [image.id] and image.job_id == by_path["good.fits"].id
    assert seen and all(count == 2 for count in seen)
    assert stop.is_set()


async def test_the_queue_tells_this_process_of_its_changes(store):
    """What an idle runner waits on: every job queued, asked for, given back or finished through this store
    moves the queue's version on and wakes whoever waits beyond the version they saw."""
    seen = store.queue_version()
    assert await store.queue_changed(seen, 0.01) is False  # nothing happened: the wait runs out
    waiting = asyncio.create_task(store.queue_changed(seen, 600))
    await asyncio.sleep(0)
    [job] = await store.enqueue(new_jobs(1))
    assert await asyncio.wait_for(waiting, 10) is True
    after_enqueue = store.queue_version()
    assert after_enqueue != seen and await store.queue_changed(seen, 600) is True  # no wait: changed already
    claimed = await store.claim_job("w", 60)
    assert claimed is not None and store.queue_version() == after_enqueue  # a claim is nothing to take
    assert await store.release_job(job.id, "w")
    released = store.queue_version()
    assert released != after_enqueue
    assert not await store.release_job(job.id, "w") and store.queue_version() == released  # nothing changed
    await claim_and_finish(store, "w", "failed", "bad")
    assert store.queue_version() != released
    finished = store.queue_version()
    assert await store.requeue_job(job.id) and store.queue_version() != finished


async def test_a_wait_on_the_queue_cancelled_as_the_queue_changes_is_cancelled(store):
    """Ctrl-C reaches `imagex ingest` as a cancellation of what it waits on, often the moment a job ends:
    the wait must end cancelled, not report the change (the command would run on to the end)."""
    seen = store.queue_version()
    waiting = asyncio.create_task(store.queue_changed(seen, 600))
    await asyncio.sleep(0)
    await store.enqueue(new_jobs(1))  # wakes the wait...
    waiting.cancel()  # ...and Ctrl-C comes before it runs again
    with pytest.raises(asyncio.CancelledError):
        await waiting


async def test_an_idle_runner_takes_a_job_queued_in_its_process_at_once(archive, write_fits, monkeypatch):
    """Queued through the same store (an upload, the watcher), a job is taken without waiting for the idle
    poll, which only looks for other processes' jobs."""
    monkeypatch.setattr("app.ingest.jobs.IDLE_POLL", 3600.0)
    runner = JobRunner(archive, concurrency=2, role="test")
    stop = asyncio.Event()
    running = asyncio.create_task(runner.run(stop))
    try:
        while runner.claims < 2:  # both loops found the queue empty and went idle
            await asyncio.sleep(0.01)
        [job] = await archive.store.enqueue([job_for(write_fits("late.fits", size=64))])
        deadline = time.monotonic() + 120  # the idle poll would take an hour
        while (await archive.store.get_jobs([job.id]))[0].state not in ("done", "failed"):
            assert not running.done() and time.monotonic() < deadline, "the runner did not wake"
            await asyncio.sleep(0.05)
    finally:
        stop.set()
        await asyncio.wait_for(running, 30)
    [final] = await archive.store.get_jobs([job.id])
    assert final.state == "done", final.error


async def test_waiting_for_jobs_run_in_this_process_ends_when_they_do(archive, write_fits):
    """`imagex ingest` waits for its jobs: those its own runner finishes are seen at once, not at the next
    poll (here an hour away)."""
    jobs = await archive.store.enqueue([job_for(write_fits(f"f{n}.fits", size=64)) for n in range(2)])
    stop = asyncio.Event()
    running = asyncio.create_task(JobRunner(archive, concurrency=2, role="test").run(stop))
    final = await asyncio.wait_for(wait_for(archive, [job.id for job in jobs], stop, lambda now: None,
                                            poll=3600), 120)
    await asyncio.wait_for(running, 30)
    assert [job.state for job in final] == ["done", "done"], [job.error for job in final]


async def test_runner_renews_its_lease_while_the_job_waits(tmp_path, pool, write_fits):
    """A job that takes several lease periods (here it waits for a busy pool) stays with its runner."""
    settings = Settings.load(environ={}, hips=False, data=str(tmp_path / "var"), workers=2, job_lease=0.3)
    archive = Archive(settings, pool=pool, passwords=QUICK_PASSWORDS)
    await archive.startup()
    try:
        path = write_fits("slow.fits", size=64)
        [job] = await archive.store.enqueue([job_for(path)])
        busy = [asyncio.create_task(pool.run(time.sleep, 1.5)) for _ in range(pool.size)]
        await asyncio.sleep(0.2)  # the sleeps hold every pool process
        runner = JobRunner(archive, concurrency=1, role="slow")
        started = time.monotonic()
        running = asyncio.create_task(runner.run_one())
        while runner.active == 0:  # the runner has claimed the job
            assert not running.done()
            await asyncio.sleep(0.01)
        rival_claims = []
        while not running.done():
            rival_claims.append(await archive.store.claim_job("rival", 60))
            await asyncio.sleep(0.05)
        assert await running is True
        await asyncio.gather(*busy)
        assert time.monotonic() - started > 3 * settings.job_lease
        assert rival_claims and all(claim is None for claim in rival_claims)
        [final] = await archive.store.get_jobs([job.id])
        assert (final.state, final.worker, final.attempts) == ("done", runner.worker, 1), final.error
    finally:
        await archive.close()


async def test_a_stopped_runner_hands_its_job_back_to_the_queue(tmp_path, pool, write_fits):
    settings = Settings.load(environ={}, hips=False, data=str(tmp_path / "var"), workers=2, job_lease=600)
    archive = Archive(settings, pool=pool, passwords=QUICK_PASSWORDS)
    await archive.startup()
    try:
        [job] = await archive.store.enqueue([job_for(write_fits("stopped.fits", size=64))])
        busy = [asyncio.create_task(pool.run(time.sleep, 1.0)) for _ in range(pool.size)]
        await asyncio.sleep(0.2)
        runner = JobRunner(archive, concurrency=1, role="stopping")
        running = asyncio.create_task(runner.run_one())
        while runner.active == 0:
            assert not running.done()
            await asyncio.sleep(0.01)
        running.cancel()  # what Ctrl-C or SIGTERM does to the runner's tasks
        with pytest.raises(asyncio.CancelledError):
            await running
        [released] = await archive.store.get_jobs([job.id])
        assert (released.state, released.worker) == ("queued", "")
        # the next runner takes it at once, without waiting for the 600 s lease
        assert await JobRunner(archive, concurrency=1, role="next").run_one() is True
        [final] = await archive.store.get_jobs([job.id])
        assert final.state == "done", final.error
        assert await archive.store.count_images() == 1
        await asyncio.gather(*busy)
    finally:
        await archive.close()
