"""What-if: re-run recorded traffic through the reducer under another policy or config.

A discrete-event simulation feeds the recorded arrivals (and the recorded configs, loads and
unloads, with the overrides applied) to the pure reducer, with a simulated executor that answers
`StartProcess` after the model's recorded load time, `StopProcess` after its recorded stop time,
`Dispatch` after the request's recorded service time, and `SetTimer` at its time (a timer set
again replaces the old one, as the real timers do). Nothing runs for real and no clock is read,
so a what-if is as deterministic as the reducer. What the simulation assumes (every start
succeeds; a request keeps its recorded service time whenever it is dispatched; a client that
gave up after W ms gives up after W ms again) is listed in its output.
"""

from __future__ import annotations

import dataclasses
import heapq
import itertools
from collections.abc import Callable
from typing import Any

from llamaswap_es.config.schedule import PLACEMENT_MEMORY, PLACEMENT_OFF, SchedulerConfig
from llamaswap_es.core import new_state, reduce
from llamaswap_es.core.policy_registry import policy_named
from llamaswap_es.events.types import (
    CancelTimer,
    Dispatch,
    Envelope,
    Event,
    GpuMemorySampled,
    ProcessReady,
    ProcessStopped,
    RequestCancelled,
    RequestFinished,
    RequestReceived,
    SelectionEnded,
    SelectorChose,
    SelectorRequested,
    SetTimer,
    StartProcess,
    StopProcess,
    TimerFired,
)
from llamaswap_es.replay.errors import ReplayError
from llamaswap_es.replay.traffic import Figures, RecordedRequest, Traffic

_GLOBAL_INTS = ("starvation_bound_ms", "min_resident_ms", "shutdown_grace_ms", "queue_timeout_ms")


def parse_settings(pairs: list[str]) -> dict[str, str]:
    """`["policy=serial", "a.ttl_ms=0"]` → a dict; `ReplayError` names a pair without `=`."""
    settings: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ReplayError(
                f"--set {pair!r}: expected key=value, e.g. --set min_resident_ms=5000"
            )
        settings[key.strip()] = value.strip()
    return settings


def apply_overrides(schedule: SchedulerConfig, settings: dict[str, str]) -> SchedulerConfig:
    """`--set` overrides: `policy`, the global bounds, or `MODEL.field` of one model."""
    changes: dict[str, Any] = {}
    models = dict(schedule.models)
    for key, raw in settings.items():
        if key in ("policy", "scheduler"):
            try:
                policy_named(raw)
            except ValueError as exc:
                raise ReplayError(f"--set {key}={raw}: {exc}") from None
            changes["policy"] = raw
        elif key in _GLOBAL_INTS:
            changes[key] = _int_setting(key, raw)
        elif key in ("placement", "placement.mode"):
            if raw not in (PLACEMENT_OFF, PLACEMENT_MEMORY):
                raise ReplayError(f"--set {key}={raw}: expected off or memory")
            placement = changes.get("placement", schedule.placement)
            changes["placement"] = dataclasses.replace(placement, mode=raw)
        elif key in ("placement.margin_mb", "placement.marginMb"):
            placement = changes.get("placement", schedule.placement)
            changes["placement"] = dataclasses.replace(
                placement, margin_mb=_int_setting(key, raw)
            )
        elif "." in key:
            model_id, _, field_name = key.rpartition(".")
            if model_id not in models:
                known = ", ".join(sorted(models)) or "none"
                raise ReplayError(
                    f"--set {key}={raw}: no model {model_id!r} in the recorded config "
                    f"(models: {known})"
                )
            valid = sorted({f.name for f in dataclasses.fields(models[model_id])} - {"model_id"})
            if field_name not in valid:
                raise ReplayError(f"--set {key}={raw}: {field_name!r} is not one of {valid}")
            value: Any = raw if field_name == "fingerprint" else _int_setting(key, raw)
            models[model_id] = dataclasses.replace(models[model_id], **{field_name: value})
        else:
            raise ReplayError(
                f"--set {key}={raw}: unknown setting (use policy, "
                f"{', '.join(_GLOBAL_INTS)}, placement, placement.margin_mb or "
                "MODEL.concurrency_limit / ttl_ms / priority / unload_timeout_ms / footprint_mb "
                "/ footprint_devices / placement_priority)"
            )
    return dataclasses.replace(schedule, models=models, **changes)


def _int_setting(key: str, raw: str) -> int:
    try:
        value = int(raw)
    except ValueError:
        raise ReplayError(f"--set {key}={raw}: expected an integer number") from None
    if value < 0:
        raise ReplayError(f"--set {key}={raw}: must not be negative")
    return value


def simulate(
    traffic: Traffic,
    settings: dict[str, str],
    *,
    label: str = "what-if",
    max_steps: int = 20_000_000,
    config: SchedulerConfig | None = None,
) -> Figures:
    """Run the recorded traffic through the reducer with `settings` applied to every config;
    with `config`, that scheduler configuration (from a config file: `--config`) replaces every
    recorded one, so a day recorded under groups can be replayed under placement by memory."""
    heap: list[tuple[int, int, Event]] = []
    order = itertools.count()
    requests = {r.request_id: r for r in traffic.requests}
    arrivals: dict[str, tuple[int, str]] = {}
    armed: dict[str, int] = {}
    default_load = traffic.default_load_ms()

    def at(ts: int, event: Event) -> None:
        heapq.heappush(heap, (ts, next(order), event))

    settings = dict(settings)
    gpus = _gpus_setting(settings.pop("gpus", None))
    policy = ""
    placing = False
    for ts, applied in traffic.configs:
        base = SchedulerConfig.from_dict(applied.schedule) if config is None else config
        schedule = apply_overrides(base, settings)
        policy = policy or schedule.policy
        placing = placing or schedule.placement.mode == PLACEMENT_MEMORY
        at(ts, dataclasses.replace(applied, schedule=schedule.to_dict()))
    sampled = any(isinstance(op, GpuMemorySampled) for _, op in traffic.operations)
    if gpus is not None and traffic.configs:
        first = traffic.configs[0][0]
        at(first, GpuMemorySampled(uuids=(), names=(), total_mb=gpus, free_mb=gpus))
    elif placing and not sampled:
        raise ReplayError(
            "placement by memory has nothing to place by: the recording holds no GPU memory "
            "sample (it ran with placement off); give the GPUs with --set gpus=MIB[,MIB…] "
            "(each GPU's total memory, all free at the start)"
        )
    for ts, operation in traffic.operations:
        if gpus is not None and isinstance(operation, GpuMemorySampled):
            continue  # the GPUs given replace the recorded ones
        at(ts, operation)
    for req in traffic.requests:
        if req.selector:  # the reducer chooses again, under the simulated state
            at(req.arrived_ms, SelectorRequested(request_id=req.request_id, selector=req.selector))
        else:
            received = RequestReceived(
                request_id=req.request_id, model=req.model, ttl_override_ms=req.ttl_override_ms
            )
            at(req.arrived_ms, received)
        if req.gave_up_after_ms is not None:
            at(req.arrived_ms + req.gave_up_after_ms, RequestCancelled(request_id=req.request_id))

    figures = Figures(f"{label} ({policy})", policy)
    state = new_state()
    seq = 0
    while heap:
        ts, _, event = heapq.heappop(heap)
        if isinstance(event, TimerFired):
            if armed.get(event.timer_id) != ts:
                continue  # replaced or cancelled since
            del armed[event.timer_id]
        seq += 1
        if seq > max_steps:
            raise ReplayError(f"the simulation did not settle within {max_steps} steps")
        if isinstance(event, RequestReceived):
            arrivals[event.request_id] = (ts, event.model)
        state, decisions = reduce(state, Envelope(body=event, ts_ms=ts, boot="whatif", seq=seq))
        for decision in decisions:
            figures.count_decision(decision, ts, arrivals)
            if isinstance(decision, StartProcess):
                load = traffic.load_ms.get(decision.model, default_load)
                at(ts + load, ProcessReady(model=decision.model, instance=decision.instance))
            elif isinstance(decision, StopProcess):
                stop = traffic.stop_ms.get(decision.model, 0)
                at(ts + stop, ProcessStopped(model=decision.model, instance=decision.instance))
            elif isinstance(decision, Dispatch):
                recorded = requests.get(decision.request_id)
                service = recorded.service_ms if recorded else None
                if service is None:
                    service = traffic.service_ms.get(decision.model, 0)
                status = recorded.status if recorded else 200
                at(
                    ts + service,
                    RequestFinished(
                        request_id=decision.request_id,
                        model=decision.model,
                        status=status,
                        duration_ms=service,
                    ),
                )
            elif isinstance(decision, SelectorChose):
                _follow_choice(decision, ts, requests.get(decision.request_id), traffic, at)
            elif isinstance(decision, SetTimer):
                armed[decision.timer_id] = decision.at_ms
                at(decision.at_ms, TimerFired(timer_id=decision.timer_id))
            elif isinstance(decision, CancelTimer):
                armed.pop(decision.timer_id, None)
    return figures


def _follow_choice(
    chose: SelectorChose,
    ts: int,
    recorded: RecordedRequest | None,
    traffic: Traffic,
    at: Callable[[int, Event], None],
) -> None:
    """What the handler does with a choice: a local model's request goes to the scheduler at
    once; a peer's model holds its reservation for as long as the recorded request took; one
    the handler refused in the recording (before scheduling it) is ended at once, unserved."""
    rid = chose.request_id
    if recorded is not None and recorded.refused:  # the handler refused it after its choice
        at(ts, SelectionEnded(request_id=rid, reason="not_scheduled"))
        return
    if chose.model:
        ttl = recorded.ttl_override_ms if recorded else None
        at(ts, RequestReceived(request_id=rid, model=chose.model, ttl_override_ms=ttl))
        return
    held = recorded.service_ms if recorded and recorded.service_ms is not None else None
    if held is None:
        held = traffic.service_ms.get(recorded.model, 0) if recorded else 0
    at(ts + held, SelectionEnded(request_id=rid))


def _gpus_setting(raw: str | None) -> tuple[int, ...] | None:
    """`--set gpus=24000,24000`: the simulated GPUs' total memory in MiB (all free at first)."""
    if raw is None:
        return None
    try:
        sizes = tuple(int(part) for part in raw.split(","))
    except ValueError:
        sizes = ()
    if not sizes or any(size <= 0 for size in sizes):
        raise ReplayError(f"--set gpus={raw}: give each GPU's memory in MiB, e.g. 24000,24000")
    return sizes


def assumptions(traffic: Traffic) -> list[str]:
    """What the simulation takes from the recording, and what it had to assume."""
    out = []
    for model, ms in sorted(traffic.load_ms.items()):
        stop = traffic.stop_ms.get(model)
        stops = f"stops in {stop} ms" if stop is not None else "never stopped (assumed instant)"
        out.append(f"{model}: loads in {ms} ms, {stops} (recorded medians)")
    models = sorted({r.model for r in traffic.requests if r.model} - set(traffic.load_ms))
    if models:
        out.append(
            f"{', '.join(models)}: never loaded in the recording; assumed to load in "
            f"{traffic.default_load_ms()} ms"
        )
    unserved = sum(
        1 for r in traffic.requests if r.service_ms is None and r.gave_up_after_ms is None
    )
    if unserved:
        out.append(
            f"{unserved} request(s) were never served in the recording; if served here they take "
            "their model's median service time"
        )
    if traffic.taken_back:
        out.append(
            f"{traffic.taken_back} request(s) met an unreachable instance in the recording and "
            "were taken back into the queue; here every dispatch reaches its instance"
        )
    samples = [op for _, op in traffic.operations if isinstance(op, GpuMemorySampled)]
    if samples:
        out.append(
            f"GPU memory: the first recorded sample ({len(samples[0].total_mb)} devices, what "
            "other programs held then); after it, models count by their footprints only"
        )
    out.append("every start succeeds; the recording is simulated as one continuous server run")
    return out
