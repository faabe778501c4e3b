"""`newest-first`: serial's one request at a time, but the newest waiting request goes first.

A policy for a desk where the last question asked is the one its asker still waits for: older
ones queued behind it are served after it. Everything else (one model at a time, the backoff
after failed starts, the concurrency limit) is serial's, inherited.
"""

from __future__ import annotations

from typing import ClassVar

from llamaswap_es.core.effects import Out
from llamaswap_es.core.policy_serial import SerialPolicy
from llamaswap_es.core.start_backoff import refuse_while_backing_off
from llamaswap_es.core.state import QUEUED, Request, SchedulerState


class NewestFirstPolicy(SerialPolicy):
    name: ClassVar[str] = "newest-first"

    def queue_key(self, req: Request) -> tuple[int, ...]:
        """Queue order: the latest arrival first (used to re-sort after a reload)."""
        return (-req.arrival,)

    def place(self, st: SchedulerState, req: Request, out: Out) -> None:
        if refuse_while_backing_off(st, req, out):
            return
        st.queue.insert(0, req.request_id)  # serial appends; the head is served next
        req.phase = QUEUED
        self.wake(st, out)
