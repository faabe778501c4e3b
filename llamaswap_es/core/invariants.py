"""The scheduler's invariants, as code (ARCHITECTURE §5). Tests check them after every step.

* every admitted request is in exactly one place (queue, one swap's waiters, dispatched) and
  ends exactly once: Dispatch then RequestFinished, or Reject, or cancelled (`RequestLedger`);
* in-flight is never negative and equals the dispatched requests;
* reservations add up: reserved = queued + swap waiters + in flight, per model;
* no model is started while a model it cannot coexist with is starting, ready or stopping;
* armed timers belong to live instances (queue timers to waiting requests); swaps are in a
  consistent phase;
* no model is started inside the backoff window its failed starts opened (`start_backoff`).
Each failure is an AssertionError that names the model or request and the numbers involved.
"""

from __future__ import annotations

from collections.abc import Iterable

from llamaswap_es.core.state import (
    DISPATCHED,
    EVICTING,
    LAUNCHING,
    QUEUED,
    READY,
    RUNNING_STATES,
    STARTING,
    WAITING,
    SchedulerState,
)
from llamaswap_es.events.types import (
    Decision,
    Dispatch,
    Event,
    RecoveryStarted,
    Reject,
    RequestAbandoned,
    RequestCancelled,
    RequestFinished,
    RequestReceived,
    ServerStarted,
    StartProcess,
)


def check_invariants(st: SchedulerState, decisions: Iterable[Decision] = ()) -> None:
    """Raise AssertionError if the state (and the decisions of its last step) break a rule."""
    _check_places(st)
    _check_accounting(st)
    _check_swaps_and_timers(st)
    _check_starts(st, [d for d in decisions if isinstance(d, StartProcess)])
    _check_memory(st)


def _check_places(st: SchedulerState) -> None:
    assert len(set(st.queue)) == len(st.queue), f"queue holds a request twice: {st.queue}"
    waiting: dict[str, str] = {}
    for swap in st.swaps.values():
        for rid in swap.waiters:
            assert rid not in waiting, (
                f"request {rid} waits on swaps {waiting[rid]} and {swap.model}"
            )
            waiting[rid] = swap.model
    queued = set(st.queue)
    for rid in queued:
        assert rid in st.requests, f"queued request {rid} is unknown"
    for rid, model in waiting.items():
        req = st.requests.get(rid)
        assert req is not None, f"request {rid} waits on swap {model} but is unknown"
        assert req.model == model, f"request {rid} for {req.model} waits on the swap for {model}"
    for rid, req in st.requests.items():
        where = [
            name for name, inside in (("queue", rid in queued), ("swap", rid in waiting)) if inside
        ]
        if req.phase == QUEUED:
            assert where == ["queue"], f"request {rid} is queued but found in {where or 'nowhere'}"
        elif req.phase == WAITING:
            assert where == ["swap"], f"request {rid} is waiting but found in {where or 'nowhere'}"
        else:
            assert req.phase == DISPATCHED, f"request {rid} has unknown phase {req.phase!r}"
            assert not where, f"dispatched request {rid} is still in the {where}"
        assert req.model in st.models, f"request {rid} is for unknown model {req.model}"
    if st.shutting_down:
        assert not st.queue and not st.swaps, "shutting down, yet requests still wait"


def _check_accounting(st: SchedulerState) -> None:
    reserved: dict[str, int] = {}
    in_flight: dict[str, int] = {}
    for req in st.requests.values():
        reserved[req.model] = reserved.get(req.model, 0) + 1
        if req.phase == DISPATCHED:
            in_flight[req.model] = in_flight.get(req.model, 0) + 1
    total = 0
    for model, proc in st.models.items():
        assert proc.in_flight >= 0, f"model {model}: in-flight is negative ({proc.in_flight})"
        want = in_flight.get(model, 0)
        assert proc.in_flight == want, (
            f"model {model}: in-flight {proc.in_flight} but {want} requests are dispatched"
        )
        want = reserved.get(model, 0)
        assert proc.reserved == want, (
            f"model {model}: reserved {proc.reserved} != queued + waiters + in-flight = {want}"
        )
        total += proc.in_flight
    assert st.in_flight_total == total, f"in-flight total {st.in_flight_total} != sum {total}"


def _check_swaps_and_timers(st: SchedulerState) -> None:
    for model, swap in st.swaps.items():
        assert swap.model == model, f"swap for {swap.model} is filed under {model}"
        proc = st.models.get(model)
        assert proc is not None, f"swap for unknown model {model}"
        if swap.phase == LAUNCHING:
            assert proc.state == STARTING, (
                f"swap {model} is launching but the model is {proc.state}"
            )
        else:
            assert swap.phase == EVICTING, f"swap {model} has unknown phase {swap.phase!r}"
            assert proc.state != STARTING, f"swap {model} is still evicting but {model} is starting"
    for timer_id in st.timers:
        kind, _, rest = timer_id.partition(":")
        if kind == "queue":
            req = st.requests.get(rest)
            assert req is not None and not req.is_load and req.phase != DISPATCHED, (
                f"queue timer {timer_id} is armed for a request that is not waiting"
            )
            continue
        model, _, instance = rest.rpartition(":")
        proc = st.models.get(model)
        assert proc is not None and proc.state == READY and str(proc.instance) == instance, (
            f"timer {timer_id} is armed for an instance that is not ready"
        )
        assert kind in ("ttl", "resident"), f"timer {timer_id} of unknown kind"


def _check_starts(st: SchedulerState, starts: list[StartProcess]) -> None:
    """A model was started only beside models its policy lets it coexist with.

    Models started later in the same step are left out of each check: they were not running yet.
    """
    if not starts or not st.configured:
        return
    backoff_on = st.config is not None and st.config.start_backoff_ms > 0
    for start in starts:
        failed = st.models[start.model].failed_starts
        assert not backoff_on or failed is None or st.now_ms >= failed.retry_at_ms, (
            f"{start.model} (instance {start.instance}) was started at {st.now_ms}, inside the "
            f"backoff window of its {failed.count} failed starts (until {failed.retry_at_ms})"
        )
    planner = st.policy.planner(st)
    started_later = [s.model for s in starts]
    for start in starts:
        started_later.remove(start.model)
        others = tuple(
            sorted(
                m
                for m, p in st.models.items()
                if m != start.model and p.state in RUNNING_STATES and m not in started_later
            )
        )
        conflict = [m for m in planner.plan(start.model, others).evict if m in others]
        assert not conflict, (
            f"{start.model} (instance {start.instance}) was started while {', '.join(conflict)} "
            "that it cannot run beside is still starting, ready or stopping"
        )


def _check_memory(st: SchedulerState) -> None:
    """With placement by memory on and every placed model's footprint known, no device holds
    more than its total less the margin in footprints of the processes started on it. (It
    assumes footprints do not grow after a model was placed, which a test controls.)"""
    config, gpu = st.config, st.gpu
    if config is None or not config.placement.active or gpu is None:
        return
    committed = [0] * gpu.count
    for model, proc in st.models.items():
        if proc.state not in RUNNING_STATES or not proc.devices:
            continue
        footprint = st.footprint(model)
        if footprint is None:
            return  # not all known: nothing to promise
        for d in proc.devices:
            assert d < gpu.count, f"{model} holds GPU{d}, which the sample does not have"
            committed[d] += footprint.need_mb
    for d, used in enumerate(committed):
        limit = gpu.total_mb[d] - config.placement.margin_mb
        assert used <= limit, (
            f"GPU{d} holds {used} MiB of footprints, more than its total less the margin ({limit})"
        )


class RequestLedger:
    """Follows every request id through the decisions and checks that it ends exactly once.

    Feed it each input and the decisions reducing it produced; it also checks that the reducer
    holds exactly the requests the ledger thinks are open.
    """

    def __init__(self) -> None:
        self.open: set[str] = set()
        self.dispatched: set[str] = set()
        self.ended: set[str] = set()

    def observe(self, event: Event, decisions: list[Decision], st: SchedulerState) -> None:
        if isinstance(event, ServerStarted | RecoveryStarted):
            self.ended |= self.open | self.dispatched
            self.open.clear()
            self.dispatched.clear()
        answered: set[str] = set()
        for decision in decisions:
            if isinstance(decision, Dispatch | Reject):
                rid = decision.request_id
                assert rid not in answered, f"request {rid} answered twice in one step"
                answered.add(rid)
                assert rid not in self.dispatched and rid not in self.ended, (
                    f"request {rid} answered ({decision.type_name}) after it was already answered"
                )
                if isinstance(decision, Dispatch):
                    self.open.discard(rid)
                    self.dispatched.add(rid)
                else:
                    if rid in self.open:
                        self.open.discard(rid)
                    self.ended.add(rid)
        if isinstance(event, RequestReceived):
            rid = event.request_id
            if rid in st.requests and rid not in self.dispatched and rid not in self.ended:
                self.open.add(rid)
        elif isinstance(event, RequestFinished | RequestAbandoned):
            rid = event.request_id
            if rid in self.dispatched or rid in self.open:
                self.dispatched.discard(rid)
                self.open.discard(rid)
                self.ended.add(rid)
        elif isinstance(event, RequestCancelled):
            rid = event.request_id
            if rid in self.open:
                self.open.discard(rid)
                self.ended.add(rid)
        known = {rid for rid, req in st.requests.items() if not req.is_load}
        assert known == self.open | self.dispatched, (
            f"the reducer holds {sorted(known)} but the open requests are "
            f"{sorted(self.open | self.dispatched)}"
        )
        assert self.dispatched == {rid for rid in known if st.requests[rid].phase == DISPATCHED}, (
            "dispatched requests disagree between the decisions and the state"
        )
