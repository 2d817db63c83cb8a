"""The process pool for CPU-bound work (reading pixels, scaling, tiling); the event loop only awaits it."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import multiprocessing
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any, TypeVar

from app.exceptions import ImageXError

T = TypeVar("T")
PR_SET_PDEATHSIG = 1  # linux/prctl.h


PARENT_POLL = 1.0  # seconds between the watchdog's looks at the parent


def _watch_parent(parent: int) -> None:
    """Exit as soon as the parent is gone (this process was given to another parent)."""
    while os.getppid() == parent:
        time.sleep(PARENT_POLL)
    os._exit(1)


def _die_with_parent(parent: int) -> None:
    """Ask the kernel to kill this process when the process that started it dies (say `imagex serve` or a
    worker killed with SIGKILL): an orphan would otherwise wait for work forever, or go on writing a job
    that another worker has taken over. PR_SET_PDEATHSIG on Linux; everywhere (and should the signal be
    missed), a watchdog thread that exits within PARENT_POLL seconds of the parent's death."""
    threading.Thread(target=_watch_parent, args=(parent,), name="parent-watchdog", daemon=True).start()
    if not sys.platform.startswith("linux"):
        return
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != parent:  # the parent died before prctl took effect
            os._exit(1)


def _initialise_worker(parent: int | None = None) -> None:
    if parent is not None:
        _die_with_parent(parent)
    # Ctrl-C goes to the parent, which shuts the pool down in order.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    import pyvips

    # Each job reads a file once; libvips' operation cache would only hold memory.
    pyvips.cache_set_max(0)


class Pool:
    """A `ProcessPoolExecutor` of `size` processes, started on first use and rebuilt if a worker dies."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._executor: ProcessPoolExecutor | None = None

    def _get(self) -> ProcessPoolExecutor:
        if self._executor is None:
            # spawn, not fork: the parent runs threads (SQLite, asyncio) that must not be forked mid-flight
            self._executor = ProcessPoolExecutor(
                max_workers=self.size, mp_context=multiprocessing.get_context("spawn"),
                initializer=_initialise_worker, initargs=(os.getpid(),))
        return self._executor

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """Run `fn(*args)` in a pool process and await its result."""
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._get(), fn, *args)
        except BrokenProcessPool:
            broken, self._executor = self._executor, None
            if broken is not None:
                broken.shutdown(wait=False, cancel_futures=True)
            raise ImageXError("the worker process died while handling this file (out of memory, or "
                              "killed); see the server log") from None

    def terminate(self) -> None:
        """Stop the worker processes now, abandoning what they are doing (a job given back to the queue
        must not go on writing); the next `run` starts new ones."""
        executor, self._executor = self._executor, None
        if executor is None:
            return
        # ProcessPoolExecutor has no public way to stop busy workers before Python 3.14
        processes = list(getattr(executor, "_processes", {}).values())
        for process in processes:
            with contextlib.suppress(OSError, ValueError):
                process.terminate()
        executor.shutdown(wait=True, cancel_futures=True)

    def close(self) -> None:
        """Stop the worker processes; safe to call twice."""
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)
            self._executor = None
