"""`reduce(state, envelope) -> (state, decisions)`: the pure scheduler.

Time is `envelope.ts_ms` (there is no other clock) and `envelope.seq` is the input's place in
the log (arrival order, and the source of synthetic ids such as a load's `load:<seq>`). The
state is mutated in place and returned, for speed; the function is deterministic: the same
inputs give the same decisions on any machine, every tie is broken by sorted ids or arrival.
It never raises on odd input (a stale instance, an unknown request or timer): it ignores it.

One input is one step: its handler runs, then the follow-ups it set off (a swap that ended, the
policy's wake behind it: `core.followups`) are handed to the policy in order, then the queue
positions go out. The policy is never called from inside itself.

Process events map llama-swap's harness onto the log (ARCHITECTURE §5, spec/core.md §8): the
executor reports ProcessReady / ProcessStartFailed / ProcessStopped / ProcessExited for the
instance the reducer assigned; an event for another instance is stale and ignored.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from llamaswap_es.core import control
from llamaswap_es.core.effects import (
    NOT_FOUND_MESSAGE,
    QUEUE_TIMER,
    RATE_LIMIT_MESSAGE,
    SUSPECT_TIMER,
    SUSPECT_WAIT_MS,
    arm_queue_timeout,
    arm_ttl,
    cancel_queue_timeout,
    end_request,
    fail,
    forget_if_retired,
    idle_load_id,
    idle_ttl_ms,
    mark_down,
    mark_ready,
    remove_waiting,
    set_timer,
    stop_process,
    suspect_timer_id,
)
from llamaswap_es.core.followups import WAKE_POLICY, drain_followups
from llamaswap_es.core.memory import Footprint, GpuSample
from llamaswap_es.core.selectors import forget_selections, select
from llamaswap_es.core.start_backoff import forget_failures, record_failure
from llamaswap_es.core.state import (
    DISPATCHED,
    FAILED,
    LAUNCHING,
    QUEUED,
    READY,
    STARTING,
    STOPPED,
    STOPPING,
    ModelProc,
    Out,
    Request,
    SchedulerState,
)
from llamaswap_es.core.swaps import advance_evicting_swaps, complete_swap
from llamaswap_es.events.types import (
    FOOTPRINT_SOURCES,
    ConfigApplied,
    Decision,
    DispatchUnreachable,
    Envelope,
    Event,
    FootprintKnown,
    GpuMemorySampled,
    LoadRequested,
    ProcessAdopted,
    ProcessExited,
    ProcessHung,
    ProcessReady,
    ProcessStartFailed,
    ProcessStopped,
    ProfileActivated,
    RecoveryStarted,
    Reject,
    RequestAbandoned,
    RequestCancelled,
    RequestFinished,
    RequestReceived,
    SelectionEnded,
    SelectorRequested,
    ServerStarted,
    ShutdownRequested,
    StopProcess,
    TimerFired,
    UnloadRequested,
)

REDUCER_VERSION = "core-4"
"""Bumped whenever a change makes the reducer decide differently for the same inputs, so that
replay can tell an intended change from a bug (snapshots of another version are not restored).
core-2: per-request TTL overrides and the queue timeout (new state fields in snapshots; a log
without them decides as under core-1).
core-3: a reload keeps the waiters of a model it changed (they go back to the queue and are
served by the new instance) instead of failing them. Failed starts are recorded per model with a
backoff (`core.start_backoff`: a new state field in snapshots, retry hints in Reject); a log
whose configs predate the backoff settings decides as without it, and its snapshots restore.
core-4: placement by GPU memory (`core.placement`): GPU samples, footprints and the devices
each instance holds are state (new snapshot fields); with placement off (the default, and
every older log) the decisions are those of core-3. Also
core-4: selectors choose in the reducer (`SelectorRequested` -> `SelectorChose`, reservations and
the round-robin cursor in the state: `core.selectors`); logs without selector inputs decide as
under core-3.
core-4: the grant carries the way to serve (`Dispatch.address`, kept per model from
ProcessReady/ProcessAdopted) and `DispatchUnreachable` takes a dispatched request back into the
queue under the same id, with the suspect-instance rule (new per-model state fields).
core-4: no QueuePositions decision (positions are derived state: the run loop reads them from the
committed view). `replay verify` skips the ones in older logs (derived, not compared)."""


def reduce(state: SchedulerState, envelope: Envelope) -> tuple[SchedulerState, list[Decision]]:
    """Apply one input to the state; return the state and the decisions it produced."""
    out: list[Decision] = []
    handler = _HANDLERS.get(type(envelope.body))
    if handler is None:  # a decision, or a fact for the history only (ProcessSpawned,
        # PeerRequestFinished …): no state change, no decision, not even the clock moves
        return state, out
    state.seq = envelope.seq
    state.now_ms = envelope.ts_ms
    handler(state, envelope.body, envelope, out)
    drain_followups(state, out)
    return state, out


_E = TypeVar("_E", bound=Event)
_Handler = Callable[[SchedulerState, _E, Envelope, Out], None]
_HANDLERS: dict[type[object], _Handler[Any]] = {}
"""Each input type's handler, by exact type (an input without one changes nothing)."""


def _handles(*types: type[_E]) -> Callable[[_Handler[_E]], _Handler[_E]]:
    """Register the decorated function as the handler of `types`: the type checker then sees
    that each handler takes the very event type it is looked up by."""

    def register(handler: _Handler[_E]) -> _Handler[_E]:
        for event_type in types:
            _HANDLERS[event_type] = handler
        return handler

    return register


# ------------------------------------------------------------------------ requests


@_handles(RequestReceived)
def _on_request(st: SchedulerState, ev: RequestReceived, env: Envelope, out: Out) -> None:
    rid = ev.request_id
    if rid in st.requests:  # the shell makes ids unique; a repeat must not answer the first
        return
    selection = st.selections.pop(rid, None)  # a selector chose its model: its reservation
    # goes on as this request's (or ends here, if the request is rejected)
    if st.shutting_down:
        message = f"unspecific error: {st.router_name} is shutting down"
        out.append(Reject(request_id=rid, status=500, code="shutting_down", message=message))
        return
    proc = st.models.get(ev.model)
    if proc is None or proc.retired or st.config is None:
        out.append(
            Reject(request_id=rid, status=404, code="model_not_found", message=NOT_FOUND_MESSAGE)
        )
        return
    if proc.reserved >= proc.schedule.concurrency_limit:
        out.append(
            Reject(request_id=rid, status=429, code="concurrency_limit", message=RATE_LIMIT_MESSAGE)
        )
        return
    priority = proc.schedule.priority if ev.priority is None else ev.priority
    req = Request(rid, ev.model, env.seq, env.ts_ms, priority, ttl_override_ms=ev.ttl_override_ms)
    if selection is not None:
        req.selector, req.target = selection.selector, selection.target
    _admit(st, req, proc, out)


@_handles(SelectorRequested)
def _on_selector(st: SchedulerState, ev: SelectorRequested, env: Envelope, out: Out) -> None:
    select(st, ev, out)


@_handles(SelectionEnded)
def _on_selection_ended(st: SchedulerState, ev: SelectionEnded, env: Envelope, out: Out) -> None:
    """A choice that never became a request of ours ends (a peer served it, or the handler
    refused it first); one that became a request ends with it, so this is then a no-op."""
    st.selections.pop(ev.request_id, None)


@_handles(LoadRequested)
def _on_load(st: SchedulerState, ev: LoadRequested, env: Envelope, out: Out) -> None:
    """A load goes the normal way (it can queue, evict, join) but has no client and is never
    counted in flight. Refused silently when it could not be admitted (nobody to answer)."""
    proc = st.models.get(ev.model)
    if st.shutting_down or proc is None or proc.retired or st.config is None:
        return
    forget_failures(proc)  # an operator asks for it: try at once, whatever failed before
    if proc.reserved >= proc.schedule.concurrency_limit:
        return
    req = Request(f"load:{env.seq}", ev.model, env.seq, env.ts_ms, proc.schedule.priority, True)
    _admit(st, req, proc, out)


def _admit(st: SchedulerState, req: Request, proc: ModelProc, out: Out) -> None:
    st.requests[req.request_id] = req
    proc.reserved += 1
    st.policy.place(st, req, out)
    if req.phase == QUEUED and req.request_id in st.requests:
        arm_queue_timeout(st, req, out)


@_handles(RequestCancelled)
def _on_cancel(st: SchedulerState, ev: RequestCancelled, env: Envelope, out: Out) -> None:
    """The client left before dispatch: free its slot. A swap it started goes on (§3.6)."""
    req = st.requests.get(ev.request_id)
    if req is None or req.phase == DISPATCHED:
        return
    _drop_waiting(st, req, out)


def _drop_waiting(st: SchedulerState, req: Request, out: Out) -> None:
    remove_waiting(st, req)
    cancel_queue_timeout(st, req, out)
    end_request(st, req, st.models[req.model])
    _after_queue_exit(st, out)


def _after_queue_exit(st: SchedulerState, out: Out) -> None:
    # Nothing waits on a waiting request (llama-swap does not drain on a cancel) except, with
    # a starvation bound, requests held back behind one that was starving.
    if st.config is not None and st.config.starvation_bound_ms > 0:
        st.policy.wake(st, out)


@_handles(RequestFinished)
def _on_finished(st: SchedulerState, ev: RequestFinished, env: Envelope, out: Out) -> None:
    req = st.requests.get(ev.request_id)
    if req is None:
        return
    if req.phase != DISPATCHED:  # ended before it was dispatched: same as a cancel
        _drop_waiting(st, req, out)
        return
    _end_dispatched(st, req, out)


def _end_dispatched(st: SchedulerState, req: Request, out: Out) -> None:
    proc = st.models[req.model]
    end_request(st, req, proc)
    proc.last_used_ms = st.now_ms
    if req.instance == proc.instance:  # a request of a crashed instance sets nothing on the next
        proc.ttl_override_ms = req.ttl_override_ms  # the last finished request's wins (or none)
    if proc.in_flight == 0 and proc.state == READY:
        arm_ttl(st, proc, out)
    st.policy.on_request_ended(st, proc, out)


UNREACHABLE = "unreachable"
"""StopProcess.reason for an instance that two requests in a row could not reach."""


@_handles(DispatchUnreachable)
def _on_unreachable(st: SchedulerState, ev: DispatchUnreachable, env: Envelope, out: Out) -> None:
    """Ours: the handler could not reach the instance it was granted, and its client has been
    sent nothing. The same request goes back to the head of the queue; the instance becomes
    suspect. The whole rule is in `DispatchUnreachable`'s docstring (and docs/architecture.md)."""
    req = st.requests.get(ev.request_id)
    if req is None or req.phase != DISPATCHED:  # finished, or already taken back: stale
        return
    if req.model != ev.model or req.instance != ev.instance:  # about an earlier grant: stale
        return
    proc = st.models[req.model]
    if st.shutting_down or proc.retired:  # nothing will start it again: answered as its waiters
        code = "shutting_down" if st.shutting_down else "config_reloaded"
        message = f"unspecific error: {st.router_name} is shutting down"
        fail(st, req, 500, code, message, out)
        st.followups.append(WAKE_POLICY)  # its in-flight slot is free
        return
    proc.in_flight -= 1
    st.in_flight_total -= 1
    req.phase = QUEUED  # `instance` keeps the grant it lost: that marks it as taken back
    st.queue.insert(_head_position(st, req), req.request_id)
    if proc.instance == ev.instance and proc.state == READY:
        if proc.suspect:  # the second report for this instance decides: it is broken
            stop_process(st, proc, UNREACHABLE, proc.schedule.unload_timeout_ms, out)
        else:
            proc.suspect_instance = proc.instance
            timer = suspect_timer_id(proc.model, proc.instance)
            set_timer(st, timer, st.now_ms + SUSPECT_WAIT_MS, SUSPECT_TIMER, out)
    st.followups.append(WAKE_POLICY)


def _head_position(st: SchedulerState, req: Request) -> int:
    """The head of the queue, behind requests taken back before it that arrived earlier (so
    two requests taken back from one instance keep their arrival order)."""
    requests = st.requests
    index = 0
    for rid in st.queue:
        ahead = requests.get(rid)
        if ahead is None or ahead.instance == 0 or ahead.arrival > req.arrival:
            break
        index += 1
    return index


def _on_suspect_timeout(st: SchedulerState, proc: ModelProc) -> None:
    """No exit was reported while the instance was suspect: a connection race, not a death.
    It is trusted again, and the requests held back for it are dispatched to it."""
    if proc.suspect:
        proc.suspect_instance = 0
        st.followups.append(WAKE_POLICY)


@_handles(RequestAbandoned)
def _on_abandoned(st: SchedulerState, ev: RequestAbandoned, env: Envelope, out: Out) -> None:
    req = st.requests.get(ev.request_id)
    if req is None:
        return
    if req.phase == DISPATCHED:
        _end_dispatched(st, req, out)
    else:
        _drop_waiting(st, req, out)


# ------------------------------------------------------------------------ processes


def _current(st: SchedulerState, model: str, instance: int) -> ModelProc | None:
    proc = st.models.get(model)
    if proc is None or proc.instance != instance:
        return None
    return proc


@_handles(ProcessReady)
def _on_ready(st: SchedulerState, ev: ProcessReady, env: Envelope, out: Out) -> None:
    proc = _current(st, ev.model, ev.instance)
    if proc is None or proc.state != STARTING:  # e.g. ready just before our stop reached it
        return
    forget_failures(proc)
    proc.address = ev.address
    mark_ready(st, proc, out)
    swap = st.swaps.get(ev.model)
    if swap is not None and swap.phase == LAUNCHING:
        complete_swap(st, swap, None)


@_handles(ProcessStartFailed)
def _on_start_failed(st: SchedulerState, ev: ProcessStartFailed, env: Envelope, out: Out) -> None:
    proc = _current(st, ev.model, ev.instance)
    if proc is None:
        return
    error = ev.error
    if proc.state == STARTING:  # not one a stop (reload, unload, eviction) had already ended
        error = record_failure(st, proc, ev)
    _went_down(st, proc, error, out)


@_handles(ProcessStopped)
def _on_stopped(st: SchedulerState, ev: ProcessStopped, env: Envelope, out: Out) -> None:
    proc = _current(st, ev.model, ev.instance)
    if proc is None:
        return
    after_ttl = proc.state == STOPPING and proc.stop_reason == "ttl"
    _went_down(st, proc, "aborted", out)
    if after_ttl:
        _load_idle_model(st, env, ev.model, out)


def _load_idle_model(st: SchedulerState, env: Envelope, stopped: str, out: Out) -> None:
    """Ours (`idleModel`, spec B.3 #8): a TTL unload that leaves the GPU idle loads the idle
    model, so the next request finds something warm.

    Only here, after a TTL stop has completed: never after an unload (the user wants the GPU
    empty), a crash, a failed start, an eviction or a reload, never while shutting down, and
    never when the model that stopped is the idle model itself (its own TTL applies, no loop).
    "Idle" means no process starting, ready or stopping, no request admitted (queued, waiting
    or a load) and no swap under way: a request that arrived meanwhile has its model loaded
    instead. The load goes the way a LoadRequested does (so groups, the matrix and the
    invariants hold), with id `idle:<seq>`, which its StartProcess reports as `idle_model`."""
    config = st.config
    if config is None or not config.idle_model or config.idle_model == stopped:
        return
    if st.shutting_down or st.requests or st.swaps or st.running_models():
        return
    proc = st.models.get(config.idle_model)
    if proc is None or proc.retired:
        return
    priority = proc.schedule.priority
    req = Request(idle_load_id(env.seq), proc.model, env.seq, env.ts_ms, priority, True)
    _admit(st, req, proc, out)


@_handles(ProcessExited)
def _on_exited(st: SchedulerState, ev: ProcessExited, env: Envelope, out: Out) -> None:
    """A crash of a ready process: the executor already killed its whole group (§9.5). No
    restart: the next request for it goes through a normal swap. In-flight requests end with
    their own RequestFinished."""
    proc = _current(st, ev.model, ev.instance)
    if proc is not None:
        _went_down(st, proc, "upstream command exited prematurely", out)


HUNG = "hung"
"""StopProcess.reason for a process declared hung (ProcessHung)."""


@_handles(ProcessHung)
def _on_hung(st: SchedulerState, ev: ProcessHung, env: Envelope, out: Out) -> None:
    """Ours (ARCHITECTURE §11.6): a ready process that stopped answering its health probes is
    stopped at once, with no grace: a hung (or SIGSTOPped) process cannot act on SIGTERM, and
    its group holds the swap group hostage. Its in-flight requests stay counted until their own
    RequestFinished (the web layer ends them with a 504 or an SSE error frame when this stop is
    committed); queued requests wait as for any stop, and the next request for the model starts
    a fresh instance. A stop already under way (a TTL, an eviction) is made immediate by a
    second StopProcess (the executor only ever shortens a grace). A report for another instance,
    or for one that is not serving, is stale and ignored."""
    proc = _current(st, ev.model, ev.instance)
    if proc is None:
        return
    if proc.state == READY:
        stop_process(st, proc, HUNG, 0, out)
    elif proc.state == STOPPING:
        out.append(StopProcess(model=proc.model, instance=proc.instance, reason=HUNG, grace_ms=0))


def _went_down(st: SchedulerState, proc: ModelProc, error: str, out: Out) -> None:
    """The current instance is gone, whichever way; `error` answers a start that it ends."""
    was = proc.state
    if was == STARTING:
        mark_down(st, proc, FAILED, out)
    elif was in (READY, STOPPING):
        mark_down(st, proc, STOPPED, out)
    else:
        return
    advance_evicting_swaps(st, out)
    swap = st.swaps.get(proc.model)
    if was == STARTING and swap is not None and swap.phase == LAUNCHING:
        complete_swap(st, swap, error)
    else:  # behind the swaps that the stop let finish (advance_evicting_swaps)
        st.followups.append(WAKE_POLICY)
    forget_if_retired(st, proc)


@_handles(TimerFired)
def _on_timer(st: SchedulerState, ev: TimerFired, env: Envelope, out: Out) -> None:
    timer_id = ev.timer_id
    if timer_id not in st.timers:  # cancelled or replaced: stale
        return
    del st.timers[timer_id]
    kind, _, rest = timer_id.partition(":")
    if kind == QUEUE_TIMER:
        _on_queue_timeout(st, rest, out)
        return
    model, _, instance = rest.rpartition(":")
    proc = _current(st, model, int(instance)) if instance.isdigit() else None
    if kind == "ttl" and proc is not None:
        _on_ttl(st, proc, out)
    elif kind == SUSPECT_TIMER and proc is not None:
        _on_suspect_timeout(st, proc)
    elif kind == "resident":
        st.policy.wake(st, out)


def _on_ttl(st: SchedulerState, proc: ModelProc, out: Out) -> None:
    """Unload after `ttl` of idleness (strictly more, as llama-swap compares). Ours: the idle
    clock starts at ready and restarts at every finished request (ARCHITECTURE §9.3)."""
    if proc.state != READY or proc.in_flight > 0:  # a finishing request re-arms it
        return
    ttl = idle_ttl_ms(proc)
    if ttl is None:  # lifted since it was armed (a "forever" override, a reload)
        return
    if st.now_ms - proc.last_used_ms > ttl:
        stop_process(st, proc, "ttl", proc.schedule.unload_timeout_ms, out)
    else:
        arm_ttl(st, proc, out)


def _on_queue_timeout(st: SchedulerState, request_id: str, out: Out) -> None:
    """Ours (`queueTimeoutSeconds`): a request still in the queue is answered 503.

    One that has joined a swap (its model is being loaded for it, or evictions for that load
    are under way) is left alone: the load is bounded by the model's own unloadTimeout and
    healthCheckTimeout, and giving up would waste it. If a reload puts it back in the queue, the
    timer is armed again for what is left of its time (see `control._replan`)."""
    req = st.requests.get(request_id)
    if req is None or req.phase != QUEUED or st.config is None:
        return
    if st.config.queue_timeout_ms <= 0:  # turned off by a reload (its timers were cancelled)
        return
    waited_ms = st.now_ms - req.received_ms
    if waited_ms <= st.config.queue_timeout_ms:  # cannot fire early, but if it did: re-arm
        arm_queue_timeout(st, req, out)
        return
    waited_s = waited_ms / 1000
    limit_s = st.config.queue_timeout_ms / 1000
    message = (
        f'request waited {waited_s:.1f} s in the queue for model "{req.model}" '
        f"(queueTimeoutSeconds: {limit_s:g})"
    )
    remove_waiting(st, req)
    fail(st, req, 503, "queue_timeout", message, out)
    _after_queue_exit(st, out)


# ------------------------------------------------------------------------ operators, boot


@_handles(ConfigApplied)
def _on_config(st: SchedulerState, ev: ConfigApplied, env: Envelope, out: Out) -> None:
    st.active_profile = None  # a new configuration ends any profile (llama-swap's reload)
    control.apply_config(st, ev, out)


@_handles(ProfileActivated)
def _on_profile(st: SchedulerState, ev: ProfileActivated, env: Envelope, out: Out) -> None:
    st.active_profile = ev.name


@_handles(UnloadRequested)
def _on_unload(st: SchedulerState, ev: UnloadRequested, env: Envelope, out: Out) -> None:
    control.unload(st, ev, out)


@_handles(ShutdownRequested)
def _on_shutdown(st: SchedulerState, ev: ShutdownRequested, env: Envelope, out: Out) -> None:
    control.shutdown(st, ev, out)


@_handles(ServerStarted, RecoveryStarted)
def _on_boot(st: SchedulerState, ev: Event, env: Envelope, out: Out) -> None:
    control.new_boot(st)
    forget_selections(st)


@_handles(ProcessAdopted)
def _on_adopted(st: SchedulerState, ev: ProcessAdopted, env: Envelope, out: Out) -> None:
    """Recovery kept a live, healthy, unchanged process from the previous run: it is ready."""
    proc = st.models.get(ev.model)
    if proc is None or proc.retired or proc.state not in (STOPPED, FAILED):
        return
    proc.instance = ev.instance
    proc.address = ev.address
    forget_failures(proc)
    mark_ready(st, proc, out)
    st.policy.wake(st, out)


# ------------------------------------------------------------------------ GPU memory (ours)


@_handles(GpuMemorySampled)
def _on_gpu_sample(st: SchedulerState, ev: GpuMemorySampled, env: Envelope, out: Out) -> None:
    """The newest sample replaces the last, with the instances that were ready on the devices
    at that moment (`core.memory` counts free memory from them). A sample whose tuples do not
    line up is ignored. With placement on, waiting requests are looked at again: memory may
    have come free."""
    count = len(ev.total_mb)
    if len(ev.free_mb) != count:
        return
    ready = tuple(
        (model, proc.instance, proc.devices)
        for model, proc in sorted(st.models.items())
        if proc.state in (READY, STOPPING) and proc.devices  # a stopping one still holds its memory
    )
    st.gpu = GpuSample(
        total_mb=tuple(ev.total_mb),
        free_mb=tuple(ev.free_mb),
        uuids=tuple(ev.uuids) if len(ev.uuids) == count else (),
        names=tuple(ev.names) if len(ev.names) == count else (),
        ready=ready,
    )
    _placement_facts_changed(st)


@_handles(FootprintKnown)
def _on_footprint(st: SchedulerState, ev: FootprintKnown, env: Envelope, out: Out) -> None:
    """A model's footprint from one source; the best source wins when it is used
    (`core.memory.best_footprint`), so a later estimate never hides a measurement. A fact of an
    unknown source or without a positive size is ignored, and so is a measurement of an instance
    that is no longer the model's ready one (taken before a reload changed its command)."""
    if ev.source not in FOOTPRINT_SOURCES or ev.mb <= 0 or ev.devices < 1:
        return
    if ev.instance:
        proc = st.models.get(ev.model)
        if proc is None or proc.instance != ev.instance or proc.state != READY:
            return
    if any(part < 0 for part in ev.per_device_mb):
        return
    facts = st.footprints.setdefault(ev.model, {})
    facts[ev.source] = Footprint(
        source=ev.source,
        mb=ev.mb,
        devices=ev.devices,
        per_device_mb=tuple(ev.per_device_mb),
        detail=ev.detail,
    )
    _placement_facts_changed(st)


def _placement_facts_changed(st: SchedulerState) -> None:
    """New memory facts may unblock a waiting request; with placement off nothing is woken, so
    decisions stay exactly those of a log without the facts."""
    config = st.config
    if config is not None and config.placement.active and st.configured:
        st.followups.append(WAKE_POLICY)
