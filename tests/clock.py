"""A clock that moves only when a test moves it, for stores and anything else that takes `clock=`."""

from __future__ import annotations


class Clock:
    def __init__(self, start: float = 1_000_000.0) -> None:
        self.time = start

    def __call__(self) -> float:
        return self.time

    def advance(self, seconds: float) -> None:
        self.time += seconds
