"""The clock the shell reads: wall-clock milliseconds plus scheduling of callbacks at a time.

The reducer never reads a clock (its time is the event's `ts_ms`); the shell stamps each event
with `Clock.now_ms()` and schedules timers with `Clock.call_at`. Tests inject `ManualClock`, whose
time moves only when the test says so, to drive TTL and starvation timers deterministically.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol


class TimerHandle(Protocol):
    def cancel(self) -> None: ...


class Clock(Protocol):
    def now_ms(self) -> int: ...

    def call_at(self, at_ms: int, callback: Callable[[], None]) -> TimerHandle: ...


class SystemClock:
    """Wall-clock time (`time.time`), with callbacks on the running asyncio loop.

    Event timestamps are kept non-decreasing even if the wall clock steps back (NTP), so the
    reducer never sees time run backwards.
    """

    def __init__(self) -> None:
        self._last_ms = 0

    def now_ms(self) -> int:
        now = int(time.time() * 1000)
        if now < self._last_ms:
            return self._last_ms
        self._last_ms = now
        return now

    def call_at(self, at_ms: int, callback: Callable[[], None]) -> TimerHandle:
        delay_s = max(0.0, (at_ms - self.now_ms()) / 1000)
        return asyncio.get_running_loop().call_later(delay_s, callback)


@dataclass(order=True)
class _Pending:
    at_ms: int
    order: int
    callback: Callable[[], None] = field(compare=False)
    cancelled: bool = field(default=False, compare=False)

    def cancel(self) -> None:
        self.cancelled = True


class ManualClock:
    """A clock for tests: time advances only through `advance`/`set`, firing due callbacks."""

    def __init__(self, start_ms: int = 1_700_000_000_000) -> None:
        self._now = start_ms
        self._heap: list[_Pending] = []
        self._order = itertools.count()

    def now_ms(self) -> int:
        return self._now

    def call_at(self, at_ms: int, callback: Callable[[], None]) -> TimerHandle:
        pending = _Pending(at_ms, next(self._order), callback)
        heapq.heappush(self._heap, pending)
        return pending

    def advance(self, ms: int) -> None:
        self.set(self._now + ms)

    def set(self, now_ms: int) -> None:
        if now_ms < self._now:
            raise ValueError(f"a ManualClock cannot go back ({now_ms} < {self._now})")
        while self._heap and self._heap[0].at_ms <= now_ms:
            pending = heapq.heappop(self._heap)
            self._now = max(self._now, pending.at_ms)
            if not pending.cancelled:
                pending.callback()
        self._now = now_ms
