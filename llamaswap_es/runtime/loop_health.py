"""What `/health`, `/metrics` and the service supervisor are told about the run loop.

The run loop is the single owner of the scheduler state, so the server is healthy exactly when
the loop turns and can write its log. Three things can be wrong, and each has its own reason:

* the loop stopped (a fatal error: the process is about to exit for its supervisor to restart it);
* the loop is not turning: its heartbeat (beaten at least every `HEARTBEAT_S` even when idle) is
  older than `stale_after_s`;
* the event log cannot be written (disk full, I/O error, read-only file): the loop is *degraded*,
  refuses new work with 503 and retries until the fault passes, then heals by itself.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

HEARTBEAT_S = 1.0
"""The idle loop wakes this often just to beat (an idle server is not a stuck one)."""
STALE_AFTER_S = 10.0
"""A heartbeat older than this means the loop is not turning (stuck in an await or a bug)."""


@dataclass(frozen=True, slots=True)
class HealthReport:
    ok: bool
    reasons: tuple[str, ...]
    degraded_since_s: float | None
    """Seconds the log has been unwritable (None when it is writable)."""
    heartbeat_age_s: float

    def text(self) -> str:
        return "OK" if self.ok else "; ".join(self.reasons)


class LoopHealth:
    """Kept by the run loop (it beats and reports faults), read by HTTP and the supervisor."""

    def __init__(
        self,
        *,
        stale_after_s: float = STALE_AFTER_S,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._stale_after_s = stale_after_s
        self._monotonic = monotonic
        self._beat = monotonic()
        self._degraded: str | None = None
        self._degraded_at: float | None = None
        self._fatal: str | None = None
        self._stopped = False

    # -- written by the run loop ----------------------------------------------------------

    def beat(self) -> None:
        self._beat = self._monotonic()

    def degraded(self, cause: str) -> None:
        """The log cannot be written; `cause` names the file and the fault."""
        if self._degraded_at is None:
            self._degraded_at = self._monotonic()
        self._degraded = cause

    def healed(self) -> float:
        """The log is writable again; returns how long it was not (seconds)."""
        lasted = 0.0 if self._degraded_at is None else self._monotonic() - self._degraded_at
        self._degraded = self._degraded_at = None
        return lasted

    def fatal(self, what: str) -> None:
        self._fatal = what

    def stopped(self) -> None:
        """The loop ended on purpose (shutdown): not turning, but not a fault either."""
        self._stopped = True

    # -- read by everyone -----------------------------------------------------------------

    @property
    def log_writable(self) -> bool:
        return self._degraded is None

    @property
    def degraded_cause(self) -> str | None:
        return self._degraded

    @property
    def is_fatal(self) -> bool:
        return self._fatal is not None

    def turning(self) -> bool:
        """The loop is alive and beating (what a watchdog may be fed on)."""
        return (
            self._fatal is None
            and not self._stopped
            and self.heartbeat_age_s() <= (self._stale_after_s)
        )

    def heartbeat_age_s(self) -> float:
        return max(0.0, self._monotonic() - self._beat)

    def report(self) -> HealthReport:
        reasons: list[str] = []
        age = self.heartbeat_age_s()
        if self._fatal is not None:
            reasons.append(f"the scheduler stopped: {self._fatal}")
        elif self._stopped:
            reasons.append("the server is shutting down")
        elif age > self._stale_after_s:
            reasons.append(f"the scheduler loop has not turned for {age:.0f} s")
        since = None
        if self._degraded is not None:
            assert self._degraded_at is not None
            since = self._monotonic() - self._degraded_at
            reasons.append(f"the event log cannot be written for {since:.0f} s: {self._degraded}")
        return HealthReport(not reasons, tuple(reasons), since, age)
