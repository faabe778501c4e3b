"""Swap execution: llama-swap's swap worker as reducer steps instead of a goroutine.

A swap for target T with evict set E is `SwapPlanned`, then `StopProcess` for each model of E
that still runs (grace = its unloadTimeout, ARCHITECTURE §9.4), then, once every model of E and
T itself are stopped, `StartProcess(T, instance+1)`. It ends well at `ProcessReady(T)` and badly
at `ProcessStartFailed(T)`; a `SwapEnded` follow-up then has the policy answer its waiters.
A target that is `stopping` (TTL, unload) is waited for before it is started again (#946).
A target that is already ready (llama-swap's one-way non-exclusive case) completes as soon as
its evictions are done.
There is no rollback: models evicted for a failed target stay down.
"""

from __future__ import annotations

from llamaswap_es.core.effects import (
    cancel_queue_timeout,
    start_process,
    start_reason,
    stop_process,
)
from llamaswap_es.core.eviction import EvictionPlan
from llamaswap_es.core.followups import SwapEnded
from llamaswap_es.core.state import (
    EVICTING,
    LAUNCHING,
    READY,
    STARTING,
    STOPPING,
    WAITING,
    Out,
    SchedulerState,
    Swap,
)
from llamaswap_es.events.types import PlacementChosen, SwapPlanned


def start_swap(
    st: SchedulerState,
    target: str,
    plan: EvictionPlan,
    running: tuple[str, ...],
    request_id: str | None,
    waiters: list[str],
    out: Out,
) -> Swap:
    """Record the swap first (so later requests can join it), then begin its evictions."""
    memory = plan.memory
    swap = Swap(target, plan.evict, st.seq, request_id, memory.devices if memory else ())
    for rid in waiters:
        st.requests[rid].phase = WAITING
        cancel_queue_timeout(st, st.requests[rid], out)  # the load is bounded by its own limits
    swap.waiters = waiters
    st.swaps[target] = swap
    st.touch_processes()
    out.append(
        SwapPlanned(
            model=target, evict=plan.evict, running=running, request_id=request_id, rule=plan.rule
        )
    )
    if memory is not None:
        out.append(
            PlacementChosen(
                model=target,
                devices=memory.devices,
                need_mb=memory.need_mb,
                free_mb=memory.free_mb,
                evict=plan.evict,
                source=memory.source,
                rule=memory.rule,
                margin_mb=memory.margin_mb,
                freed_mb=dict(memory.freed_mb),
            )
        )
    advance_swap(st, swap, out)
    return swap


def advance_swap(st: SchedulerState, swap: Swap, out: Out) -> None:
    """Move an evicting swap on as far as the process states allow."""
    if swap.phase != EVICTING:
        return
    waiting = False
    models = st.models
    for model in swap.evict:
        proc = models.get(model)
        if proc is None or model == swap.model:
            continue
        if proc.state == READY or proc.state == STARTING:
            stop_process(st, proc, "evict", proc.schedule.unload_timeout_ms, out)
            waiting = True
        elif proc.state == STOPPING:
            waiting = True
    target = models[swap.model]
    if waiting or target.state == STOPPING:
        return
    swap.phase = LAUNCHING
    if target.state == READY:
        complete_swap(st, swap, None)
    elif target.state != STARTING:
        start_process(st, target, start_reason(swap.request_id), out, swap.devices)


def advance_evicting_swaps(st: SchedulerState, out: Out) -> None:
    """After a process went down: every swap that was waiting on a stop may move on."""
    if not st.swaps:
        return
    for swap in st.swaps_in_order():
        if swap.phase == EVICTING and st.swaps.get(swap.model) is swap:
            advance_swap(st, swap, out)


def complete_swap(st: SchedulerState, swap: Swap, error: str | None) -> None:
    """The swap is over: forget it now, and record the follow-up in which the policy answers its
    waiters (and moves on) once the current handler has returned (`core.followups`)."""
    if st.swaps.get(swap.model) is swap:
        del st.swaps[swap.model]
        st.touch_processes()
    st.followups.append(SwapEnded(swap, error))
