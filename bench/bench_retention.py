"""Retention: how fast the log is pruned, and how long appends wait meanwhile.

`python bench/run.py retention [--events N] [--chunk N]` writes N events (half requests
received, half finished, like a busy server), stores a snapshot at 80 % of them and prunes
through it with `EventStore.prune_through`, while a producer appends one event at a time and
times each commit. Prints progress lines, then one JSON line of figures.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from pathlib import Path

from bench.bench_eventlog import _event
from llamaswap_es.events.store import PRUNE_CHUNK, EventStore


async def _run(path: Path, events: int, chunk: int) -> dict[str, float]:
    store = await EventStore.open(path)
    try:
        for start in range(0, events, 5_000):
            await store.append_batch([_event(i) for i in range(start, min(events, start + 5_000))])
        through = int(events * 0.8)
        await store.save_snapshot(reducer_version="bench", seq=through, digest="d", state=b"s")
        size_before = path.stat().st_size
        latencies: list[float] = []
        pruning = asyncio.create_task(store.prune_through(through, chunk=chunk))
        started = time.perf_counter()
        i = events
        while not pruning.done():
            t0 = time.perf_counter()
            await store.append_batch([_event(i)])
            latencies.append((time.perf_counter() - t0) * 1000)
            i += 1
        deleted = await pruning
        seconds = time.perf_counter() - started
    finally:
        await store.close()
    latencies.sort()
    return {
        "events": events,
        "chunk": chunk,
        "pruned": deleted,
        "prune_s": round(seconds, 3),
        "pruned_per_s": round(deleted / seconds),
        "appends_during_prune": len(latencies),
        "append_p50_ms": round(statistics.median(latencies), 2) if latencies else 0,
        "append_p99_ms": round(latencies[int(len(latencies) * 0.99)], 2) if latencies else 0,
        "append_max_ms": round(latencies[-1], 2) if latencies else 0,
        "file_mb": round(size_before / 1e6, 1),
    }


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="bench retention")
    parser.add_argument("--events", type=int, default=500_000)
    parser.add_argument("--chunk", type=int, default=PRUNE_CHUNK)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-retention-") as scratch:
        print(f"writing {args.events} events, then pruning 80 % of them …", flush=True)
        figures = asyncio.run(_run(Path(scratch) / "events.db", args.events, args.chunk))
    print(json.dumps(figures))
    return 0
