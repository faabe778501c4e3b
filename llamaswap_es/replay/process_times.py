"""How long each upstream start and stop took, read from the log's decision/event pairs.

A start is `StartProcess` → `ProcessReady` (or `ProcessStartFailed`), a stop is `StopProcess` →
`ProcessStopped`, paired by `(model, instance)`. The timeline prints these durations and the
what-if simulator uses them as recorded load and stop times, so both read them the same way.
"""

from __future__ import annotations

from llamaswap_es.events.types import (
    ProcessReady,
    ProcessStartFailed,
    ProcessStopped,
    StartProcess,
    StopProcess,
)


class ProcessTimes:
    """Feed every body in seq order; `elapsed` answers when a start or a stop ends."""

    def __init__(self) -> None:
        self._started: dict[tuple[str, int], int] = {}
        self._stopping: dict[tuple[str, int], int] = {}

    def elapsed(self, body: object, ts_ms: int) -> int | None:
        """Ms since the matching start/stop when `body` ends one; None otherwise (or unknown).

        A `ProcessStopped` also closes a start that never became ready (stopped while loading).
        """
        if isinstance(body, StartProcess):
            self._started[(body.model, body.instance)] = ts_ms
        elif isinstance(body, StopProcess):
            self._stopping[(body.model, body.instance)] = ts_ms
        elif isinstance(body, ProcessReady | ProcessStartFailed):
            return _since(self._started.pop((body.model, body.instance), None), ts_ms)
        elif isinstance(body, ProcessStopped):
            self._started.pop((body.model, body.instance), None)
            return _since(self._stopping.pop((body.model, body.instance), None), ts_ms)
        return None


def _since(began: int | None, ts_ms: int) -> int | None:
    return None if began is None else ts_ms - began
