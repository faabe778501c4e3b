"""Reducer throughput: steps/s over a generated mixed workload (target >= 150k on 2 cores).

A seeded simulation (clients + an executor that answers every StartProcess/StopProcess and
fires due timers) records a realistic input log once; the timed part replays that log through
`reduce` on a fresh state, which is exactly what recovery and `replay` do. Prints a final JSON
line. Hook for later: `replay_events(envelopes)` takes any iterable of input envelopes, so the
1M-event SQLite replay only has to read the store's input rows and pass them in.

The second part writes a log of ~1M events (inputs and their decisions, `cause` set, as the
run loop writes them) into a temp SQLite file with the store's writer in big batches, then times
what `replay` and recovery do: open_log -> iter_envelopes -> reduce (target <= 10 s on 2 cores),
and the tool's own path that skips decoding decision rows.

    python bench/run.py reducer [--steps N] [--log-events N]
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from collections import deque
from collections.abc import Iterable

from llamaswap_es.config.schedule import GroupPlanner, GroupRule, ModelSchedule, SchedulerConfig
from llamaswap_es.core import digest, new_state, reduce
from llamaswap_es.events.open_log import open_log
from llamaswap_es.events.rows import encode_envelopes
from llamaswap_es.events.types import (
    ConfigApplied,
    Dispatch,
    Envelope,
    Event,
    ProcessReady,
    ProcessStopped,
    RequestCancelled,
    RequestFinished,
    RequestReceived,
    SetTimer,
    StartProcess,
    StopProcess,
    TimerFired,
)
from llamaswap_es.events.writer import LogWriter

MODELS = ("chat", "coder", "embed", "vision")
WEIGHTS = (0.80, 0.12, 0.05, 0.03)


def workload_config() -> SchedulerConfig:
    schedules = {
        "chat": ModelSchedule(model_id="chat", concurrency_limit=32, ttl_ms=300_000),
        "coder": ModelSchedule(model_id="coder", concurrency_limit=16, ttl_ms=60_000),
        "embed": ModelSchedule(model_id="embed", concurrency_limit=32),
        "vision": ModelSchedule(model_id="vision", concurrency_limit=8, priority=5),
    }
    groups = (
        GroupRule(name="llms", members=("chat", "coder", "vision")),
        GroupRule(name="side", members=("embed",), swap=False, exclusive=False, persistent=True),
    )
    return SchedulerConfig(models=schedules, planner=GroupPlanner(groups=groups))


def generate(steps: int, seed: int = 7) -> list[Envelope]:
    """Record `steps` inputs of a mixed workload by running the reducer against a simulation."""
    rng = random.Random(seed)
    state = new_state()
    ts = 1_700_000_000_000
    seq = 0
    log: list[Envelope] = []
    in_flight: list[str] = []
    waiting: deque[str] = deque()
    executor: deque[Event] = deque()
    timers: dict[str, int] = {}
    next_id = 0

    def feed(body: Event) -> None:
        nonlocal seq
        seq += 1
        env = Envelope(body=body, ts_ms=ts, seq=seq)
        log.append(env)
        _, decisions = reduce(state, env)
        for d in decisions:
            if isinstance(d, Dispatch):
                in_flight.append(d.request_id)
            elif isinstance(d, StartProcess):
                executor.append(ProcessReady(model=d.model, instance=d.instance))
            elif isinstance(d, StopProcess):
                executor.append(ProcessStopped(model=d.model, instance=d.instance))
            elif isinstance(d, SetTimer):
                timers[d.timer_id] = d.at_ms

    feed(ConfigApplied(config_hash="bench", schedule=workload_config().to_dict()))
    while len(log) < steps:
        ts += rng.randint(0, 40)
        roll = rng.random()
        if executor and roll < 0.04:
            feed(executor.popleft())
        elif roll < 0.50 and len(in_flight) + len(waiting) < 64:
            next_id += 1
            rid = f"r{next_id}"
            model = rng.choices(MODELS, WEIGHTS)[0]
            waiting.append(rid)
            feed(RequestReceived(request_id=rid, model=model, path="/v1/chat/completions"))
        elif roll < 0.93 and in_flight:
            rid = in_flight.pop(rng.randrange(len(in_flight)))
            req = state.requests[rid]
            feed(RequestFinished(request_id=rid, model=req.model, status=200, duration_ms=40))
        elif roll < 0.94 and waiting:
            rid = waiting.popleft()
            feed(RequestCancelled(request_id=rid))
        else:
            due = [t for t, at in timers.items() if at <= ts]
            if due:
                timer_id = min(due)
                del timers[timer_id]
                feed(TimerFired(timer_id=timer_id))
            elif executor:
                feed(executor.popleft())
        while waiting and (
            waiting[0] not in state.requests or state.requests[waiting[0]].phase == "dispatched"
        ):
            waiting.popleft()
    return log


def replay_events(envelopes: Iterable[Envelope]) -> tuple[int, float, str]:
    """Reduce every input on a fresh state: (steps, seconds, final digest)."""
    state = new_state()
    count = 0
    start = time.perf_counter()
    for env in envelopes:
        state, _ = reduce(state, env)
        count += 1
    elapsed = time.perf_counter() - start
    return count, elapsed, digest(state)


def write_log(path: str, inputs: list[Envelope], events: int, batch: int = 50_000) -> int:
    """Re-reduce `inputs` and write each with its decisions until `events` rows are written."""
    writer = LogWriter.open(path)
    state = new_state()
    seq = 0
    pending: list[Envelope] = []
    try:
        for env in inputs:
            if seq >= events:
                break
            seq += 1
            source = Envelope(body=env.body, ts_ms=env.ts_ms, boot="bench", seq=seq)
            state, decisions = reduce(state, source)
            pending.append(source)
            for d in decisions:
                seq += 1
                pending.append(
                    Envelope(body=d, ts_ms=env.ts_ms, boot="bench", seq=seq, cause=source.seq)
                )
            if len(pending) >= batch:
                writer.append(encode_envelopes(pending, "bench"))
                pending.clear()
        if pending:
            writer.append(encode_envelopes(pending, "bench"))
    finally:
        writer.close()
    return seq


def replay_log(path: str, *, inputs_only: bool) -> tuple[int, float, str]:
    """open_log -> iter_envelopes (or input rows only) -> reduce, timed end to end."""
    start = time.perf_counter()
    reader = open_log(path)
    try:
        if inputs_only:  # what recovery and the replay tools do
            envelopes = reader.iter_inputs()
        else:
            envelopes = (e for e in reader.iter_envelopes() if not e.body.IS_DECISION)
        state = new_state()
        for env in envelopes:
            state, _ = reduce(state, env)
        rows = reader.last_seq()
    finally:
        reader.close()
    return rows, time.perf_counter() - start, digest(state)


def bench_log_replay(events: int) -> dict[str, object]:
    inputs = generate(int(events * 0.7))
    with tempfile.TemporaryDirectory(prefix="bench-replay-") as tmp:
        path = f"{tmp}/events.db"
        began = time.perf_counter()
        written = write_log(path, inputs, events)
        print(f"wrote {written} events in {time.perf_counter() - began:.1f} s", file=sys.stderr)
        rows, full_s, full_digest = replay_log(path, inputs_only=False)
        _, inputs_s, inputs_digest = replay_log(path, inputs_only=True)
    return {
        "log_events": rows,
        "replay_log_seconds": round(full_s, 2),
        "replay_log_events_per_s": round(rows / full_s),
        "replay_log_inputs_only_seconds": round(inputs_s, 2),
        "replay_log_target_seconds": 10,
        "replay_log_same_state": full_digest == inputs_digest,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench reducer")
    parser.add_argument("--steps", type=int, default=300_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--log-events", type=int, default=1_000_000)
    args = parser.parse_args(sys.argv[2:] if argv is None else argv)
    log = generate(args.steps)
    kinds: dict[str, int] = {}
    for env in log:
        kinds[env.type] = kinds.get(env.type, 0) + 1
    best = None
    digests = set()
    for _ in range(args.repeat):
        steps, seconds, final = replay_events(log)
        digests.add(final)
        best = seconds if best is None else min(best, seconds)
    rate = steps / best
    replayed = bench_log_replay(args.log_events) if args.log_events > 0 else {}
    print(f"inputs by type: {json.dumps(kinds, sort_keys=True)}", file=sys.stderr)
    print(
        json.dumps(
            {
                "bench": "reducer",
                "steps": steps,
                "best_seconds": round(best, 4),
                "steps_per_s": round(rate),
                "target_steps_per_s": 150_000,
                "deterministic": len(digests) == 1,
                **replayed,
            }
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
