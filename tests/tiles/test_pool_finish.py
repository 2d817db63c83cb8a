"""A stopping process ends its pool at once when what the pool is still doing was for awaits that were
cancelled (a survey update or a job given back at shutdown): `docker stop` must not reach its SIGKILL."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from pathlib import Path

import pytest

from app import create_app
from app.archive import Archive
from app.exceptions import StoreError
from app.settings import Settings
from app.tiles.pool import Pool
from tests.helpers import QUICK_PASSWORDS
from tests.processes import children_of


def long_work(pid_file: str, seconds: float) -> int:
    Path(pid_file).write_text(str(os.getpid()))
    time.sleep(seconds)
    return os.getpid()


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def started(pid_file: Path) -> int:
    for _ in range(600):
        if pid_file.is_file() and pid_file.read_text():
            return int(pid_file.read_text())
        await asyncio.sleep(0.05)
    raise AssertionError("the pool never started the work")


async def gone(pid: int) -> bool:
    for _ in range(200):
        if not alive(pid):
            return True
        await asyncio.sleep(0.05)
    return False


async def test_finish_abandons_work_whose_await_was_cancelled(tmp_path: Path):
    pool = Pool(1)
    pid_file = tmp_path / "pid"
    waiting = asyncio.ensure_future(pool.run(long_work, str(pid_file), 600.0))
    pid = await started(pid_file)
    waiting.cancel()
    assert pool.busy  # the process goes on with it: nobody told it
    await asyncio.wait_for(asyncio.to_thread(pool.finish), 60)
    assert await gone(pid)
    assert not pool.busy


async def test_finish_after_finished_work_closes_and_the_pool_serves_again(tmp_path: Path):
    pool = Pool(1)
    pid = await pool.run(long_work, str(tmp_path / "pid"), 0.0)
    assert not pool.busy
    await asyncio.to_thread(pool.finish)
    assert await gone(pid)
    assert await pool.run(long_work, str(tmp_path / "again"), 0.0) != pid  # a new process on first use
    pool.close()


async def test_closing_an_archive_does_not_wait_for_pool_work_of_its_cancelled_tasks(settings: Settings,
                                                                                     tmp_path: Path):
    """What `imagex serve` does on SIGTERM: its background tasks are cancelled, and what they had handed to
    the pool must not keep the process alive."""
    archive = Archive(settings)
    await archive.startup()
    pid_file = tmp_path / "pid"

    async def background(stop: asyncio.Event) -> None:
        await archive.run_in_pool(long_work, str(pid_file), 600.0)

    archive.start_background("long", background)
    pid = await started(pid_file)
    await asyncio.wait_for(archive.close(survey_wait=0), 60)
    assert await gone(pid)


async def test_ctrl_c_while_an_archive_closes_ends_the_close_and_is_passed_on(settings: Settings):
    """Ctrl-C reaches `imagex ingest` as a cancellation, perhaps while its archive closes: the close still
    ends (its tasks, pool and catalog closed) and the command is interrupted, not reported finished."""
    archive = Archive(settings)
    await archive.startup()
    ended = asyncio.Event()

    async def background(stop: asyncio.Event) -> None:
        try:
            await asyncio.Event().wait()
        finally:
            await asyncio.sleep(0.3)  # a task that takes a while to end once cancelled
            ended.set()

    archive.start_background("slow to end", background)
    await asyncio.sleep(0)
    closing = asyncio.create_task(archive.close(survey_wait=0))
    await asyncio.sleep(0.1)
    closing.cancel()
    with pytest.raises(asyncio.CancelledError):
        await closing
    assert ended.is_set()
    with pytest.raises(StoreError, match="not open"):
        await archive.store.site_settings()


def spawned() -> set[int]:
    """This process's pool workers, of every pool (multiprocessing's spawned processes, not its resource
    tracker)."""
    found = set()
    for pid in children_of(os.getpid()):
        try:
            if b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes():
                found.add(pid)
        except OSError:
            continue
    return found


async def test_warming_starts_only_the_processes_asked_for():
    """`imagex ingest` starts one pool process before it walks the folders, then as many more as it has
    files to read, up to the pool's size: a single file needs one process, a batch all of them. (Other
    tests' pools in this process may still be ending: only the processes started here are counted.)"""
    before = spawned()
    pool = Pool(2)
    try:
        pool.warm("json", processes=1)
        pool.warm("json", processes=0)  # a single file: no other
        assert len(spawned() - before) == 1
        assert await pool.run(sum, [1, 2]) == 3
        pool.warm("json", processes=1999)  # a batch
        assert len(spawned() - before) == 2
    finally:
        pool.close()


def imported_before(modules: tuple[str, ...]) -> tuple[list[bool], int, int]:
    """In a pool process: whether each of `modules` was imported before this call, and the process's
    parent and its own id."""
    return [module in sys.modules for module in modules], os.getppid(), os.getpid()


async def test_a_preloading_pool_forks_its_processes_from_one_server_that_imported_their_modules():
    """`imagex ingest`'s pool: its processes come from multiprocessing's fork server, which imported the
    modules they need once (and not others), and `finish` ends them and the server."""
    before = children_of(os.getpid())
    pool = Pool(2, preload=("colorsys",))
    try:
        pool.warm("json", processes=2)
        answers = [await pool.run(imported_before, ("colorsys", "xdrlib")) for _ in range(4)]
        assert [imported for imported, _, _ in answers] == [[True, False]] * 4
        [server] = {parent for _, parent, _ in answers}
        assert server != os.getpid() and server in children_of(os.getpid()) - before
        processes = {pid for _, _, pid in answers}
        assert processes <= children_of(server)
    finally:
        await asyncio.to_thread(pool.finish)
    assert [await gone(pid) for pid in (server, *processes)] == [True] * (1 + len(processes))


async def test_a_server_starts_a_pool_process_with_it_not_at_its_first_request(settings: Settings):
    """`imagex serve`: its pool's fork server and one process start with the server, so the first viewer's
    cursor readout or histogram does not wait for them to import what they need (a fresh server's first
    image page used to); they end with it."""
    before = children_of(os.getpid())
    app = create_app(settings, first_admin=False, preload=("colorsys",), passwords=QUICK_PASSWORDS)
    async with app.test_app():  # no request is made
        deadline = time.monotonic() + 60
        while not (workers := {pid for server in children_of(os.getpid()) - before
                               for pid in children_of(server)}):
            assert time.monotonic() < deadline, "no pool process was started"
            await asyncio.sleep(0.05)
        [imported], server, worker = await app.extensions["imagex"].pool.run(imported_before, ("colorsys",))
        assert imported and server in children_of(os.getpid()) - before  # forked from the fork server
        processes = children_of(server)
        assert workers <= processes and worker in processes
    assert [await gone(pid) for pid in (server, *processes)] == [True] * (1 + len(processes))
