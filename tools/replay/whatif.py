"""What-if: re-run recorded traffic through the reducer under another policy or config.

The recorded log gives the traffic (when each request arrived, for which model, how long the
upstream took to serve it, whether and when its client gave up) and the machine's behaviour (how
long each model took to load and to stop). A discrete-event simulation then feeds the same arrivals
to the pure reducer with a simulated executor that answers `StartProcess` after the model's
recorded load time, `StopProcess` after its recorded stop time and `Dispatch` after the request's
recorded service time. Nothing runs for real and no clock is read, so a what-if is as deterministic
as the reducer itself.
"""

from __future__ import annotations

import dataclasses
import heapq
import itertools
import statistics
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from llamaswap_es.config.schedule import SchedulerConfig
from llamaswap_es.events.types import (
    CancelTimer,
    ConfigApplied,
    Decision,
    Dispatch,
    Envelope,
    Event,
    ProcessReady,
    ProcessSpawned,
    ProcessStopped,
    Reject,
    RequestCancelled,
    RequestFinished,
    RequestReceived,
    SetTimer,
    StartProcess,
    StopProcess,
    TimerFired,
)

DEFAULT_LOAD_MS = 1_000
"""Load time assumed for a model the recording never saw load."""


@dataclass(frozen=True, slots=True)
class RecordedRequest:
    request_id: str
    model: str
    arrived_ms: int
    service_ms: int | None
    """Recorded dispatch-to-finish time; None if it was never dispatched."""
    gave_up_after_ms: int | None
    """Recorded wait before the client left (cancelled before dispatch), else None."""
    status: int = 200


@dataclass(frozen=True, slots=True)
class Traffic:
    """What the simulation replays, extracted from a recorded log."""

    schedule: SchedulerConfig
    requests: tuple[RecordedRequest, ...]
    load_ms: dict[str, int]
    stop_ms: dict[str, int]


def extract_traffic(envelopes: Iterable[Envelope]) -> Traffic:
    """Read arrivals, service times and load/stop durations from a recorded log."""
    schedule: SchedulerConfig | None = None
    received: dict[str, Envelope] = {}
    dispatched_at: dict[str, int] = {}
    finished: dict[str, tuple[int, int]] = {}
    cancelled_at: dict[str, int] = {}
    start_at: dict[tuple[str, int], int] = {}
    stop_at: dict[tuple[str, int], int] = {}
    loads: dict[str, list[int]] = defaultdict(list)
    stops: dict[str, list[int]] = defaultdict(list)
    for env in envelopes:
        body = env.body
        if isinstance(body, ConfigApplied) and schedule is None:
            schedule = SchedulerConfig.from_dict(body.schedule)
        elif isinstance(body, RequestReceived):
            received[body.request_id] = env
        elif isinstance(body, Dispatch):
            dispatched_at[body.request_id] = env.ts_ms
        elif isinstance(body, RequestFinished):
            finished[body.request_id] = (env.ts_ms, body.status)
        elif isinstance(body, RequestCancelled):
            cancelled_at.setdefault(body.request_id, env.ts_ms)
        elif isinstance(body, StartProcess):
            start_at[(body.model, body.instance)] = env.ts_ms
        elif isinstance(body, ProcessReady):
            began = start_at.pop((body.model, body.instance), None)
            if began is not None:
                loads[body.model].append(env.ts_ms - began)
        elif isinstance(body, StopProcess):
            stop_at[(body.model, body.instance)] = env.ts_ms
        elif isinstance(body, ProcessStopped):
            began = stop_at.pop((body.model, body.instance), None)
            if began is not None:
                stops[body.model].append(env.ts_ms - began)
    if schedule is None:
        raise ValueError("the log holds no ConfigApplied event: nothing to simulate against")
    requests = []
    for request_id, env in received.items():
        body = env.body
        assert isinstance(body, RequestReceived)
        service = None
        status = 200
        if request_id in dispatched_at and request_id in finished:
            service = max(0, finished[request_id][0] - dispatched_at[request_id])
            status = finished[request_id][1]
        gave_up = None
        if request_id not in dispatched_at and request_id in cancelled_at:
            gave_up = cancelled_at[request_id] - env.ts_ms
        requests.append(
            RecordedRequest(request_id, body.model, env.ts_ms, service, gave_up, status)
        )
    requests.sort(key=lambda r: (r.arrived_ms, r.request_id))
    return Traffic(
        schedule=schedule,
        requests=tuple(requests),
        load_ms={m: int(statistics.median(v)) for m, v in sorted(loads.items())},
        stop_ms={m: int(statistics.median(v)) for m, v in sorted(stops.items())},
    )


def apply_overrides(schedule: SchedulerConfig, settings: dict[str, str]) -> SchedulerConfig:
    """`--set key=value` overrides: `policy`, the bounds, or `MODEL.field` of a model."""
    changes: dict[str, Any] = {}
    models = dict(schedule.models)
    for key, raw in settings.items():
        if key == "policy" or key == "scheduler":
            if raw not in ("fifo", "serial"):
                raise ValueError(f"--set {key}={raw}: the policy must be fifo or serial")
            changes["policy"] = raw
        elif key in ("starvation_bound_ms", "min_resident_ms", "shutdown_grace_ms"):
            changes[key] = _int_setting(key, raw)
        elif "." in key:
            model_id, _, field_name = key.rpartition(".")
            if model_id not in models:
                raise ValueError(f"--set {key}={raw}: no model {model_id!r} in the recorded config")
            valid = {f.name for f in dataclasses.fields(models[model_id])} - {"model_id"}
            if field_name not in valid:
                raise ValueError(f"--set {key}={raw}: {field_name!r} is not one of {sorted(valid)}")
            value: Any = raw if field_name == "fingerprint" else _int_setting(key, raw)
            models[model_id] = dataclasses.replace(models[model_id], **{field_name: value})
        else:
            raise ValueError(
                f"--set {key}={raw}: unknown setting (use policy, starvation_bound_ms, "
                "min_resident_ms or MODEL.concurrency_limit / ttl_ms / priority …)"
            )
    return dataclasses.replace(schedule, models=models, **changes)


def _int_setting(key: str, raw: str) -> int:
    try:
        return int(raw)
    except ValueError:
        raise ValueError(f"--set {key}={raw}: expected an integer") from None


@dataclass
class SimulationResult:
    policy: str
    loads: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    evictions: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    waits_ms: dict[str, list[int]] = field(default_factory=lambda: defaultdict(list))
    rejected: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    served_order: list[str] = field(default_factory=list)
    end_ms: int = 0

    @property
    def total_loads(self) -> int:
        return sum(self.loads.values())

    @property
    def total_evictions(self) -> int:
        return sum(self.evictions.values())


Reducer = Callable[[Any, Envelope], tuple[Any, list[Decision]]]


def simulate(
    traffic: Traffic,
    schedule: SchedulerConfig,
    *,
    reduce: Reducer,
    new_state: Callable[[], Any],
    max_steps: int = 5_000_000,
) -> SimulationResult:
    """Run the arrivals through `reduce` with a simulated executor; deterministic."""
    result = SimulationResult(policy=schedule.policy)
    queue: list[tuple[int, int, Event]] = []
    order = itertools.count()
    cancelled_timers: set[str] = set()
    requests = {r.request_id: r for r in traffic.requests}
    arrived: dict[str, int] = {}

    def at(ts: int, event: Event) -> None:
        heapq.heappush(queue, (ts, next(order), event))

    start = traffic.requests[0].arrived_ms if traffic.requests else 0
    at(start, ConfigApplied(config_hash="whatif", schedule=schedule.to_dict(), reason="whatif"))
    for req in traffic.requests:
        at(req.arrived_ms, RequestReceived(request_id=req.request_id, model=req.model))
        if req.gave_up_after_ms is not None:
            at(req.arrived_ms + req.gave_up_after_ms, RequestCancelled(request_id=req.request_id))

    state = new_state()
    seq = 0
    while queue:
        ts, _, event = heapq.heappop(queue)
        if isinstance(event, TimerFired) and event.timer_id in cancelled_timers:
            cancelled_timers.discard(event.timer_id)
            continue
        seq += 1
        if seq > max_steps:
            raise RuntimeError(f"the simulation did not settle within {max_steps} steps")
        if isinstance(event, RequestReceived):
            arrived[event.request_id] = ts
        state, decisions = reduce(state, Envelope(body=event, ts_ms=ts, boot="whatif", seq=seq))
        result.end_ms = ts
        for decision in decisions:
            if isinstance(decision, StartProcess):
                result.loads[decision.model] += 1
                load = traffic.load_ms.get(decision.model, DEFAULT_LOAD_MS)
                at(ts, _spawned(decision))
                at(ts + load, ProcessReady(model=decision.model, instance=decision.instance))
            elif isinstance(decision, StopProcess):
                if decision.reason == "evict":
                    result.evictions[decision.model] += 1
                stop = traffic.stop_ms.get(decision.model, 0)
                at(ts + stop, ProcessStopped(model=decision.model, instance=decision.instance))
            elif isinstance(decision, Dispatch):
                recorded = requests.get(decision.request_id)
                if recorded is None:  # a synthetic request of the reducer (e.g. a load)
                    continue
                result.waits_ms[decision.model].append(ts - arrived[decision.request_id])
                result.served_order.append(decision.model)
                service = recorded.service_ms if recorded.service_ms is not None else 0
                at(
                    ts + service,
                    RequestFinished(
                        request_id=decision.request_id,
                        model=decision.model,
                        status=recorded.status,
                        duration_ms=service,
                    ),
                )
            elif isinstance(decision, Reject):
                recorded = requests.get(decision.request_id)
                result.rejected[recorded.model if recorded else "?"] += 1
            elif isinstance(decision, SetTimer):
                cancelled_timers.discard(decision.timer_id)
                at(decision.at_ms, TimerFired(timer_id=decision.timer_id))
            elif isinstance(decision, CancelTimer):
                cancelled_timers.add(decision.timer_id)
    return result


def _spawned(start: StartProcess) -> ProcessSpawned:
    return ProcessSpawned(
        model=start.model, instance=start.instance, pid=0, pgid=0, started_at_ms=0
    )


def _percentile(values: list[int], pct: float) -> int:
    if not values:
        return 0
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(pct / 100 * (len(ordered) - 1))))
    return ordered[index]


def summarise(result: SimulationResult) -> dict[str, dict[str, int]]:
    """Per model: loads, evictions, served, rejected and queue wait p50/p95/max."""
    models = sorted(set(result.loads) | set(result.waits_ms) | set(result.rejected))
    out: dict[str, dict[str, int]] = {}
    for model in models:
        waits = result.waits_ms.get(model, [])
        out[model] = {
            "loads": result.loads.get(model, 0),
            "evictions": result.evictions.get(model, 0),
            "served": len(waits),
            "rejected": result.rejected.get(model, 0),
            "wait_p50_ms": _percentile(waits, 50),
            "wait_p95_ms": _percentile(waits, 95),
            "wait_max_ms": max(waits) if waits else 0,
        }
    return out


def render_table(results: list[SimulationResult]) -> str:
    """A side-by-side plain-text table, one column group per simulated policy."""
    summaries = [summarise(r) for r in results]
    models = sorted({m for s in summaries for m in s})
    columns = ["loads", "evictions", "served", "wait_p50_ms", "wait_p95_ms", "wait_max_ms"]
    header = ["model"] + [f"{r.policy}:{c}" for r in results for c in columns]
    rows = [header]
    for model in models:
        row = [model]
        for summary in summaries:
            figures = summary.get(model, {})
            row += [str(figures.get(c, 0)) for c in columns]
        rows.append(row)
    total = ["TOTAL"]
    for result, summary in zip(results, summaries, strict=True):
        all_waits = [w for ws in result.waits_ms.values() for w in ws]
        total += [
            str(result.total_loads),
            str(result.total_evictions),
            str(sum(s["served"] for s in summary.values())),
            str(_percentile(all_waits, 50)),
            str(_percentile(all_waits, 95)),
            str(max(all_waits) if all_waits else 0),
        ]
    rows.append(total)
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    return "\n".join(
        "  ".join(cell.rjust(widths[i]) if i else cell.ljust(widths[i]) for i, cell in enumerate(r))
        for r in rows
    )
