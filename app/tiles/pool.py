"""The process pool for CPU-bound work (reading pixels, scaling, tiling); the event loop only awaits it."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import importlib
import multiprocessing
import multiprocessing.connection
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
    """Exit as soon as the parent is gone: at once when multiprocessing started this process, whose pipe
    from the parent then closes; otherwise when this process is given to another parent."""
    started_by = multiprocessing.parent_process()
    if started_by is not None and started_by.pid == parent and started_by.sentinel is not None:
        multiprocessing.connection.wait([started_by.sentinel])
        os._exit(1)
    while os.getppid() == parent:
        time.sleep(PARENT_POLL)
    os._exit(1)


def _die_with_parent(parent: int) -> None:
    """Ask the kernel to kill this process when the process that started it dies (say `imagex serve` or a
    worker killed with SIGKILL): an orphan would otherwise wait for work forever, or go on writing a job
    that another worker has taken over. PR_SET_PDEATHSIG on Linux for a process the parent started itself;
    everywhere, and for a process forked by multiprocessing's fork server (should the signal not apply or
    be missed), a watchdog thread that exits when the parent's pipe closes (`_watch_parent`)."""
    threading.Thread(target=_watch_parent, args=(parent,), name="parent-watchdog", daemon=True).start()
    if not sys.platform.startswith("linux") or os.getppid() != parent:
        # forked by multiprocessing's fork server (`Pool(preload=...)`), which outlives its clients'
        # processes: the watchdog alone, woken by the parent's pipe (or the parent is gone already)
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
    _reuse_freed_buffers()


M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameters
BUFFERS_FROM_HEAP = 32 * 1024 * 1024


def _reuse_freed_buffers() -> None:
    """Let glibc serve buffers of up to 32 MiB from memory freed before, instead of mapping fresh pages
    for each: a streamed plane reads, converts and writes its rows in buffers of a few megabytes, and each
    fresh mapping is faulted in page by page (1.9 M page faults and 5 s of system time for the science
    pyramid of a 32768^2 plane; with this, 5 thousand and 1 s). glibc raises its threshold itself after
    freeing a larger buffer, which a job may never do. Freed memory over 64 MiB is still given back."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None)
        libc.mallopt(M_MMAP_THRESHOLD, BUFFERS_FROM_HEAP)
        libc.mallopt(M_TRIM_THRESHOLD, 2 * BUFFERS_FROM_HEAP)


def _import(names: tuple[str, ...]) -> None:
    """In a pool process: import these modules (`Pool.warm`)."""
    for name in names:
        importlib.import_module(name)


class Pool:
    """A `ProcessPoolExecutor` of `size` processes, started on first use and rebuilt if a worker dies.

    `preload`: modules that every process needs (a command's, `imagex ingest`'s). The processes are then
    forked from multiprocessing's fork server, which imports them once, instead of each importing them
    itself: on two cores the second process no longer delays the first, and a process that replaces one
    starts at once. The server starts at the pool's first use, with the environment of that moment, and
    stops with `finish`; a process runs one such pool at a time."""

    def __init__(self, size: int, *, preload: tuple[str, ...] = ()) -> None:
        self.size = size
        self.preload = preload
        self._executor: ProcessPoolExecutor | None = None
        self._starting: threading.Thread | None = None  # `warm` starting the processes of a `preload` pool
        # what the processes were given and have not finished, whether or not anyone still awaits it (a
        # cancelled await leaves its work running in the process)
        self._unfinished: set[Future[Any]] = set()

    def _get(self) -> ProcessPoolExecutor:
        if self._executor is None:
            # spawn or the fork server, never fork: the parent runs threads (SQLite, asyncio) that must not
            # be forked mid-flight (the server is a process of its own, forked from nothing but itself)
            context = multiprocessing.get_context("forkserver" if self.preload else "spawn")
            if self.preload:
                # "__main__": the command's own script, which each process would otherwise run again
                context.set_forkserver_preload(["__main__", *self.preload])
            self._executor = ProcessPoolExecutor(
                max_workers=self.size, mp_context=context,
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
        then wait for neither (about half a second on two cores). A `preload` pool's processes are started
        in a thread of their own: each waits for the fork server to have imported them."""
        count = self.size if processes is None else min(self.size, processes)
        if not self.preload:
            self._start(modules, count)
            return
        # after the threads of earlier calls: the executor is not to be started twice at once
        self._starting = threading.Thread(target=self._start, args=(modules, count, self._starting),
                                          name="pool-start", daemon=True)
        self._starting.start()

    def _start(self, modules: tuple[str, ...], count: int, after: threading.Thread | None = None) -> None:
        if after is not None:
            after.join()
        for _ in range(count):
            self._get().submit(_import, modules)

    def _started(self) -> None:
        """Wait for `warm`'s thread, if it is still starting processes."""
        starting, self._starting = self._starting, None
        if starting is not None:
            starting.join()

    async def _ready(self) -> None:
        """`_started` without holding up the event loop."""
        if self._starting is not None:
            await asyncio.to_thread(self._started)

    @property
    def busy(self) -> bool:
        """Whether a process is still working on something (perhaps for an await since cancelled)."""
        return any(not work.done() for work in list(self._unfinished))

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """Run `fn(*args)` in a pool process and await its result."""
        await self._ready()
        try:
            return await self._submit(fn, *args)
        except BrokenProcessPool:
            self._discard_broken()
            raise WorkerDied from None

    async def run_limited(self, seconds: float, fn: Callable[..., T], *args: Any, memory: int = 0,
                          grace: float = KILL_GRACE) -> T:
        """`run`, stopped with JobTimeout after `seconds` and failed with JobOutOfMemory past `memory`
        bytes (0: no limit)."""
        await self._ready()
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
        self._started()
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
        if self.preload:
            _stop_fork_server()

    def close(self) -> None:
        """Stop the worker processes; safe to call twice."""
        self._started()
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)
            self._executor = None


def _stop_fork_server() -> None:
    """Stop multiprocessing's fork server once its processes have ended, and wait for it: its work is
    then counted as this process's children's (the CPU time a benchmark reads), and no server is left
    behind by a process that goes on. Python has no public call for it (`_stop` is its tests' own)."""
    forkserver = sys.modules.get("multiprocessing.forkserver")  # not imported: no server was started
    stop = getattr(getattr(forkserver, "_forkserver", None), "_stop", None)
    if stop is not None:
        with contextlib.suppress(OSError, ChildProcessError):
            stop()
