"""The parts of a graceful stop and of cleaning up after dead runners, in process on a real catalog and
pool: work folders of jobs nobody runs are removed (and a live one kept), a job's earlier attempts are
removed when it is claimed again, and `JobRunner.drain` gives a job back at once when hurried."""

from __future__ import annotations

import asyncio
import time

import numpy as np

from app.ingest.jobs import JobRunner, clear_attempts, remove_abandoned_work
from app.ingest.scan import job_for


async def queued(archive, write_fits, count):
    paths = [write_fits(f"f{n}.fits") for n in range(count)]
    return await archive.store.enqueue([job_for(path) for path in paths])


def work_folder(archive, job_id, attempt="aaaa"):
    folder = archive.settings.tiles_dir / ".work" / f"{job_id}-{attempt}" / "0" / "image_files" / "12"
    folder.mkdir(parents=True)
    (folder / "0_0.jpeg").write_bytes(b"\xff\xd8half")
    return folder.parents[2]


async def test_work_of_jobs_nobody_runs_is_removed_and_a_running_jobs_is_kept(archive, write_fits):
    await queued(archive, write_fits, 4)
    done, failed, given_back, live = [await archive.store.claim_job("w1", 60) for _ in range(4)]
    await archive.store.finish_job(done.id, "w1", state="done")
    await archive.store.finish_job(failed.id, "w1", state="failed")
    await archive.store.release_job(given_back.id, "w1")
    jobs = (done, failed, given_back, live)
    states = {job.id: job.state for job in await archive.store.get_jobs([job.id for job in jobs])}
    assert [states[job.id] for job in jobs] == ["done", "failed", "queued", "running"]
    folders = {job.id: work_folder(archive, job.id) for job in (done, failed, given_back, live)}
    folders["gone"] = work_folder(archive, "NoSuchJob1")

    assert await remove_abandoned_work(archive) == 4
    assert [job_id for job_id, folder in folders.items() if folder.exists()] == [live.id]
    assert await remove_abandoned_work(archive) == 0


async def test_claiming_again_removes_only_that_jobs_earlier_attempts(archive):
    work = archive.settings.tiles_dir / ".work"
    assert await clear_attempts(archive, ["JobA"]) == 0  # no work folder yet
    for name in ("JobA-first", "JobA-second", "JobAB-other", "JobB-first"):
        (work / name / "0").mkdir(parents=True)
    assert await clear_attempts(archive, ["JobA"]) == 2
    assert sorted(p.name for p in work.iterdir()) == ["JobAB-other", "JobB-first"]
    assert await clear_attempts(archive, ["JobA", "JobB"]) == 1
    assert [p.name for p in work.iterdir()] == ["JobAB-other"]


async def test_a_hurried_drain_gives_the_running_job_back_at_once(archive, write_fits):
    size = 3000
    noise = np.random.default_rng(3).normal(100.0, 5.0, (size, size)).astype("float32")
    path = write_fits("slow.fits", size=size, data=noise)
    [job] = await archive.store.enqueue([job_for(path)])
    runner = JobRunner(archive, concurrency=1, role="test")
    stop, hurry = asyncio.Event(), asyncio.Event()
    task = asyncio.create_task(runner.run(stop))
    deadline = time.monotonic() + 60
    while job.id not in runner.current:
        assert time.monotonic() < deadline
        await asyncio.sleep(0.01)
    stop.set()
    hurry.set()
    started = time.monotonic()
    given_back = await runner.drain(task, grace=120, hurry=hurry)
    assert given_back == [job.id]
    assert time.monotonic() - started < 20
    [after] = await archive.store.get_jobs([job.id])
    assert after.state == "queued" and after.worker == ""
    assert await archive.store.count_images() == 0
    assert list((archive.settings.tiles_dir / ".work").glob(f"{job.id}-*")) == []
    assert runner.current == {} and runner.finished == 0
    # the pool starts afresh for the next job: the given-back job runs to the end
    runner = JobRunner(archive, concurrency=1, role="test")
    assert await runner.run_one()
    [after] = await archive.store.get_jobs([job.id])
    assert after.state == "harvested" and after.attempts == 2
    assert await runner.run_one()  # claimed again for its pyramids
    [after] = await archive.store.get_jobs([job.id])
    assert after.state == "done" and after.attempts == 2


def test_the_worker_names_its_store_without_the_password():
    """What `imagex worker` prints as its store when it is ready: the store's own location."""
    from app.settings import Settings
    from app.store import open_store

    mongo = Settings.load(environ={}, store="mongodb://imagex:s3cret@mongo:27017/imagex?authSource=admin")
    assert open_store(mongo.store_url).location() == "mongodb://imagex:***@mongo:27017/imagex?authSource=admin"
    plain = Settings.load(environ={}, store="mongodb://mongo:27017/imagex")
    assert open_store(plain.store_url).location() == "mongodb://mongo:27017/imagex"
    sqlite = Settings.load(environ={}, data="/srv/imagex")
    assert open_store(sqlite.store_url).location() == "/srv/imagex/catalog.sqlite"
