"""Inputs that act on many things at once: config (re)loads, unloads, shutdown, a new boot.

None of them blocks the reducer (ARCHITECTURE §9.11): an unload fails the targets' waiters and
issues stops; what was waiting on those stops moves on when their `ProcessStopped` arrive.
A reload is a diff (§9.6): only models removed or whose fingerprint changed are stopped.
"""

from __future__ import annotations

from llamaswap_es.config.schedule import SchedulerConfig
from llamaswap_es.core.effects import (
    arm_queue_timeout,
    arm_ttl,
    cancel_queue_timeout,
    cancel_timer,
    fail,
    forget_if_retired,
    stop_process,
    ttl_timer_id,
)
from llamaswap_es.core.eviction import build_planner
from llamaswap_es.core.policy_registry import policy_named
from llamaswap_es.core.start_backoff import forget_failures
from llamaswap_es.core.state import (
    EVICTING,
    QUEUED,
    READY,
    RUNNING_STATES,
    STOPPED,
    STOPPING,
    ModelProc,
    Out,
    SchedulerState,
)
from llamaswap_es.events.types import ConfigApplied, ShutdownRequested, UnloadRequested

DEFAULT_SHUTDOWN_GRACE_MS = 30_000


def install_config(st: SchedulerState, config: SchedulerConfig) -> None:
    """Set the config and everything derived from it (planner, policy, caches).

    Raises ValueError when the config cannot be used (an unknown policy, a bad matrix).
    """
    planner = build_planner(config.planner, config.models)
    policy = policy_named(config.policy)
    st.install(config, policy, planner)


def apply_config(st: SchedulerState, event: ConfigApplied, out: Out) -> None:
    """Install a new config; after the first one, stop only what was removed or changed."""
    try:
        config = SchedulerConfig.from_dict(event.schedule)
        old, old_router = st.config, st.router_name
        install_config(st, config)
    except (KeyError, TypeError, ValueError) as exc:
        # The loader validates before it emits; keep serving with the old config, and say why
        # in the state (views show it) rather than kill the run loop.
        st.config_error = f"config {event.config_hash or '?'} not applied: {exc}"
        return
    st.config_error = ""
    st.config_hash = event.config_hash
    if old is None:
        for model_id in sorted(config.models):
            _add_model(st, config, model_id)
        return
    restart: set[str] = set()
    for model_id in sorted(st.models):
        proc = st.models[model_id]
        schedule = config.models.get(model_id)
        if schedule is None:
            if not proc.retired:
                proc.retired = True
                restart.add(model_id)
        elif proc.retired or schedule.fingerprint != proc.schedule.fingerprint:
            proc.retired = False
            proc.schedule = schedule
            forget_failures(proc)  # a changed command deserves a fresh start at once
            if model_id in st.footprints:  # measured on the old command: no longer its need
                st.footprints[model_id].pop("measured", None)
            restart.add(model_id)
        else:
            ttl_changed = schedule.ttl_ms != proc.schedule.ttl_ms
            proc.schedule = schedule
            if ttl_changed and proc.state == READY:
                cancel_timer(st, ttl_timer_id(model_id, proc.instance), out)
                arm_ttl(st, proc, out)
    for model_id in sorted(config.models):
        if model_id not in st.models:
            _add_model(st, config, model_id)
    removed = {m for m in restart if st.models[m].retired}
    message = f"unspecific error: {old_router} is shutting down"
    fail_waiters(st, removed, "config_reloaded", message, out, drop_swaps=True)
    _requeue_waiters(st, restart - removed, out)
    if old.queue_timeout_ms != config.queue_timeout_ms:
        _retime_queue(st, out)
    if old.policy != config.policy or old.planner != config.planner:
        _replan(st, out)
    for model_id in sorted(restart):
        restarted = st.models.get(model_id)
        if restarted is None:  # retired and already forgotten (nothing referred to it)
            continue
        stop_process(st, restarted, "reload", restarted.schedule.unload_timeout_ms, out)
        forget_if_retired(st, proc)
    st.policy.wake(st, out)


def _replan(st: SchedulerState, out: Out) -> None:
    """The rules of coexistence changed: a swap that has not started its target yet was planned
    under the old ones, so it is dropped and its waiters go back to the queue, to be planned
    again (the stops it already issued complete on their own). The queue is put in the new
    policy's order. Swaps whose target is already starting were checked when it started.
    A waiter back in the queue is under the queue timeout again, counted from its arrival."""
    for swap in st.swaps_in_order():
        if swap.phase != EVICTING:
            continue
        del st.swaps[swap.model]
        for rid in swap.waiters:
            req = st.requests[rid]
            req.phase = QUEUED
            st.queue.append(rid)
            arm_queue_timeout(st, req, out)
    st.touch_processes()
    requests = st.requests
    order = st.policy.queue_key
    st.queue.sort(key=lambda rid: order(requests[rid]))


def _requeue_waiters(st: SchedulerState, models: set[str], out: Out) -> None:
    """A reload changed these models (ours; llama-swap fails their waiters): a swap to one of
    them is dropped, since its instance runs the old settings and is being stopped, and its
    waiters go back to the queue, to be served by the new instance that the next swap starts.
    Queued requests for them simply stay queued."""
    if not models:
        return
    moved = False
    for swap in st.swaps_in_order():
        if swap.model not in models:
            continue
        del st.swaps[swap.model]
        for rid in swap.waiters:
            req = st.requests.get(rid)
            if req is None:
                continue
            req.phase = QUEUED
            st.queue.append(rid)
            arm_queue_timeout(st, req, out)
            moved = True
    if moved:
        st.touch_processes()
        requests = st.requests
        order = st.policy.queue_key
        st.queue.sort(key=lambda rid: order(requests[rid]))


def _retime_queue(st: SchedulerState, out: Out) -> None:
    """`queueTimeoutSeconds` changed: every queued request gets the new deadline (counted from
    its arrival), or none when the timeout is now off."""
    for rid in st.queue:
        req = st.requests[rid]
        cancel_queue_timeout(st, req, out)
        arm_queue_timeout(st, req, out)


def _add_model(st: SchedulerState, config: SchedulerConfig, model_id: str) -> None:
    st.models[model_id] = ModelProc(config.models[model_id])
    st.touch_processes()


def fail_waiters(
    st: SchedulerState,
    models: set[str] | None,
    code: str,
    message: str,
    out: Out,
    *,
    drop_swaps: bool,
) -> None:
    """Fail (500) every waiter of the swaps for `models` (all when None), in swap order then
    join order, then the queued requests for them in queue order."""
    for swap in st.swaps_in_order():
        if models is not None and swap.model not in models:
            continue
        waiters, swap.waiters = swap.waiters, []
        if drop_swaps:
            del st.swaps[swap.model]
            st.touch_processes()
        for rid in waiters:
            req = st.requests.get(rid)
            if req is not None:
                fail(st, req, 500, code, message, out)
    if not st.queue:
        return
    keep: list[str] = []
    for rid in st.queue:
        req = st.requests[rid]
        if models is None or req.model in models:
            fail(st, req, 500, code, message, out)
        else:
            keep.append(rid)
    if len(keep) != len(st.queue):
        st.queue = keep


def unload(st: SchedulerState, event: UnloadRequested, out: Out) -> None:
    """Fail the targets' waiters, stop the targets; never wait here.

    llama-swap splits an unload into rounds by unloadTimeout so quick stops do not wait behind
    slow ones; here every stop is issued at once and completes on its own, so rounds are moot.
    """
    if st.config is None:
        return
    wanted = event.models or tuple(st.models)
    targets = sorted({m for m in wanted if m in st.models})
    if not targets:
        return
    message = f"unspecific error: {st.router_name}: model unloaded"
    fail_waiters(st, set(targets), "model_unloaded", message, out, drop_swaps=True)
    pending = False
    for model_id in targets:
        proc = st.models[model_id]
        forget_failures(proc)  # an operator's unload: the next request tries it at once
        grace = proc.schedule.unload_timeout_ms if event.grace_ms is None else event.grace_ms
        stop_process(st, proc, "unload", grace, out)
        if proc.state == STOPPING:
            proc.stop_reason = "unload"  # a TTL stop under way now ends as an unload: no idle
            pending = True
    if not pending:  # nothing to wait for: what the unload unblocked may move now
        st.policy.wake(st, out)


def shutdown(st: SchedulerState, event: ShutdownRequested, out: Out) -> None:
    """Reject every waiter, stop every process with the shutdown grace, refuse new requests."""
    if st.shutting_down:
        return
    st.shutting_down = True
    message = f"unspecific error: {st.router_name} is shutting down"
    fail_waiters(st, None, "shutting_down", message, out, drop_swaps=True)
    grace = event.grace_ms
    if grace is None or grace <= 0:
        grace = st.config.shutdown_grace_ms if st.config is not None else DEFAULT_SHUTDOWN_GRACE_MS
    for model_id in sorted(st.models):
        stop_process(st, st.models[model_id], "shutdown", grace, out)
    for timer_id in sorted(st.timers):
        cancel_timer(st, timer_id, out)


def new_boot(st: SchedulerState) -> None:
    """A server (re)started on this log: nothing of the previous run survives in memory.

    Its requests are gone with their clients, its swaps and timers with its tasks, and its
    processes are no longer ours until recovery adopts them (`ProcessAdopted`). Instance
    counters are kept, so new instances never reuse an old number.
    """
    st.requests.clear()
    st.queue.clear()
    st.swaps.clear()
    st.timers.clear()
    st.in_flight_total = 0
    st.shutting_down = False
    for model_id in sorted(st.models):
        proc = st.models[model_id]
        proc.in_flight = 0
        proc.reserved = 0
        forget_failures(proc)  # a restart is a fresh try (often after fixing what failed)
        proc.suspect_instance = 0  # its timer went with the boot: an adopted instance is trusted
        if proc.state in RUNNING_STATES:
            proc.state = STOPPED  # its devices are kept: recovery may adopt it on them
        else:
            proc.devices = ()  # down before this boot: nothing to adopt on its devices
        if proc.retired:
            del st.models[model_id]
    st.touch_processes()
