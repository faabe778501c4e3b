"""`fifo`: llama-swap's default scheduler (spec/core.md §3), with our two bounds.

For a request for model m, in order (§3.3): join m's active swap; otherwise plan the eviction E
against the running set; grant at once when m is ready, E is empty and no active swap is
stopping m (the fast path); queue on a collision with an active swap, when a model of E is
serving requests, or (ours) when a model of E became ready less than `min_resident_ms` ago;
otherwise start a swap. The queue is ordered by priority (higher first), then arrival; a drain
walks it once in order, and a blocked entry never blocks those behind it.

Ours (ARCHITECTURE §9.2), off by default so llama-swap's order is kept exactly: with a
`starvation_bound_ms`, once a queued request has waited longer than the bound, requests for a
model it wants to evict no longer take the fast path; they queue behind it, so the model's
in-flight work drains and the starving swap happens (in-flight work is never killed).
"""

from __future__ import annotations

from typing import ClassVar

from llamaswap_es.core.effects import (
    busy_victim,
    cancel_queue_timeout,
    collides,
    evicted_by_active_swap,
    grant,
    plan_eviction,
    refuse_unplaceable,
    running_for,
    young_victims,
)
from llamaswap_es.core.eviction import Planner
from llamaswap_es.core.policies import answer_waiters
from llamaswap_es.core.start_backoff import refuse_while_backing_off
from llamaswap_es.core.state import (
    QUEUED,
    READY,
    WAITING,
    ModelProc,
    Out,
    Request,
    SchedulerState,
    Swap,
)
from llamaswap_es.core.swaps import start_swap


class FifoPolicy:
    name: ClassVar[str] = "fifo"

    def planner(self, st: SchedulerState) -> Planner:
        return st.planner

    def queue_key(self, req: Request) -> tuple[int, ...]:
        """Queue order: higher priority first, then arrival."""
        return (-req.priority, req.arrival)

    def place(self, st: SchedulerState, req: Request, out: Out) -> None:
        if self._try(st, req, out):
            return
        # Insert before the first entry of strictly lower priority (§3.4).
        queue = st.queue
        requests = st.requests
        priority = req.priority
        index = len(queue)
        if queue and requests[queue[-1]].priority < priority:  # the queue is sorted descending
            for i, rid in enumerate(queue):
                if requests[rid].priority < priority:
                    index = i
                    break
        queue.insert(index, req.request_id)
        req.phase = QUEUED

    def on_swap_done(self, st: SchedulerState, swap: Swap, error: str | None, out: Out) -> None:
        answer_waiters(st, swap, error, out)
        self.wake(st, out)

    def on_request_ended(self, st: SchedulerState, proc: ModelProc, out: Out) -> None:
        if proc.in_flight == 0:
            self.wake(st, out)

    def wake(self, st: SchedulerState, out: Out) -> None:
        """Drain: one ordered pass over the queue (a swap that ends meanwhile is a follow-up,
        handled after this pass, so the drain is never re-entered)."""
        if not st.queue:
            return
        left = False
        requests = st.requests
        for rid in list(st.queue):
            req = requests.get(rid)
            if req is not None and req.phase == QUEUED and self._try(st, req, out):
                left = True
        if left:
            queue = st.queue
            st.queue = [rid for rid in queue if rid in requests and requests[rid].phase == QUEUED]

    # ------------------------------------------------------------------ decision tree

    def _try(self, st: SchedulerState, req: Request, out: Out) -> bool:
        """Steps 3-8 of §3.3 for one request; True when it left (or never entered) the queue."""
        model = req.model
        if st.models[model].suspect:  # ours: its instance may be dead (DispatchUnreachable)
            return False
        swap = st.swaps.get(model)
        if swap is not None:
            swap.waiters.append(req.request_id)
            req.phase = WAITING
            cancel_queue_timeout(st, req, out)  # a load under way for it is not given up
            return True
        if refuse_while_backing_off(st, req, out):  # ours: its last start failed just now
            return True
        running = running_for(st, model)
        plan = plan_eviction(st, model, running)
        if refuse_unplaceable(st, req, plan, out):  # ours: it cannot fit in GPU memory
            return True
        if plan.wait:  # ours: the memory it needs is promised to a swap not started yet
            return False
        evict = plan.evict
        if not evict and st.models[model].state == READY:
            if evicted_by_active_swap(st, model) or self._starving_blocks(st, model):
                return False
            grant(st, req, out)
            return True
        if collides(st, model, evict) or busy_victim(st, evict):
            return False
        if young_victims(st, evict, out):
            return False
        start_swap(st, model, plan, running, req.request_id, [req.request_id], out)
        return True

    def _starving_blocks(self, st: SchedulerState, model: str) -> bool:
        """Whether a request queued longer than the starvation bound wants to evict `model`."""
        assert st.config is not None
        bound = st.config.starvation_bound_ms
        if bound <= 0 or not st.queue:
            return False
        now = st.now_ms
        requests = st.requests
        for rid in st.queue:
            waiting = requests.get(rid)  # mid-drain, the queue may hold entries that left
            if waiting is None or waiting.phase != QUEUED:
                continue
            if waiting.model == model or now - waiting.received_ms <= bound:
                continue
            target = waiting.model
            if model in plan_eviction(st, target, running_for(st, target)).evict:
                return True
        return False
