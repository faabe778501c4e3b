"""The small surface through which policies and handlers change state and emit decisions.

This is our counterpart of llama-swap's scheduler "effects" (read a model's state, read the
running set, start a swap, grant, fail, stop), except that every effect is a decision appended
to `out` and a matching state change, in one step: a grant and its in-flight increment are one
atomic step of the reducer (#667).
"""

from __future__ import annotations

from llamaswap_es.core.eviction import EvictionPlan
from llamaswap_es.core.placement import DOES_NOT_FIT, plan_with_memory
from llamaswap_es.core.state import (
    DISPATCHED,
    EVICTING,
    READY,
    RUNNING_STATES,
    STARTING,
    STOPPING,
    ModelProc,
    Out,
    Request,
    SchedulerState,
)
from llamaswap_es.events.types import (
    TTL_FOREVER,
    CancelTimer,
    Dispatch,
    Reject,
    SetTimer,
    StartProcess,
    StopProcess,
)

# Reject codes and llama-swap's texts (spec/core.md §2.7, spec/api.md §5).
NOT_FOUND_MESSAGE = "no local server found for requested model"
RATE_LIMIT_MESSAGE = "Too many requests"

_EVICT_CACHE_LIMIT = 4096


def ttl_timer_id(model: str, instance: int) -> str:
    return f"ttl:{model}:{instance}"


def resident_timer_id(model: str, instance: int) -> str:
    return f"resident:{model}:{instance}"


SUSPECT_TIMER = "suspect"
SUSPECT_WAIT_MS = 500
"""How long a suspect instance (see `DispatchUnreachable`) waits for the executor's word before
it is trusted again. An exit is reported within milliseconds of the process's death; a
connection that broke on a live upstream (a keep-alive race) costs its request this much."""


def suspect_timer_id(model: str, instance: int) -> str:
    return f"{SUSPECT_TIMER}:{model}:{instance}"


QUEUE_TIMER = "queue"


def queue_timer_id(request_id: str) -> str:
    return f"{QUEUE_TIMER}:{request_id}"


IDLE_LOAD = "idle"
"""Request-id prefix of the load the reducer makes for `idleModel` (a client-less load, as
LoadRequested's `load:<seq>`); the swap it starts launches with the reason below."""
IDLE_START_REASON = "idle_model"


def idle_load_id(seq: int) -> str:
    return f"{IDLE_LOAD}:{seq}"


def start_reason(request_id: str | None) -> str:
    """StartProcess.reason for a swap started by `request_id`: the idle model's own load says
    so in the log; every other start is a plain swap."""
    if request_id is not None and request_id.startswith(IDLE_LOAD + ":"):
        return IDLE_START_REASON
    return "swap"


# ------------------------------------------------------------------------ running set, plans


def running_for(st: SchedulerState, target: str) -> tuple[str, ...]:
    """llama-swap's running set for `target`: every starting/ready/stopping model plus the targets
    of the other active swaps (#677), sorted.

    Ours: a target that is itself `stopping` is left out, so it is planned like a cold start
    (the matrix solver would otherwise see it "already running" and evict nothing, letting it
    restart beside a model it cannot coexist with).
    """
    cached = st.cached_running_for(target)
    if cached is not None:
        return cached
    running = st.running_models()
    if st.swaps:
        extra = [m for m in st.swaps if m != target and m not in running]
        if extra:
            running = tuple(sorted((*running, *extra)))
    proc = st.models.get(target)
    if proc is not None and proc.state == STOPPING:
        running = tuple(m for m in running if m != target)
    st.remember_running_for(target, running)
    return running


def plan_eviction(st: SchedulerState, target: str, running: tuple[str, ...]) -> EvictionPlan:
    """The policy's planner answer for (target, running), cached until the config changes,
    with placement by memory on top when it is on (`core.placement`). Only the planner's part
    is cached: the memory part depends on samples, footprints, who is busy and recency, so it
    is worked out afresh on every call and never comes back stale."""
    plan = st.cached_plan(target, running)
    if plan is None:
        plan = st.policy.planner(st).plan(target, running)
        st.remember_plan(target, running, plan, _EVICT_CACHE_LIMIT)
    config = st.config
    if config is not None and config.placement.active:
        plan = plan_with_memory(st, target, running, plan)
    return plan


def refuse_unplaceable(st: SchedulerState, req: Request, plan: EvictionPlan, out: Out) -> bool:
    """Answer a request whose model placement by memory cannot place (503 `does_not_fit`,
    permanent when it never could); True when it was answered."""
    refusal = plan.does_not_fit
    if refusal is None:
        return False
    remove_waiting(st, req)
    fail(st, req, 503, DOES_NOT_FIT, refusal.message, out, permanent=refusal.permanent)
    return True


def evicted_by_active_swap(st: SchedulerState, model: str) -> bool:
    """Whether an active swap for another target is stopping `model`."""
    return any(swap.model != model and model in swap.evict for swap in st.swaps.values())


def collides(st: SchedulerState, target: str, evict: tuple[str, ...]) -> bool:
    """llama-swap's collision of a new swap (target, evict) with any active swap (U, F), U != T:
    we would stop U, they would stop us, or both would stop the same model (§3.2)."""
    for swap in st.swaps.values():
        other = swap.model
        if other == target:
            continue
        if other in evict or target in swap.evict:
            return True
        for model in evict:
            if model in swap.evict:
                return True
        if swap.phase == EVICTING and _would_evict(st, other, target):
            return True
    return False


def _would_evict(st: SchedulerState, other: str, target: str) -> bool:
    """Ours: whether `other` (a swap still evicting, not yet started) could not start beside
    `target`. llama-swap lets `target` start in that window when the rule is one-way (groups),
    and `other` then starts beside a model its own rule excludes; we queue `target` until
    `other` has started, after which `target`'s own rule decides."""
    running = running_for(st, other)
    if target not in running:
        running = tuple(sorted((*running, target)))
    return target in plan_eviction(st, other, running).evict


def busy_victim(st: SchedulerState, evict: tuple[str, ...]) -> bool:
    """Some model to evict is serving requests: busy models are never evicted by a swap.

    A suspect instance (`DispatchUnreachable`) counts as busy: the request taken back from it
    waits for the suspicion to be settled, and a swap must not jump ahead of it."""
    models = st.models
    for model in evict:
        proc = models.get(model)
        if proc is not None and (proc.in_flight > 0 or proc.suspect):
            return True
    return False


def young_victims(st: SchedulerState, evict: tuple[str, ...], out: Out) -> bool:
    """Ours (ARCHITECTURE §9.2): a model ready for less than `min_resident_ms` is not evicted by
    a swap. Arms a timer per such model so the waiting swap is retried when it comes of age."""
    assert st.config is not None
    minimum = st.config.min_resident_ms
    if minimum <= 0:
        return False
    young = False
    for model in evict:
        proc = st.models.get(model)
        if proc is None or proc.state != READY:
            continue
        if st.now_ms - proc.ready_at_ms < minimum:
            young = True
            timer = resident_timer_id(model, proc.instance)
            if timer not in st.timers:
                set_timer(st, timer, proc.ready_at_ms + minimum, "min_resident", out)
    return young


# ------------------------------------------------------------------------ requests


def grant(st: SchedulerState, req: Request, out: Out) -> None:
    """Dispatch a request to its model's current instance and count it in flight (one step).

    A load (no client) ends here instead: its job was only to make the model ready.
    """
    proc = st.models[req.model]
    if req.is_load:
        end_request(st, req, proc)
        return
    cancel_queue_timeout(st, req, out)
    req.phase = DISPATCHED
    req.instance = proc.instance
    proc.in_flight += 1
    st.in_flight_total += 1
    out.append(
        Dispatch(
            request_id=req.request_id,
            model=req.model,
            instance=proc.instance,
            address=proc.address,
        )
    )


def fail(
    st: SchedulerState,
    req: Request,
    status: int,
    code: str,
    message: str,
    out: Out,
    *,
    retry_after_ms: int | None = None,
    permanent: bool = False,
) -> None:
    """Answer a waiting request with an error and release its slot (loads end silently)."""
    cancel_queue_timeout(st, req, out)
    end_request(st, req, st.models[req.model])
    if not req.is_load:
        out.append(
            Reject(
                request_id=req.request_id,
                status=status,
                code=code,
                message=message,
                retry_after_ms=retry_after_ms,
                permanent=permanent,
            )
        )


def end_request(st: SchedulerState, req: Request, proc: ModelProc) -> None:
    """Forget a request and release its reservation (and its in-flight slot if dispatched).

    A request that ends before dispatch has its queue timer cancelled first (`fail`,
    `cancel_queue_timeout`)."""
    del st.requests[req.request_id]
    proc.reserved -= 1
    if req.phase == DISPATCHED:
        proc.in_flight -= 1
        st.in_flight_total -= 1
    forget_if_retired(st, proc)


def remove_waiting(st: SchedulerState, req: Request) -> None:
    """Take a not-yet-dispatched request out of the queue or its swap's waiters."""
    rid = req.request_id
    if rid in st.queue:
        st.queue.remove(rid)
        return
    swap = st.swaps.get(req.model)
    if swap is not None and rid in swap.waiters:
        swap.waiters.remove(rid)


def forget_if_retired(st: SchedulerState, proc: ModelProc) -> None:
    """A model removed by a reload is dropped once nothing refers to it any more."""
    if (
        proc.retired
        and proc.reserved == 0
        and proc.in_flight == 0
        and proc.state not in RUNNING_STATES
        and proc.model not in st.swaps
    ):
        del st.models[proc.model]
        st.touch_processes()
        st.forget_plans()


# ------------------------------------------------------------------------ processes, timers


def start_process(
    st: SchedulerState, proc: ModelProc, reason: str, out: Out, devices: tuple[int, ...] = ()
) -> None:
    """Start the next instance, on `devices` when placement chose them (their UUIDs from the
    newest sample go with them, for the executor's `CUDA_VISIBLE_DEVICES`)."""
    proc.instance += 1
    proc.state = STARTING
    proc.devices = devices
    st.touch_processes()
    uuids: tuple[str, ...] = ()
    gpu = st.gpu
    if devices and gpu is not None and all(d < len(gpu.uuids) for d in devices):
        uuids = tuple(gpu.uuids[d] for d in devices)
    out.append(
        StartProcess(
            model=proc.model,
            instance=proc.instance,
            reason=reason,
            devices=devices,
            device_uuids=uuids,
        )
    )


def stop_process(st: SchedulerState, proc: ModelProc, reason: str, grace_ms: int, out: Out) -> bool:
    """Ask the executor to stop a starting or ready process; True if a stop was issued.

    A stop sent to a starting process aborts its start (the executor answers ProcessStopped).
    """
    if proc.state != READY and proc.state != STARTING:
        return False
    proc.state = STOPPING
    proc.stop_reason = reason
    st.touch_processes()
    cancel_process_timers(st, proc, out)
    out.append(
        StopProcess(model=proc.model, instance=proc.instance, reason=reason, grace_ms=grace_ms)
    )
    return True


def mark_ready(st: SchedulerState, proc: ModelProc, out: Out) -> None:
    """A new (or adopted) instance starts with the configured TTL: an override applies to the
    instance that served the request that asked for it."""
    proc.state = READY
    proc.ready_at_ms = st.now_ms
    proc.last_used_ms = st.now_ms
    proc.ttl_override_ms = None
    st.touch_processes()
    arm_ttl(st, proc, out)


def mark_down(st: SchedulerState, proc: ModelProc, state: str, out: Out) -> None:
    """The process is gone (stopped, crashed or failed to start), and with it its hold on
    the devices it was started on."""
    proc.state = state
    proc.devices = ()
    st.touch_processes()
    cancel_process_timers(st, proc, out)


def idle_ttl_ms(proc: ModelProc) -> int | None:
    """How long the model may stay idle before it is unloaded; None: never.

    The last finished request's override (`ttl`/`keep_alive`) wins over the configured ttl: 0
    there means "unload as soon as idle", while a configured 0 means "never" (llama-swap's)."""
    override = proc.ttl_override_ms
    if override is None:
        ttl = proc.schedule.ttl_ms
        return ttl if ttl > 0 else None
    return None if override == TTL_FOREVER else override


def arm_ttl(st: SchedulerState, proc: ModelProc, out: Out) -> None:
    """(Re)arm the idle timer: it fires once idle time is strictly greater than the ttl.

    With no ttl in force (none configured, or a "forever" override) a timer armed earlier is
    cancelled, so an override can lift a configured ttl."""
    ttl = idle_ttl_ms(proc)
    if proc.state != READY:
        return
    timer_id = ttl_timer_id(proc.model, proc.instance)
    if ttl is None:
        cancel_timer(st, timer_id, out)
    else:
        set_timer(st, timer_id, proc.last_used_ms + ttl + 1, "ttl", out)


def arm_queue_timeout(st: SchedulerState, req: Request, out: Out) -> None:
    """Ours: reject a client's request still queued `queue_timeout_ms` after it arrived
    (strictly longer, as the other bounds). Never for a load: it has nobody to answer."""
    assert st.config is not None
    timeout = st.config.queue_timeout_ms
    if timeout <= 0 or req.is_load:
        return
    timer_id = queue_timer_id(req.request_id)
    if timer_id not in st.timers:
        at = max(req.received_ms + timeout + 1, st.now_ms)
        set_timer(st, timer_id, at, "queue_timeout", out)


def cancel_queue_timeout(st: SchedulerState, req: Request, out: Out) -> None:
    if st.timers:
        cancel_timer(st, queue_timer_id(req.request_id), out)


def cancel_process_timers(st: SchedulerState, proc: ModelProc, out: Out) -> None:
    if st.timers:
        cancel_timer(st, ttl_timer_id(proc.model, proc.instance), out)
        cancel_timer(st, resident_timer_id(proc.model, proc.instance), out)
        cancel_timer(st, suspect_timer_id(proc.model, proc.instance), out)


def set_timer(st: SchedulerState, timer_id: str, at_ms: int, purpose: str, out: Out) -> None:
    """Arm (or re-arm: the executor replaces a timer with the same id) a timer."""
    st.timers[timer_id] = at_ms
    out.append(SetTimer(timer_id=timer_id, at_ms=at_ms, purpose=purpose))


def cancel_timer(st: SchedulerState, timer_id: str, out: Out) -> None:
    if timer_id in st.timers:
        del st.timers[timer_id]
        out.append(CancelTimer(timer_id=timer_id))
