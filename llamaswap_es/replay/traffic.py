"""What a what-if replays, read from a recorded log: arrivals, service, load and stop times.

The log gives the traffic (when each request arrived, for which model, how long the upstream
took to serve it once dispatched, whether its client gave up while waiting), the operators'
inputs (configs, loads, unloads) and the machine's behaviour (how long each model took to load
and to stop). It also gives the recorded figures (loads, swaps, waits), the left column of the
what-if table.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field

from llamaswap_es.config.schedule import SchedulerConfig
from llamaswap_es.events.types import (
    ConfigApplied,
    Dispatch,
    DispatchUnreachable,
    Envelope,
    Event,
    FootprintKnown,
    GpuMemorySampled,
    LoadRequested,
    ProcessReady,
    ProcessStopped,
    Reject,
    RequestAbandoned,
    RequestCancelled,
    RequestFinished,
    RequestReceived,
    SelectionEnded,
    SelectorChose,
    SelectorRequested,
    StartProcess,
    SwapPlanned,
    UnloadRequested,
)
from llamaswap_es.replay.errors import ReplayError
from llamaswap_es.replay.process_times import ProcessTimes

DEFAULT_LOAD_MS = 1_000
"""Load time assumed when the recording never saw any model load."""


@dataclass(frozen=True, slots=True)
class RecordedRequest:
    request_id: str
    model: str
    arrived_ms: int
    service_ms: int | None
    """Recorded dispatch-to-finish time; None if it was never served."""
    gave_up_after_ms: int | None
    """Recorded wait before the client left (cancelled before dispatch), else None."""
    status: int = 200
    ttl_override_ms: int | None = None
    """The request's own idle TTL (`ttl` / `keep_alive`), replayed as recorded."""
    selector: str = ""
    """The selector the client named (the simulation lets the reducer choose again); `model`
    is then the recorded choice's local model, "" when a peer served it (`service_ms` is then
    how long the peer took)."""
    refused: bool = False
    """A selector's choice the handler refused before scheduling it (a 400 on its body, say:
    `SelectionEnded` reason `not_scheduled`): the simulation ends the choice, never serves it."""


@dataclass
class Figures:
    """Per-model outcome of one run, recorded or simulated."""

    label: str
    policy: str
    loads: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    swaps: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    """Swaps to a model that had to stop at least one other model first."""
    waits_ms: dict[str, list[int]] = field(default_factory=lambda: defaultdict(list))
    """Queue wait (dispatch - arrival) of each served request."""
    rejected: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    choices: dict[str, str] = field(default_factory=dict)
    """Each selector request's chosen target, by request id (`SelectorChose`)."""
    _waits_at: dict[str, tuple[str, int]] = field(default_factory=dict)
    """Where each request's wait is in `waits_ms`: a request taken back from an unreachable
    instance (`DispatchUnreachable`) is dispatched again, and its wait runs to the last one."""

    def count_decision(
        self, decision: object, ts_ms: int, arrivals: dict[str, tuple[int, str]]
    ) -> None:
        """Account one decision of this run (shared by the log reader and the simulator)."""
        if isinstance(decision, StartProcess):
            self.loads[decision.model] += 1
        elif isinstance(decision, SwapPlanned):
            if decision.evict:
                self.swaps[decision.model] += 1
        elif isinstance(decision, Dispatch):
            arrived = arrivals.get(decision.request_id)
            if arrived is not None:
                waits = self.waits_ms[decision.model]
                earlier = self._waits_at.get(decision.request_id)
                if earlier is not None and earlier[0] == decision.model:
                    waits[earlier[1]] = ts_ms - arrived[0]
                else:
                    self._waits_at[decision.request_id] = (decision.model, len(waits))
                    waits.append(ts_ms - arrived[0])
        elif isinstance(decision, Reject):
            arrived = arrivals.get(decision.request_id)
            self.rejected[arrived[1] if arrived and arrived[1] else "?"] += 1
        elif isinstance(decision, SelectorChose):
            self.choices[decision.request_id] = decision.target


@dataclass(frozen=True, slots=True)
class Traffic:
    """The recorded inputs a simulation replays, in time order, and the recorded figures."""

    configs: tuple[tuple[int, ConfigApplied], ...]
    requests: tuple[RecordedRequest, ...]
    operations: tuple[tuple[int, Event], ...]
    """Loads and unloads asked by operators or hooks, at their recorded times; footprint facts,
    and the first GPU memory sample (placement by memory needs them)."""
    load_ms: dict[str, int]
    stop_ms: dict[str, int]
    service_ms: dict[str, int]
    """Median recorded service time per model, for requests the recording never served."""
    recorded: Figures
    taken_back: int = 0
    """Requests the recording took back from an unreachable instance (`DispatchUnreachable`):
    a fault of the recorded machine, which the simulation does not repeat."""

    @property
    def schedule(self) -> SchedulerConfig:
        """The first configuration in force (the recorded policy)."""
        return SchedulerConfig.from_dict(self.configs[0][1].schedule)

    def default_load_ms(self) -> int:
        return int(statistics.median(self.load_ms.values())) if self.load_ms else DEFAULT_LOAD_MS


def extract_traffic(envelopes: Iterable[Envelope]) -> Traffic:
    """Read arrivals, service times, load/stop durations and recorded figures from a log."""
    configs: list[tuple[int, ConfigApplied]] = []
    operations: list[tuple[int, Event]] = []
    received: dict[str, tuple[int, str]] = {}
    dispatched_at: dict[str, int] = {}
    served: dict[str, tuple[int, int]] = {}
    gave_up: dict[str, int] = {}
    overrides: dict[str, int] = {}
    selector_of: dict[str, str] = {}
    selection_ended: dict[str, int] = {}
    refused: set[str] = set()
    process_times = ProcessTimes()
    loads: dict[str, list[int]] = defaultdict(list)
    stops: dict[str, list[int]] = defaultdict(list)
    recorded: Figures | None = None
    taken_back = 0
    for env in envelopes:
        body, ts = env.body, env.ts_ms
        if isinstance(body, ConfigApplied):
            configs.append((ts, body))
            if recorded is None:
                policy = str(body.schedule.get("policy", "fifo"))
                recorded = Figures(f"recorded ({policy})", policy)
        elif isinstance(body, SelectorRequested):
            selector_of[body.request_id] = body.selector
            received.setdefault(body.request_id, (ts, ""))
        elif isinstance(body, SelectionEnded):
            selection_ended.setdefault(body.request_id, ts)
            if body.reason == "not_scheduled":
                refused.add(body.request_id)
        elif isinstance(body, RequestReceived):
            arrived, model = received.setdefault(body.request_id, (ts, body.model))
            if not model:  # a selector chose it: it arrived when the selector was named
                received[body.request_id] = (arrived, body.model)
            if body.ttl_override_ms is not None:
                overrides.setdefault(body.request_id, body.ttl_override_ms)
        elif isinstance(body, LoadRequested | UnloadRequested | FootprintKnown):
            operations.append((ts, body))
        elif isinstance(body, GpuMemorySampled):
            # Only the first sample: the devices and what other programs held at start-up.
            # Later samples measured the recorded run, not the simulated one; the simulation
            # counts its own models by their footprints (core.memory).
            if not any(isinstance(op, GpuMemorySampled) for _, op in operations):
                operations.append((ts, body))
        elif isinstance(body, Dispatch):
            dispatched_at[body.request_id] = ts  # the last one: a request taken back goes again
        elif isinstance(body, DispatchUnreachable):
            taken_back += 1
        elif isinstance(body, RequestFinished | RequestAbandoned):
            began = dispatched_at.get(body.request_id)
            if began is not None:
                served[body.request_id] = (ts - began, getattr(body, "status", 200))
            elif isinstance(body, RequestFinished):
                gave_up.setdefault(body.request_id, ts)
        elif isinstance(body, RequestCancelled):
            if body.request_id not in dispatched_at:
                gave_up.setdefault(body.request_id, ts)
        elif (took := process_times.elapsed(body, ts)) is not None:
            if isinstance(body, ProcessReady):
                loads[body.model].append(took)
            elif isinstance(body, ProcessStopped):
                stops[body.model].append(took)
        if recorded is not None and body.IS_DECISION:
            recorded.count_decision(body, ts, received)
    if recorded is None:
        raise ReplayError(
            "the log holds no ConfigApplied event: there is nothing to simulate against"
        )
    requests = []
    service_by_model: dict[str, list[int]] = defaultdict(list)
    for rid, (arrived, model) in received.items():
        service, status = served.get(rid, (None, 200))
        if rid in refused:
            service = None  # refused by the handler after the choice: never served
        elif not model and rid in selection_ended:  # a peer served it: how long it held the target
            service = selection_ended[rid] - arrived
        elif service is not None:
            service_by_model[model].append(service)
        left = gave_up[rid] - arrived if rid in gave_up else None
        override = overrides.get(rid)
        selector = selector_of.get(rid, "")
        requests.append(
            RecordedRequest(
                rid, model, arrived, service, left, status, override, selector, rid in refused
            )
        )
    requests.sort(key=lambda r: (r.arrived_ms, r.request_id))
    return Traffic(
        configs=tuple(configs),
        requests=tuple(requests),
        operations=tuple(operations),
        load_ms=_medians(loads),
        stop_ms=_medians(stops),
        service_ms=_medians(service_by_model),
        recorded=recorded,
        taken_back=taken_back,
    )


def _medians(values: dict[str, list[int]]) -> dict[str, int]:
    return {m: int(statistics.median(v)) for m, v in sorted(values.items()) if v}
