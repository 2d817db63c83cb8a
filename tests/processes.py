"""Helpers for tests that run real `imagex` processes and servers."""

from __future__ import annotations

import os
import socket
import subprocess
import time
import urllib.request
from pathlib import Path


def free_port() -> int:
    """A TCP port on loopback that nothing listens on now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def answers(url: str) -> bool:
    """True when `url` answers 200 (the server is up)."""
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return bool(response.status == 200)
    except OSError:
        return False


def stop(process: subprocess.Popen[bytes] | subprocess.Popen[str]) -> None:
    """SIGTERM, as an operator would, then kill if it does not stop within 15 s."""
    import signal

    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)


def children_of(pid: int) -> set[int]:
    """Every live descendant of `pid` (read from /proc): the pool processes and multiprocessing's helpers."""
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            stat = _stat(int(entry))
            if stat is not None:
                parents[int(entry)] = int(stat[1])
    found: set[int] = set()
    frontier = [pid]
    while frontier:
        parent = frontier.pop()
        for child, ppid in parents.items():
            if ppid == parent and child not in found:
                found.add(child)
                frontier.append(child)
    return found


def _stat(pid: int) -> list[str] | None:
    """State and parent of a process (fields 3 and 4 of /proc/<pid>/stat), None when it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text.rsplit(")", 1)[1].split()[:2]


def alive(pid: int) -> bool:
    """Running (a zombie waiting to be reaped by whoever adopted it counts as dead)."""
    stat = _stat(pid)
    return stat is not None and stat[0] not in ("Z", "X")


def wait_dead(pids: set[int], timeout: float = 10.0) -> set[int]:
    """Poll until none of `pids` runs; the ones still running after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while (left := {pid for pid in pids if alive(pid)}) and time.monotonic() < deadline:
        time.sleep(0.05)
    return left
