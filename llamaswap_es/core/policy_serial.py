"""`serial`: strict arrival order, one request in flight globally (spec/core.md §5).

The queue is never reordered (no priorities, no fast path past earlier requests). The head
advances only when nothing is happening: no swap in flight and no request in flight anywhere.
Then, if its model is ready and nothing else runs, it is dispatched; otherwise a swap starts
that evicts every other running model, whatever the groups or the matrix would allow.
`A B C A` therefore costs four loads where fifo needs three. Being "busy" is derived from the
state (swaps, in-flight total) rather than kept as a phase, so cancels, unloads and reloads
cannot leave it stuck. The per-model concurrency limit still bounds what is admitted.
"""

from __future__ import annotations

from typing import ClassVar

from llamaswap_es.core.effects import (
    grant,
    plan_eviction,
    refuse_unplaceable,
    running_for,
    young_victims,
)
from llamaswap_es.core.eviction import EveryOtherEviction, Planner
from llamaswap_es.core.policies import answer_waiters
from llamaswap_es.core.start_backoff import backing_off, refuse_while_backing_off
from llamaswap_es.core.state import QUEUED, READY, ModelProc, Out, Request, SchedulerState, Swap
from llamaswap_es.core.swaps import start_swap

_EVERY_OTHER = EveryOtherEviction()


class SerialPolicy:
    name: ClassVar[str] = "serial"

    def planner(self, st: SchedulerState) -> Planner:
        return _EVERY_OTHER

    def queue_key(self, req: Request) -> tuple[int, ...]:
        """Queue order: arrival only."""
        return (req.arrival,)

    def place(self, st: SchedulerState, req: Request, out: Out) -> None:
        if refuse_while_backing_off(st, req, out):  # ours: answered at once, never queued
            return
        st.queue.append(req.request_id)
        req.phase = QUEUED
        self.wake(st, out)

    def on_swap_done(self, st: SchedulerState, swap: Swap, error: str | None, out: Out) -> None:
        answer_waiters(st, swap, error, out)
        self.wake(st, out)

    def on_request_ended(self, st: SchedulerState, proc: ModelProc, out: Out) -> None:
        self.wake(st, out)

    def wake(self, st: SchedulerState, out: Out) -> None:
        """Advance the head while the system is idle."""
        while st.queue and not st.swaps and st.in_flight_total == 0:
            rid = st.queue[0]
            req = st.requests[rid]
            if backing_off(st, st.models[req.model]) is not None:  # queued before it failed
                st.queue.pop(0)
                refuse_while_backing_off(st, req, out)
                continue
            model = req.model
            if st.models[model].suspect:  # ours: wait for the rule of DispatchUnreachable
                return
            running = running_for(st, model)
            plan = plan_eviction(st, model, running)
            if plan.does_not_fit is not None:  # ours: it cannot fit in GPU memory
                st.queue.pop(0)
                refuse_unplaceable(st, req, plan, out)
                continue
            if plan.wait or young_victims(st, plan.evict, out):
                return
            st.queue.pop(0)
            if not plan.evict and st.models[model].state == READY:
                grant(st, req, out)
            else:
                start_swap(st, model, plan, running, rid, [rid], out)
