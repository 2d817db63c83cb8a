"""The process pool for CPU-bound work (reading pixels, scaling, tiling); the event loop only awaits it."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import importlib
import multiprocessing
import os
import resource
import signal
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any, TypeVar

from app.exceptions import ImageXError

T = TypeVar("T")
PR_SET_PDEATHSIG = 1  # linux/prctl.h


PARENT_POLL = 1.0  # seconds between the watchdog's looks at the parent
KILL_GRACE = 30.0  # seconds past a job's limit before a worker that cannot be interrupted is killed


class _Expired(BaseException):
    """Raised in a pool process when its job's time is up. Not an Exception, so that the readers' broad
    handlers (which turn any failure into a message about the file) do not take it for a bad file."""


def _expire(_signum: int, _frame: Any) -> None:
    raise _Expired


def run_limited(seconds: float, grace: float, memory: int, fn: Callable[..., T], *args: Any) -> T:
    """In a pool process: `fn(*args)` stopped after `seconds` of wall-clock time (0: no limit), and with
    at most `memory` bytes of data (0: no limit). Python code is interrupted (SIGALRM) and the worker lives
    on; code that cannot be interrupted (a long libvips or numpy call) is ended `grace` seconds later by
    killing the worker, which the pool then replaces. Memory is the process's data segment (RLIMIT_DATA:
    heap and private mappings, not a memory-mapped file), so an allocation past it fails with MemoryError
    instead of the machine's out-of-memory killer choosing a victim."""
    previous = signal.signal(signal.SIGALRM, _expire)
    killer = threading.Timer(seconds + grace, os.kill, (os.getpid(), signal.SIGKILL))
    killer.daemon = True
    limits = resource.getrlimit(resource.RLIMIT_DATA)
    if memory:
        ceiling = limits[1]
        resource.setrlimit(resource.RLIMIT_DATA, (
            memory if ceiling == resource.RLIM_INFINITY else min(memory, ceiling), ceiling))
    if seconds:
        signal.setitimer(signal.ITIMER_REAL, seconds)
        killer.start()
    try:
        return fn(*args)
    except _Expired:
        raise JobTimeout(seconds) from None
    except MemoryError:
        raise JobOutOfMemory(memory) from None
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        killer.cancel()
        signal.signal(signal.SIGALRM, previous)
        resource.setrlimit(resource.RLIMIT_DATA, limits)


class WorkerDied(ImageXError):
    """A pool process died under a job: a crash (perhaps another job's: the whole pool goes with it), or
    the kernel's out-of-memory killer."""

    def __init__(self) -> None:
        super().__init__("the worker process died while handling this file (out of memory, or killed); see "
                         "the server log")


class JobOutOfMemory(ImageXError):
    """A job needed more memory than one job may use."""

    def __init__(self, memory: int) -> None:
        limit = f"{memory / 2**20:,.0f} MiB, the memory one job may use (IMAGEX_JOB_MEMORY_MB)" if memory \
            else "the memory the server has"
        super().__init__(f"needs more memory than {limit}; the file was not catalogued")
        self.memory = memory

    def __reduce__(self) -> tuple[Any, ...]:
        return JobOutOfMemory, (self.memory,)


class JobTimeout(ImageXError):
    """A job ran past its time limit and was stopped."""

    def __init__(self, seconds: float) -> None:
        super().__init__(f"stopped after {seconds:g} s, the time limit for one file (IMAGEX_JOB_TIMEOUT)")
        self.seconds = seconds

    def __reduce__(self) -> tuple[Any, ...]:
        return JobTimeout, (self.seconds,)


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


def _import(names: tuple[str, ...]) -> None:
    """In a pool process: import these modules (`Pool.warm`)."""
    for name in names:
        importlib.import_module(name)


class Pool:
    """A `ProcessPoolExecutor` of `size` processes, started on first use and rebuilt if a worker dies."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._executor: ProcessPoolExecutor | None = None
        # what the processes were given and have not finished, whether or not anyone still awaits it (a
        # cancelled await leaves its work running in the process)
        self._unfinished: set[Future[Any]] = set()

    def _get(self) -> ProcessPoolExecutor:
        if self._executor is None:
            # spawn, not fork: the parent runs threads (SQLite, asyncio) that must not be forked mid-flight
            self._executor = ProcessPoolExecutor(
                max_workers=self.size, mp_context=multiprocessing.get_context("spawn"),
                initializer=_initialise_worker, initargs=(os.getpid(),))
        return self._executor

    def _submit(self, fn: Callable[..., T], *args: Any) -> asyncio.Future[T]:
        work = self._get().submit(fn, *args)
        self._unfinished.add(work)
        work.add_done_callback(self._unfinished.discard)
        return asyncio.wrap_future(work)

    def warm(self, *modules: str, processes: int | None = None) -> None:
        """Start the processes now (all, or as many as `processes`: a command with one file to read needs
        one), each importing `modules`, while the caller goes on with other work: the first files of a batch
        then wait for neither (about half a second on two cores)."""
        for _ in range(self.size if processes is None else min(self.size, processes)):
            self._get().submit(_import, modules)

    @property
    def busy(self) -> bool:
        """Whether a process is still working on something (perhaps for an await since cancelled)."""
        return any(not work.done() for work in list(self._unfinished))

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """Run `fn(*args)` in a pool process and await its result."""
        try:
            return await self._submit(fn, *args)
        except BrokenProcessPool:
            self._discard_broken()
            raise WorkerDied from None

    async def run_limited(self, seconds: float, fn: Callable[..., T], *args: Any, memory: int = 0,
                          grace: float = KILL_GRACE) -> T:
        """`run`, stopped with JobTimeout after `seconds` and failed with JobOutOfMemory past `memory`
        bytes (0: no limit)."""
        started = time.monotonic()
        try:
            return await self._submit(run_limited, seconds, grace, memory, fn, *args)
        except BrokenProcessPool:
            self._discard_broken()
            if seconds and time.monotonic() - started >= seconds + grace:  # killed for its time
                raise JobTimeout(seconds) from None
            raise WorkerDied from None

    def _discard_broken(self) -> None:
        broken, self._executor = self._executor, None
        if broken is not None:
            broken.shutdown(wait=False, cancel_futures=True)

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

    def finish(self) -> None:
        """At the end of a process, when nothing awaits the pool any more: stop the worker processes, and
        abandon (`terminate`) whatever they are still working on for awaits that were cancelled (a survey
        update or a job given back at shutdown), which must not hold a stopping server past its grace."""
        if self.busy:
            self.terminate()
        else:
            self.close()

    def close(self) -> None:
        """Stop the worker processes; safe to call twice."""
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)
            self._executor = None
