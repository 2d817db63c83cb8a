"""A job's time limit in the process pool: Python code is interrupted and its worker lives on; code that
cannot be interrupted is ended by killing its worker, and the pool starts a new one for the next job."""

from __future__ import annotations

import os
import signal
import time

import numpy as np
import pytest

from app.exceptions import ImageXError
from app.tiles.pool import JobOutOfMemory, JobTimeout, Pool


def pid_after(seconds: float) -> int:
    time.sleep(seconds)
    return os.getpid()


def deaf_sleep(seconds: float) -> int:
    """Sleeps with SIGALRM blocked, as a long call into C code would sit past the alarm."""
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGALRM})
    try:
        time.sleep(seconds)
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGALRM})
    return os.getpid()


def catches_everything(seconds: float) -> str:
    """A reader's broad handler must not swallow the limit and call it a bad file."""
    try:
        time.sleep(seconds)
    except Exception:
        return "swallowed"
    return "finished"


def allocate(megabytes: int) -> int:
    """Touches `megabytes` MiB of new memory; the worker's pid."""
    block = np.ones(megabytes * 2**20, dtype=np.uint8)
    assert int(block[-1]) == 1
    return os.getpid()


@pytest.fixture
def pool():
    pool = Pool(1)
    yield pool
    pool.close()


async def test_a_job_past_its_limit_is_stopped_and_the_worker_goes_on(pool):
    worker = await pool.run_limited(30, pid_after, 0)
    started = time.monotonic()
    with pytest.raises(JobTimeout) as stopped:
        await pool.run_limited(0.5, pid_after, 30)
    assert time.monotonic() - started < 10
    assert str(stopped.value) == "stopped after 0.5 s, the time limit for one file (IMAGEX_JOB_TIMEOUT)"
    assert await pool.run_limited(30, pid_after, 0) == worker  # the same process, its alarm cleared
    assert await pool.run(pid_after, 1.0) == worker  # and no alarm left to go off later


async def test_a_broad_handler_in_the_job_does_not_swallow_the_limit(pool):
    with pytest.raises(JobTimeout):
        await pool.run_limited(0.5, catches_everything, 30)


async def test_a_job_deaf_to_the_alarm_is_killed_after_the_grace_and_the_pool_recovers(pool):
    worker = await pool.run_limited(30, pid_after, 0)
    started = time.monotonic()
    with pytest.raises(JobTimeout):
        await pool.run_limited(0.5, deaf_sleep, 30, grace=1.0)
    assert time.monotonic() - started < 15
    replacement = await pool.run_limited(30, pid_after, 0)
    assert replacement != worker
    with pytest.raises(ProcessLookupError):
        os.kill(worker, 0)


async def test_a_worker_dying_for_another_reason_is_not_called_a_timeout(pool):
    with pytest.raises(ImageXError) as died:
        await pool.run_limited(30, os.abort)
    assert not isinstance(died.value, JobTimeout)
    assert "the worker process died" in str(died.value)


async def test_a_job_past_its_memory_fails_with_a_message_and_the_worker_goes_on(pool):
    worker = await pool.run_limited(30, allocate, 10, memory=1024 * 2**20)
    with pytest.raises(JobOutOfMemory) as refused:
        await pool.run_limited(30, allocate, 2048, memory=1024 * 2**20)
    assert str(refused.value) == ("needs more memory than 1,024 MiB, the memory one job may use "
                                  "(IMAGEX_JOB_MEMORY_MB); the file was not catalogued")
    # the same worker, its limit given back: the next job may use what it needs
    assert await pool.run_limited(30, allocate, 1536) == worker


def faults_reusing_buffers(megabytes: int, together: int, times: int) -> int:
    """Page faults taken while `together` buffers of `megabytes` MiB are made, filled and freed, `times`
    times over (as a streamed plane's rows are read, converted and written)."""
    import resource

    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(times):
        blocks = [np.empty(megabytes * 2**20, dtype=np.uint8) for _ in range(together)]
        for block in blocks:
            block.fill(1)
        del blocks, block
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before


async def test_a_pool_process_reuses_the_buffers_it_freed(pool):
    """A streamed plane goes through buffers of a few MiB, a few at a time: a pool process takes them from
    memory it freed, not from fresh pages faulted in one by one (glibc by itself gives back the memory of
    buffers freed together, and maps it again for the next ones: 1,024 faults a 4 MiB buffer)."""
    faults = await pool.run(faults_reusing_buffers, 4, 3, 50)
    assert faults < 5 * 1024, f"{faults} page faults for 50 rounds of three 4 MiB buffers"
