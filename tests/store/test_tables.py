"""The plain-table primitives every adapter supplies (app/store/tables.py), on SQLite always and on MongoDB
when IMAGEX_TEST_MONGODB_URL is set: the accounts, the job queue, the search elements, the fleet and what is
saved by name are written once over them, so each adapter must answer them alike."""

from __future__ import annotations

import asyncio

import pytest

from app.exceptions import Conflict, StoreError
from app.store import tables
from app.store.records import ProcessRecord
from app.store.tables import (
    LOCK_LEASE,
    LOCKS,
    LOGIN_FAILURES,
    PROCESSES,
    SETTINGS,
    Change,
    Lease,
    LoginFailure,
    Setting,
    above,
    at_least,
    at_most,
    below,
    one_of,
    starting,
)
from tests.clock import Clock


def process(name: str, role: str, started: float, *, done: int = 0) -> ProcessRecord:
    return ProcessRecord(id=name, role=role, host="h", pid=1, version="v", started=started, last_seen=started,
                         lease=30.0, jobs=[{"id": "j", "path": "/p"}], done=done)


async def test_records_are_added_replaced_or_refused_by_key(any_store):
    store = any_store
    assert await store._insert(SETTINGS, [Setting("a", "1"), Setting("b", "2")]) == 2
    with pytest.raises(Conflict, match="name taken"):
        await store._insert(SETTINGS, [Setting("a", "3")], taken="name taken")
    assert await store._insert(SETTINGS, [Setting("a", "4"), Setting("c", "5")], skip_taken=True) == 1
    assert await store._insert(SETTINGS, [Setting("b", "6")], replace=True) == 1
    assert await store._select(SETTINGS, {}, order=["name"]) == [Setting("a", "1"), Setting("b", "6"),
                                                                 Setting("c", "5")]
    assert await store._insert(SETTINGS, []) == 0


async def test_conditions_order_and_pages(any_store):
    store = any_store
    failures = [LoginFailure(key, at) for key, at in
                [("user:a%_(x)*@1", 1.0), ("user:a%_(x)*@2", 2.0), ("user:ab@1", 3.0), ("addr:1", 4.0)]]
    assert await store._insert(LOGIN_FAILURES, failures) == 4  # no key of their own: all kept

    async def keys(where, **options):
        return [failure.key for failure in await store._select(LOGIN_FAILURES, where, **options)]

    by_time = {"order": ["at"]}
    assert await keys({"at": below(2.0)}, **by_time) == ["user:a%_(x)*@1"]
    assert await keys({"at": at_most(2.0)}, **by_time) == ["user:a%_(x)*@1", "user:a%_(x)*@2"]
    assert await keys({"at": above(3.0)}, **by_time) == ["addr:1"]
    assert await keys({"at": at_least(3.0)}, **by_time) == ["user:ab@1", "addr:1"]
    assert await keys({"key": one_of(["addr:1", "nobody"])}) == ["addr:1"]
    assert await keys({"key": one_of([])}) == []
    # a prefix is matched as text: neither LIKE's % and _ nor a regular expression's ( ) * mean anything
    assert await keys({"key": starting("user:a%_(x)*")}, **by_time) == ["user:a%_(x)*@1", "user:a%_(x)*@2"]
    assert await keys({"key": starting("user:a")}, order=["-at"]) == [
        "user:ab@1", "user:a%_(x)*@2", "user:a%_(x)*@1"]
    assert await keys({}, order=["-at"], offset=1, limit=2) == ["user:ab@1", "user:a%_(x)*@2"]
    assert await keys({}, order=["at"], offset=3) == ["addr:1"]
    assert await keys({"key": "addr:1", "at": 4.0}) == ["addr:1"]
    assert await store._count(LOGIN_FAILURES, {"at": above(1.0)}, by="key") == {
        "user:a%_(x)*@2": 1, "user:ab@1": 1, "addr:1": 1}
    assert await store._delete(LOGIN_FAILURES, {"key": starting("user:")}) == 3
    assert await keys({}) == ["addr:1"]


async def test_changes_count_what_they_matched_and_a_claim_takes_the_first_in_order(any_store):
    store = any_store
    await store._insert(PROCESSES, [process("p1", "worker", 10.0), process("p2", "worker", 5.0),
                                    process("p3", "serve", 1.0)])
    counts = await store._apply(PROCESSES, [
        Change({"role": "worker"}, {"version": "w"}, {"done": 2}),
        Change({"id": "p3", "version": "w"}, {"pool_size": 4}),  # p3's version is still "v"
        Change({"id": "missing"}, {"pool_size": 1})])
    assert counts == [2, 0, 0]
    listed = await store._select(PROCESSES, {}, order=["id"])
    assert [(p.id, p.version, p.done, p.pool_size) for p in listed] == [
        ("p1", "w", 2, 0), ("p2", "w", 2, 0), ("p3", "v", 0, 0)]
    # structured fields are stored and changed whole
    assert await store._update(PROCESSES, {"id": "p3"}, {"jobs": [{"id": "k", "path": "/q"}]}) == 1
    assert (await store._one(PROCESSES, {"id": "p3"})).jobs == [{"id": "k", "path": "/q"}]

    claimed = await store._claim(PROCESSES, {"role": "worker", "pool_size": 0}, ["started"],
                                 Change({}, {"pool_size": 8}, {"done": 1}))
    assert (claimed.id, claimed.pool_size, claimed.done) == ("p2", 8, 3)  # the earliest started, as changed
    again = await store._claim(PROCESSES, {"role": "worker", "pool_size": 0}, ["-started"],
                               Change({}, {"pool_size": 8}))
    assert again.id == "p1"
    assert await store._claim(PROCESSES, {"role": "worker", "pool_size": 0}, ["started"],
                              Change({}, {"pool_size": 8})) is None
    assert await store._count(PROCESSES, {}, by="role") == {"worker": 2, "serve": 1}
    assert await store._delete(PROCESSES, {"id": "missing"}) == 0


async def test_a_lock_is_held_by_one_at_a_time_and_a_dead_holders_lease_runs_out(any_store, monkeypatch):
    store = any_store
    store.use_clock(clock := Clock())
    monkeypatch.setattr(tables, "LOCK_WAIT", LOCK_LEASE / 3)

    async def take(name: str) -> None:
        async with store._locked(name):
            pass

    async with store._locked("upload:u"):
        waiter = asyncio.ensure_future(take("upload:u"))
        await asyncio.sleep(0)  # it has started waiting
        await take("upload:v")  # another name is another lock
        clock.advance(LOCK_LEASE / 2)  # past the wait, within the holder's lease
        with pytest.raises(StoreError, match=r"lock 'upload:u' stayed busy for 10 s"):
            await asyncio.wait_for(waiter, 30)
    assert await store._select(LOCKS, {}) == []  # given back
    await take("upload:u")
    # a process that died holding the lock left its lease: it is taken over once the lease runs out
    await store._insert(LOCKS, [Lease("upload:u", clock() + LOCK_LEASE, "dead")])
    clock.advance(LOCK_LEASE + 1)
    async with store._locked("upload:u"):
        assert [lease.holder for lease in await store._select(LOCKS, {})] != ["dead"]
    assert await store._select(LOCKS, {}) == []
