"""Timers asked for by the reducer (`SetTimer`/`CancelTimer`), reported back as `TimerFired`.

A timer is identified by the reducer's own id; setting an id again replaces the old timer, so a
re-armed TTL never fires twice. Firing only submits an event: the reducer decides what it means
(a timer that is no longer wanted is simply ignored there).
"""

from __future__ import annotations

from collections.abc import Callable

from llamaswap_es.events.types import Event, TimerFired
from llamaswap_es.runtime.clock import Clock, TimerHandle


class Timers:
    def __init__(self, clock: Clock, submit: Callable[[Event], None]) -> None:
        self._clock = clock
        self._submit = submit
        self._handles: dict[str, TimerHandle] = {}

    def set(self, timer_id: str, at_ms: int) -> None:
        self.cancel(timer_id)
        self._handles[timer_id] = self._clock.call_at(at_ms, lambda: self._fire(timer_id))

    def cancel(self, timer_id: str) -> None:
        handle = self._handles.pop(timer_id, None)
        if handle is not None:
            handle.cancel()

    def cancel_all(self) -> None:
        for handle in self._handles.values():
            handle.cancel()
        self._handles.clear()

    def pending(self) -> list[str]:
        return sorted(self._handles)

    def _fire(self, timer_id: str) -> None:
        self._handles.pop(timer_id, None)
        self._submit(TimerFired(timer_id=timer_id))
