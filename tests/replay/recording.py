"""Real logs for the replay tests, recorded the way the run loop records them.

`record` runs the real reducer against a simulated executor (loads, stops and requests take the
given times; timers fire at their time, a re-armed timer replaces the old one) and writes every
input followed by its decisions (`cause` = the input's seq) with the store's own writer, in
batches, after a `ServerStarted`: the same rows a server writes, without processes or sleeps.
"""

from __future__ import annotations

import heapq
import itertools
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from llamaswap_es import core
from llamaswap_es.config.schedule import GroupPlanner, GroupRule, ModelSchedule, SchedulerConfig
from llamaswap_es.events.rows import encode_envelopes
from llamaswap_es.events.types import (
    CancelTimer,
    ConfigApplied,
    Dispatch,
    Envelope,
    Event,
    ProcessReady,
    ProcessStopped,
    RequestCancelled,
    RequestFinished,
    RequestReceived,
    ServerStarted,
    SetTimer,
    StartProcess,
    StopProcess,
    TimerFired,
)
from llamaswap_es.events.writer import LogWriter

BASE_TS = 1_700_000_000_000
BOOT = "recorded-boot"


def group_config(
    models: tuple[str, ...], *, policy: str = "fifo", ttl_ms: int = 0, **settings: int
) -> SchedulerConfig:
    """Every model in one exclusive swap group (only one runs at a time)."""
    schedules = {
        m: ModelSchedule(model_id=m, concurrency_limit=8, ttl_ms=ttl_ms, unload_timeout_ms=2_000)
        for m in models
    }
    planner = GroupPlanner(groups=(GroupRule(name="g", members=models),))
    return SchedulerConfig(models=schedules, planner=planner, policy=policy, **settings)  # type: ignore[arg-type]


@dataclass(frozen=True, slots=True)
class Arrival:
    at_ms: int
    """Offset from the start of the recording."""
    request_id: str
    model: str
    service_ms: int = 100
    cancel_after_ms: int | None = None


def record(
    db_path: Path,
    config: SchedulerConfig,
    arrivals: list[Arrival],
    *,
    load_ms: dict[str, int] | int = 300,
    stop_ms: int = 40,
    snapshot_every: int = 0,
    batch: int = 500,
    extra: Sequence[tuple[int, Event]] = (),
) -> int:
    """Record the arrivals into `db_path`; returns the last seq written.

    `extra` are more inputs at their offsets (ms from the start), e.g. peer request records."""
    heap: list[tuple[int, int, Event]] = []
    order = itertools.count()
    armed: dict[str, int] = {}
    services = {a.request_id: a.service_ms for a in arrivals}

    def at(ts: int, event: Event) -> None:
        heapq.heappush(heap, (ts, next(order), event))

    at(BASE_TS, ServerStarted(boot_id=BOOT, pid=1, version="0.1.0"))
    at(BASE_TS, ConfigApplied(config_hash="recorded", schedule=config.to_dict()))
    for a in arrivals:
        at(BASE_TS + a.at_ms, RequestReceived(request_id=a.request_id, model=a.model))
        if a.cancel_after_ms is not None:
            at(BASE_TS + a.at_ms + a.cancel_after_ms, RequestCancelled(request_id=a.request_id))

    for offset, event in extra:
        at(BASE_TS + offset, event)

    writer = LogWriter.open(db_path)
    state = core.new_state()
    seq = writer.next_seq - 1
    pending: list[Envelope] = []
    inputs = 0

    def flush() -> None:
        if pending:
            first = writer.append(encode_envelopes(pending, BOOT))
            assert first == pending[0].seq
            pending.clear()

    try:
        while heap:
            ts, _, event = heapq.heappop(heap)
            if isinstance(event, TimerFired):
                if armed.get(event.timer_id) != ts:
                    continue
                del armed[event.timer_id]
            seq += 1
            source = Envelope(body=event, ts_ms=ts, boot=BOOT, seq=seq)
            state, decisions = core.reduce(state, source)
            pending.append(source)
            for d in decisions:
                seq += 1
                pending.append(Envelope(body=d, ts_ms=ts, boot=BOOT, seq=seq, cause=source.seq))
                _act(d, ts, at, armed, services, load_ms, stop_ms)
            inputs += 1
            if len(pending) >= batch:
                flush()
            if snapshot_every and inputs % snapshot_every == 0:
                flush()
                writer.save_snapshot(
                    reducer_version=core.REDUCER_VERSION,
                    seq=seq,
                    digest=core.digest(state),
                    state=core.snapshot(state),
                )
        flush()
    finally:
        writer.close()
    return seq


def _act(d, ts, at, armed, services, load_ms, stop_ms) -> None:  # type: ignore[no-untyped-def]
    """The simulated executor: answer each command after its recorded time."""
    if isinstance(d, StartProcess):
        load = load_ms if isinstance(load_ms, int) else load_ms[d.model]
        at(ts + load, ProcessReady(model=d.model, instance=d.instance))
    elif isinstance(d, StopProcess):
        at(ts + stop_ms, ProcessStopped(model=d.model, instance=d.instance))
    elif isinstance(d, Dispatch):
        service = services.get(d.request_id, 100)
        at(ts + service, RequestFinished(request_id=d.request_id, model=d.model, status=200))
    elif isinstance(d, SetTimer):
        armed[d.timer_id] = d.at_ms
        at(d.at_ms, TimerFired(timer_id=d.timer_id))
    elif isinstance(d, CancelTimer):
        armed.pop(d.timer_id, None)


def random_arrivals(count: int, models: tuple[str, ...], seed: int = 11) -> list[Arrival]:
    """A seeded mixed workload: bursts and pauses, a few clients that give up."""
    rng = random.Random(seed)
    out = []
    now = 0
    for i in range(count):
        now += rng.choice((0, 5, 20, 80, 400, 2_000))
        cancel = rng.choice((None,) * 12 + (50, 700))
        out.append(Arrival(now, f"r{i}", rng.choice(models), rng.randint(10, 600), cancel))
    return out
