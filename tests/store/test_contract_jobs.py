"""The contract of the `Store` interface, continued (see test_contract.py): the job queue, the fleet of
processes, and claims and reservations made at once from several processes."""

from __future__ import annotations

import asyncio

from app.store import open_store
from tests.clock import Clock
from tests.store.examples import job, process

# jobs ------------------------------------------------------------------------------------------------

async def test_enqueue_returns_one_job_per_key_and_queues_each_key_once(any_store):
    first = await any_store.enqueue([job("a", scaling={"stretch": "log"}), job("b")])
    assert [(j.key, j.state, j.attempts) for j in first] == [("a", "queued", 0), ("b", "queued", 0)]
    assert first[0].options == {"scaling": {"stretch": "log"}}
    again = await any_store.enqueue([job("b"), job("c"), job("a")])
    assert [j.key for j in again] == ["b", "c", "a"]
    assert again[0].id == first[1].id and again[2].id == first[0].id
    assert await any_store.enqueue([]) == []
    assert sorted(j.key for j in await any_store.jobs_with_keys(["a", "c", "zz", "a"])) == ["a", "c"]
    assert (await any_store.job_counts())["queued"] == 3


async def test_claims_take_the_oldest_queued_job_then_expired_leases(any_store):
    any_store.use_clock(clock := Clock())
    queued = await any_store.enqueue([job("j1"), job("j2")])
    one = await any_store.claim_job("w1", lease=60)
    two = await any_store.claim_job("w2", lease=30)
    assert (one.id, two.id) == (queued[0].id, queued[1].id)
    assert (one.state, one.worker, one.attempts) == ("running", "w1", 1)
    assert one.lease_until == clock() + 60
    clock.advance(29.5)
    assert await any_store.claim_job("w3", lease=60) is None  # nothing queued, no lease ran out
    clock.advance(1)
    taken = await any_store.claim_job("w3", lease=60)
    assert (taken.id, taken.worker, taken.attempts) == (two.id, "w3", 2)
    # w2 lost it: it can neither renew, nor finish, nor release it
    assert not await any_store.renew_lease(two.id, "w2", 60)
    assert not await any_store.finish_job(two.id, "w2", state="done")
    assert not await any_store.release_job(two.id, "w2")
    assert await any_store.renew_lease(two.id, "w3", 120)
    assert (await any_store.get_jobs([two.id]))[0].lease_until == clock() + 120


async def test_finish_release_requeue_and_retry(any_store):
    [a, b] = await any_store.enqueue([job("a"), job("b")])
    claimed = await any_store.claim_job("w", 60)
    assert claimed.id == a.id
    assert await any_store.finish_job(a.id, "w", state="done", note="ok", image_ids=["i1", "i2"])
    done = (await any_store.get_jobs([a.id]))[0]
    assert (done.state, done.note, done.image_ids, done.lease_until) == ("done", "ok", ["i1", "i2"], 0.0)
    assert not await any_store.finish_job(a.id, "w", state="failed")  # not running any more
    assert not await any_store.requeue_job(a.id)  # only failed jobs
    # released: queued again, claimable
    assert (await any_store.claim_job("w", 60)).id == b.id
    assert await any_store.release_job(b.id, "w")
    released = (await any_store.get_jobs([b.id]))[0]
    assert (released.state, released.worker) == ("queued", "")
    assert (await any_store.claim_job("w", 60)).id == b.id
    assert await any_store.finish_job(b.id, "w", state="failed", error="broken")
    assert (await any_store.get_jobs([b.id]))[0].error == "broken"
    # a failed job is queued again by enqueue (unless told not to) and by requeue_job
    assert (await any_store.enqueue([job("b")], retry_failed=False))[0].state == "failed"
    assert (await any_store.enqueue([job("b")]))[0].state == "queued"
    assert (await any_store.claim_job("w", 60)).id == b.id
    await any_store.finish_job(b.id, "w", state="failed", error="again")
    assert await any_store.requeue_job(b.id)
    requeued = (await any_store.get_jobs([b.id]))[0]
    assert (requeued.state, requeued.error, requeued.attempts) == ("queued", "", 3)
    assert not await any_store.requeue_job("missing")
    assert await any_store.get_jobs(["missing"]) == []


async def test_claiming_named_jobs_takes_those_still_queued_and_no_other(any_store):
    any_store.use_clock(clock := Clock())
    [a, b, c, d] = await any_store.enqueue([job("a"), job("b"), job("c"), job("d")])
    assert (await any_store.claim_job("other", 60)).id == a.id  # running: not taken again
    await any_store.claim_job("other", 60)
    await any_store.finish_job(b.id, "other", state="done")  # done: not taken
    assert await any_store.claim_jobs([d.id, a.id, b.id, "missing", c.id, d.id], "w", 30) == [d.id, c.id]
    taken = {j.id: j for j in await any_store.get_jobs([a.id, b.id, c.id, d.id])}
    assert [(taken[j].state, taken[j].worker, taken[j].attempts) for j in (a.id, b.id, c.id, d.id)] == [
        ("running", "other", 1), ("done", "other", 1), ("running", "w", 1), ("running", "w", 1)]
    assert taken[c.id].lease_until == clock() + 30
    assert await any_store.claim_jobs([c.id, d.id], "w2", 30) == []  # taken already
    assert await any_store.claim_jobs([], "w", 30) == []
    # each taken job is the claimer's as any claimed one: finished, released, or taken after its lease
    assert await any_store.finish_job(c.id, "w", state="harvested", image_ids=["i"])
    assert await any_store.release_job(d.id, "w")
    assert (await any_store.claim_job("w3", 60)).id == d.id
    assert await any_store.claim_job("w3", 60) is not None  # the harvested one
    assert await any_store.claim_job("w3", 60) is None


async def test_claiming_named_harvested_jobs_takes_those_still_harvested_as_the_same_attempt(any_store):
    """The second phase of a batch catalogued from its headers, a few files at a time."""
    any_store.use_clock(clock := Clock())
    [a, b, c] = await any_store.enqueue([job("a"), job("b"), job("c")])
    assert await any_store.claim_jobs([a.id, b.id, c.id], "w", 30) == [a.id, b.id, c.id]
    assert await any_store.finish_jobs({a.id: ["ia"], b.id: ["ib"]}, "w", state="harvested") == {a.id, b.id}
    assert await any_store.claim_jobs([a.id, b.id, c.id], "w2", 30) == []  # not queued
    clock.advance(5)
    assert await any_store.claim_jobs([c.id, b.id, a.id], "w2", 30, harvested=True) == [b.id, a.id]
    taken = {j.id: j for j in await any_store.get_jobs([a.id, b.id, c.id])}
    assert [(taken[j].state, taken[j].worker, taken[j].attempts, taken[j].image_ids) for j in (a.id, b.id)] \
        == [("running", "w2", 1, ["ia"]), ("running", "w2", 1, ["ib"])]
    assert taken[a.id].lease_until == clock() + 30
    assert (taken[c.id].state, taken[c.id].worker) == ("running", "w")  # still the first claimer's
    assert await any_store.claim_jobs([a.id, b.id], "w3", 30, harvested=True) == []  # taken already
    assert await any_store.finish_jobs({a.id: ["ia"]}, "w2", state="done") == {a.id}
    assert [j.state for j in await any_store.get_jobs([a.id])] == ["done"]


async def test_jobs_finished_at_once_are_those_still_the_workers(any_store):
    any_store.use_clock(clock := Clock())
    [a, b, c, d] = await any_store.enqueue([job("a"), job("b"), job("c"), job("d")])
    assert await any_store.claim_jobs([a.id, b.id, c.id], "w", 30) == [a.id, b.id, c.id]
    assert await any_store.release_job(c.id, "w")  # back in the queue: no longer w's
    clock.advance(5)
    finished = await any_store.finish_jobs({a.id: ["i1", "i2"], b.id: [], c.id: ["i3"], d.id: ["i4"],
                                            "missing": []}, "w", state="harvested")
    assert finished == {a.id, b.id}
    jobs = {j.id: j for j in await any_store.get_jobs([a.id, b.id, c.id, d.id])}
    assert [(jobs[j].state, jobs[j].image_ids, jobs[j].lease_until) for j in (a.id, b.id)] == [
        ("harvested", ["i1", "i2"], 0), ("harvested", [], 0)]
    assert jobs[a.id].updated == clock()
    assert [(jobs[j].state, jobs[j].image_ids) for j in (c.id, d.id)] == [("queued", []), ("queued", [])]
    assert await any_store.finish_jobs({}, "w", state="harvested") == set()


async def test_job_states_say_each_job_s_state_and_whether_it_has_images(any_store):
    """What a progress poll reads (`imagex ingest`): the state of each job asked for, and whether it has
    catalogued images (harvested, or its pyramids being built); unknown ids are left out."""
    [a, b, c, d] = await any_store.enqueue([job("a"), job("b"), job("c"), job("d")])
    assert await any_store.job_states([a.id, b.id, "missing"]) == {a.id: ("queued", False),
                                                                   b.id: ("queued", False)}
    assert await any_store.claim_jobs([a.id, b.id, c.id], "w", 30) == [a.id, b.id, c.id]
    await any_store.finish_job(a.id, "w", state="harvested", image_ids=["i1"])
    await any_store.finish_job(b.id, "w", state="done", image_ids=["i2", "i3"])
    await any_store.finish_job(c.id, "w", state="failed", error="broken")
    assert (await any_store.claim_job("w", 30)).id == d.id  # the queue first
    assert (await any_store.claim_job("w", 30)).id == a.id  # then the harvested job's second phase
    assert await any_store.job_states([a.id, b.id, c.id, d.id]) == {
        a.id: ("running", True), b.id: ("done", True), c.id: ("failed", False), d.id: ("running", False)}
    assert await any_store.job_states([]) == {}


async def test_list_jobs_and_counts_by_state_and_owner(any_store):
    any_store.use_clock(clock := Clock())
    jobs = await any_store.enqueue([job("a", owner="u1"), job("b", owner="u2"), job("c", owner="u1")])
    await any_store.claim_job("w", 60)
    clock.advance(0.01)
    await any_store.finish_job(jobs[0].id, "w", state="done")
    # most recently updated first: the finished one, then the queue, whose later entries are newer
    assert [j.key for j in await any_store.list_jobs()] == ["a", "c", "b"]
    assert [j.key for j in await any_store.list_jobs("queued")] == ["c", "b"]
    assert [j.key for j in await any_store.list_jobs(owner="u1")] == ["a", "c"]
    assert [j.key for j in await any_store.list_jobs("queued", owner="u1")] == ["c"]
    assert [j.key for j in await any_store.list_jobs(offset=1, limit=1)] == ["c"]
    assert await any_store.job_counts() == {"queued": 2, "running": 0, "harvested": 0, "done": 1, "failed": 0}
    assert await any_store.job_counts(owner="u2") == {"queued": 1, "running": 0, "harvested": 0, "done": 0,
                                                      "failed": 0}
    assert await any_store.job_counts(owner="nobody") == dict.fromkeys(
        ("queued", "running", "harvested", "done", "failed"), 0)


async def test_harvested_jobs_are_claimed_again_after_the_queue_unless_somebody_waits(any_store):
    """Two-phase ingest: a job finished as harvested (its images catalogued, keeping their ids) is claimed
    again for its pyramids once no file waits for its harvest; one whose image was opened meanwhile
    (`prioritize_job`) comes before everything, the latest asked for first."""
    any_store.use_clock(clock := Clock())
    first, second, third = await any_store.enqueue([job("a"), job("b"), job("c")])
    for expected in (first, second):
        claimed = await any_store.claim_job("w", 60)
        assert claimed.id == expected.id
        assert await any_store.finish_job(claimed.id, "w", state="harvested", note="n", image_ids=["i"])
    assert not await any_store.prioritize_job(third.id), "only a harvested job can be put first"
    assert (await any_store.job_counts())["harvested"] == 2
    [harvested] = await any_store.get_jobs([first.id])
    assert (harvested.state, harvested.image_ids, harvested.note, harvested.priority) == (
        "harvested", ["i"], "n", 0.0)
    # the file never harvested comes first, then the oldest harvested one
    assert (await any_store.claim_job("w", 60)).id == third.id
    assert (await any_store.claim_job("w", 60)).id == first.id
    again = await any_store.claim_job("w", 60)
    # the same attempt, in its second phase
    assert (again.id, again.state, again.image_ids, again.attempts) == (second.id, "running", ["i"], 1)
    assert await any_store.claim_job("w", 60) is None
    # somebody opens the images of two harvested jobs: the latest request is served first, before a new file
    assert await any_store.finish_job(first.id, "w", state="harvested", image_ids=["i"])
    assert await any_store.finish_job(second.id, "w", state="harvested", image_ids=["i"])
    [fourth] = await any_store.enqueue([job("d")])
    assert await any_store.prioritize_job(first.id)
    clock.advance(1)
    assert await any_store.prioritize_job(second.id)
    assert (await any_store.claim_job("w", 60)).id == second.id
    claimed = await any_store.claim_job("w", 60)
    assert (claimed.id, claimed.priority) == (first.id, 0.0)
    assert (await any_store.claim_job("w", 60)).id == fourth.id
    assert not await any_store.prioritize_job(first.id), "a running job is not put first"


async def test_a_tiling_turn_takes_the_harvested_job_that_waited_longest_before_queued_files(any_store):
    """`harvested_for`: harvested jobs that have waited at least that long for their pyramids come before
    the queued files, the one harvested earliest first; those harvested since wait their turn. A job
    somebody waits for still comes first."""
    any_store.use_clock(clock := Clock())
    first, second, third, fourth = await any_store.enqueue([job("a"), job("b"), job("c"), job("d")])
    for expected in (first, second):
        claimed = await any_store.claim_job("w", 60)
        assert claimed.id == expected.id
        assert await any_store.finish_job(claimed.id, "w", state="harvested", image_ids=["i"])
        clock.advance(10)
    # `first` was harvested 20 s ago, `second` 10 s ago
    assert (await any_store.claim_job("w", 60, harvested_for=30)).id == third.id, "none waited 30 s"
    taken = await any_store.claim_job("w", 60, harvested_for=15)
    assert (taken.id, taken.state, taken.attempts) == (first.id, "running", 1)
    assert (await any_store.claim_job("w", 60)).id == fourth.id, "without a turn, queued files first"
    assert await any_store.prioritize_job(second.id)
    assert (await any_store.claim_job("w", 60, harvested_for=0)).id == second.id
    assert await any_store.claim_job("w", 60, harvested_for=0) is None


async def test_jobs_finished_since_a_time_give_an_ingest_rate(any_store):
    any_store.use_clock(clock := Clock())
    start = clock()
    assert await any_store.finished_since(start - 300) == (0, None)
    jobs = await any_store.enqueue([job(key, owner=owner) for key, owner in
                                    (("a", "u1"), ("b", "u2"), ("c", "u1"), ("d", "u1"))])
    for finished, state in zip(jobs[:3], ("done", "failed", "done"), strict=True):
        clock.advance(10)
        claimed = await any_store.claim_job("w", 60)
        assert claimed is not None and claimed.id == finished.id
        await any_store.finish_job(claimed.id, "w", state=state)
    await any_store.claim_job("w", 60)  # running: not finished
    assert await any_store.finished_since(start) == (3, start + 10)
    assert await any_store.finished_since(start + 15) == (2, start + 20)
    assert await any_store.finished_since(start + 15, owner="u1") == (1, start + 30)
    assert await any_store.finished_since(start + 31) == (0, None)
    clock.advance(5)
    assert await any_store.requeue_job(jobs[1].id)  # queued again: no longer finished
    assert await any_store.finished_since(start) == (2, start + 10)


async def test_concurrent_claims_never_share_a_job(any_store):
    await any_store.enqueue([job(f"k{n}") for n in range(20)])
    claimed = await asyncio.gather(*(any_store.claim_job(f"w{n}", 60) for n in range(30)))
    ids = [j.id for j in claimed if j is not None]
    assert len(ids) == 20 and len(set(ids)) == 20


# the fleet -------------------------------------------------------------------------------------------


async def test_processes_register_beat_and_leave(any_store):
    assert await any_store.list_processes() == []
    web = process("node1:10:serve:aaa", "serve", pool_size=2)
    worker = process("node1:11:worker:bbb", pool_size=4, jobs=[{"id": "j1", "path": "/in/a.fits"}])
    await any_store.beat(worker)
    await any_store.beat(web)
    assert await any_store.list_processes() == [web, worker]  # by role, then start
    # a heartbeat replaces the record: newer time, other jobs, counts
    worker.last_seen, worker.jobs, worker.done, worker.failed = 1010.0, [], 3, 1
    await any_store.beat(worker)
    assert (await any_store.list_processes())[1] == worker
    assert await any_store.remove_process(web.id)
    assert not await any_store.remove_process(web.id)
    assert await any_store.list_processes() == [worker]


async def test_a_silent_process_is_lost_after_its_lease_and_forgotten_much_later(any_store):
    quiet = process("quiet", last_seen=1000.0, lease=30.0)
    recent = process("recent", last_seen=5000.0, lease=30.0)
    await any_store.beat(quiet)
    await any_store.beat(recent)
    [first, second] = await any_store.list_processes()
    assert (first.lost(1030.0), first.lost(1030.5), second.lost(1030.5)) == (False, True, False)
    assert await any_store.forget_processes(before=1000.0) == 0  # seen at 1000 exactly: kept
    assert await any_store.forget_processes(before=4000.0) == 1
    assert [entry.id for entry in await any_store.list_processes()] == ["recent"]


# atomic across processes -------------------------------------------------------------------------------

RACER = """
import asyncio, json, sys, time
from pathlib import Path
from app.store import open_store

async def main(url, name, start):
    store = open_store(url)
    await store.open()
    print("ready", flush=True)
    while not Path(start).exists():
        time.sleep(0.001)
    granted = [(await store.reserve_upload(f"{name}-{n}", "u", 100, quota=1050, ttl=60)).granted
               for n in range(6)]
    claimed = []
    while (job := await store.claim_job(name, 60)) is not None:
        claimed.append(job.id)
    await store.close()
    print(json.dumps({"granted": sum(granted), "claimed": claimed}), flush=True)

asyncio.run(main(*sys.argv[1:]))
"""


async def test_reservations_and_claims_are_atomic_across_processes(adapter_url, tmp_path):
    """Four processes on one catalog: together they never reserve past the quota, and every job is
    claimed by exactly one of them."""
    import json
    import subprocess
    import sys
    from pathlib import Path

    store = open_store(adapter_url)
    await store.open()
    await store.enqueue([job(f"k{n}") for n in range(40)])
    await store.close()
    start = tmp_path / "start"
    racers = [subprocess.Popen([sys.executable, "-c", RACER, adapter_url, f"p{n}", str(start)],
                               cwd=Path(__file__).resolve().parents[2], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True) for n in range(4)]
    try:
        for racer in racers:
            assert racer.stdout.readline().strip() == "ready", racer.communicate(timeout=60)[1]
        start.touch()
        outcomes = []
        for racer in racers:
            out, err = await asyncio.to_thread(racer.communicate, timeout=120)
            assert racer.returncode == 0, err
            outcomes.append(json.loads(out.strip().splitlines()[-1]))
    finally:
        for racer in racers:
            if racer.poll() is None:
                racer.kill()
                racer.wait()
    assert sum(outcome["granted"] for outcome in outcomes) == 10
    claimed = [job_id for outcome in outcomes for job_id in outcome["claimed"]]
    assert len(claimed) == 40 and len(set(claimed)) == 40
