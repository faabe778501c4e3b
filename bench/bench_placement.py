"""Reducer cost per input with placement by GPU memory on and off (issue 18).

Eight models of 9-16 GiB declared footprint on four 24 GiB GPUs, all in one group that lets them
run together, so memory alone decides what must stop; clients send requests to random models and
finish them at random, an executor answers every start and stop at once. The same seeded input
stream is reduced with `placement.mode` off and memory. Prints a final JSON line.

    python bench/run.py placement [--inputs N] [--repeat N]
"""

from __future__ import annotations

import argparse
import json
import random
import time

from llamaswap_es.config.schedule import (
    GroupPlanner,
    GroupRule,
    ModelSchedule,
    PlacementRules,
    SchedulerConfig,
)
from llamaswap_es.core import new_state, reduce
from llamaswap_es.events.types import (
    ConfigApplied,
    Dispatch,
    Envelope,
    Event,
    GpuMemorySampled,
    ProcessReady,
    ProcessStopped,
    RequestFinished,
    RequestReceived,
    StartProcess,
    StopProcess,
)

MODELS = tuple(f"m{i}" for i in range(8))


def _config(mode: str) -> SchedulerConfig:
    schedules = {
        m: ModelSchedule(model_id=m, footprint_mb=9_000 + 1_000 * i, placement_priority=i % 3)
        for i, m in enumerate(MODELS)
    }
    group = GroupRule(name="g", swap=False, exclusive=False, members=MODELS)
    return SchedulerConfig(
        models=schedules,
        planner=GroupPlanner(groups=(group,)),
        policy="fifo",
        placement=PlacementRules(mode=mode, margin_mb=512),
    )


def run(mode: str, inputs: int) -> tuple[float, int, int]:
    """Seconds for `inputs` reductions, and the starts and evictions they decided."""
    state = new_state()
    rnd = random.Random(1)
    pending: list[Event] = [
        ConfigApplied(config_hash="bench", schedule=_config(mode).to_dict()),
        GpuMemorySampled(
            uuids=("a", "b", "c", "d"),
            names=("bench",) * 4,
            total_mb=(24_576,) * 4,
            free_mb=(24_000,) * 4,
        ),
    ]
    in_flight: list[str] = []
    starts = stops = done = rid = seq = 0
    began = time.perf_counter()
    while done < inputs:
        if pending:
            event = pending.pop(0)
        elif rnd.random() < 0.5 or not in_flight:
            rid += 1
            event = RequestReceived(request_id=f"r{rid}", model=rnd.choice(MODELS))
        else:
            finished = in_flight.pop(rnd.randrange(len(in_flight)))
            event = RequestFinished(request_id=finished, model="", status=200)
        seq += 1
        done += 1
        state, decisions = reduce(state, Envelope(body=event, ts_ms=seq * 5, seq=seq))
        for d in decisions:
            if isinstance(d, StartProcess):
                starts += 1
                pending.append(ProcessReady(model=d.model, instance=d.instance))
            elif isinstance(d, StopProcess):
                stops += 1
                pending.append(ProcessStopped(model=d.model, instance=d.instance))
            elif isinstance(d, Dispatch):
                in_flight.append(d.request_id)
    return time.perf_counter() - began, starts, stops


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="bench placement")
    parser.add_argument("--inputs", type=int, default=40_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    figures: dict[str, object] = {"bench": "placement", "inputs": args.inputs}
    for mode in ("off", "memory"):
        best, starts, stops = min(run(mode, args.inputs) for _ in range(args.repeat))
        figures[f"{mode}_us_per_input"] = round(best / args.inputs * 1e6, 1)
        figures[f"{mode}_starts"] = starts
        figures[f"{mode}_stops"] = stops
    print(json.dumps(figures))
    return 0
