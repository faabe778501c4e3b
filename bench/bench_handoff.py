"""The event loop's cost of one round trip to a database thread (docs/architecture.md note 18).

`python bench/run.py handoff [--calls N]`: from uvloop, N round trips of a trivial call through
`loop.run_in_executor` on a one-thread `ThreadPoolExecutor` (what the log's and the projections'
connections used before) and through `events.worker_thread.WorkerThread` (what they use now),
interleaved three times; process CPU and wall time per round trip, median. The final JSON line
has both and their ratio.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor

from bench.bench_proxy import machine
from llamaswap_es.events.worker_thread import WorkerThread


def _nothing(x: int) -> int:
    return x


async def _timed(calls: int, one: Callable[[int], Awaitable[int]]) -> tuple[float, float]:
    cpu, wall = time.process_time(), time.perf_counter()
    for i in range(calls):
        await one(i)
    return (time.process_time() - cpu) / calls * 1e6, (time.perf_counter() - wall) / calls * 1e6


async def _measure(calls: int, rounds: int) -> dict[str, dict[str, float]]:
    loop = asyncio.get_running_loop()
    executor = ThreadPoolExecutor(1)
    worker = WorkerThread("bench-handoff")
    samples: dict[str, list[tuple[float, float]]] = {"executor": [], "worker_thread": []}
    try:
        for _ in range(rounds):
            samples["executor"].append(
                await _timed(calls, lambda i: loop.run_in_executor(executor, _nothing, i))
            )
            samples["worker_thread"].append(await _timed(calls, lambda i: worker.call(_nothing, i)))
    finally:
        executor.shutdown()
        worker.close()
    return {
        name: {
            "cpu_us": round(statistics.median(c for c, _ in values), 1),
            "wall_us": round(statistics.median(w for _, w in values), 1),
        }
        for name, values in samples.items()
    }


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="bench/run.py handoff")
    parser.add_argument("--calls", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    try:
        import uvloop

        results = uvloop.run(_measure(args.calls, args.rounds))
    except ImportError:
        results = asyncio.run(_measure(args.calls, args.rounds))
    ratio = results["executor"]["cpu_us"] / max(results["worker_thread"]["cpu_us"], 1e-9)
    print(json.dumps({**results, "cpu_ratio": round(ratio, 2), "machine": machine()}))
