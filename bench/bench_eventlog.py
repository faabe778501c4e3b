"""Event-log throughput: appends/s by batch size and sync level, group commit, latency, scans.

`python bench/run.py eventlog [--crash-rounds N] [--events N]` prints progress lines and then one
JSON line of figures. `python bench/run.py crashloop [--crash-rounds 100]` runs only the kill -9
loop. Each case uses a fresh database in a temporary directory on the same disk as /tmp. The batch
cases measure the store's direct append (one producer, no run loop); the 64-producer group-commit
cases go through the run loop, the server's one write pipeline.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import sqlite3
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path

from llamaswap_es.events.open_log import open_log
from llamaswap_es.events.store import EventStore
from llamaswap_es.events.types import Decision, Envelope, Event, RequestFinished, RequestReceived
from llamaswap_es.runtime.clock import SystemClock
from llamaswap_es.runtime.loop import RunLoop


def _event(i: int, request: int | None = None) -> Envelope:
    """Event `i` (its timestamp and type), keyed by request id number `request` (default `i`)."""
    request_id = f"req-{i if request is None else request:08d}"
    if i % 2:
        body = RequestReceived(
            request_id=request_id, model="llama-8b", path="/v1/chat/completions", stream=True
        )
    else:
        body = RequestFinished(
            request_id=request_id,
            model="llama-8b",
            status=200,
            duration_ms=1234,
            bytes_out=4567,
            metrics={"tokens_in": 120, "tokens_out": 480, "tps": 55.5},
        )
    return Envelope(body=body, ts_ms=1_700_000_000_000 + i)


async def _batched(path: Path, sync: str, batch: int, total: int) -> dict[str, float]:
    """One producer appending batches of `batch`, each awaited (commit latency = await time)."""
    store = await EventStore.open(path, synchronous=sync)
    envs = [_event(i) for i in range(batch)]
    latencies = []
    n = 0
    start = time.perf_counter()
    while n < total:
        t0 = time.perf_counter()
        await store.append_batch(envs)
        latencies.append(time.perf_counter() - t0)
        n += batch
    elapsed = time.perf_counter() - start
    await store.close()
    return {"events_per_s": round(n / elapsed), **_percentiles(latencies)}


def _no_decisions(state: None, envelope: Envelope) -> tuple[None, list[Decision]]:
    """A reducer that decides nothing: the figure is the write pipeline's, not the scheduler's."""
    return state, []


class _NoActuator:
    def apply(self, decision: Decision) -> None:
        pass


async def _group(
    path: Path, sync: str, producers: int, total: int, *, scattered_keys: bool = False
) -> dict[str, float]:
    """`producers` tasks each submitting one event to the run loop and awaiting its commit.

    This is the server's one write pipeline: the `RunLoop` (with a reducer that decides nothing)
    numbers each batch and hands it to the store's writer thread; group commit comes from the
    loop's batching (inputs wait in its inbox while a commit is in flight). Latency is from
    `submit` to the loop's listener seeing the event committed.

    Keys (request ids) are time-ordered by default, as the server's ULID request ids are: the
    requests in flight at any moment have neighbouring ids, so a commit touches a few leaf pages
    of the `events_by_key` index. `scattered_keys` gives each producer its own far-apart id range
    instead, the worst case: every commit of 64 events then dirties ~64 leaf pages of that index
    (≈380 KB of WAL per commit instead of ≈100 KB), which is what the figure then measures.
    """
    store = await EventStore.open(path, synchronous=sync)
    run_loop = RunLoop(
        store, reduce=_no_decisions, state=None, clock=SystemClock(), actuator=_NoActuator()
    )
    committed: dict[str, asyncio.Future[None]] = {}

    def on_committed(envelopes: Sequence[Envelope]) -> None:
        for env in envelopes:
            waiter = committed.pop(getattr(env.body, "request_id", ""), None)
            if waiter is not None:
                waiter.set_result(None)

    run_loop.add_listener(on_committed)
    await run_loop.start(first=store.server_started())
    await run_loop.flush()
    per = total // producers
    latencies: list[float] = []
    # Built before the clock starts: the figure is the pipeline's (encode, batch, commit,
    # wake-up), not the producers' dataclass construction (~2-3 µs an event, see
    # docs/benchmarks.md).
    work = [
        [
            _event(p * per + i, p * per + i if scattered_keys else i * producers + p).body
            for i in range(per)
        ]
        for p in range(producers)
    ]
    aio = asyncio.get_running_loop()

    async def producer(bodies: list[Event]) -> None:
        for body in bodies:
            t0 = time.perf_counter()
            waiter = aio.create_future()
            committed[body.request_id] = waiter  # type: ignore[attr-defined]
            run_loop.submit(body)
            await waiter
            latencies.append(time.perf_counter() - t0)

    start = time.perf_counter()
    await asyncio.gather(*(producer(bodies) for bodies in work))
    elapsed = time.perf_counter() - start
    await run_loop.stop()
    await store.close()
    return {"events_per_s": round(per * producers / elapsed), **_percentiles(latencies)}


def _repeated(times: int, run: Callable[[], dict[str, float]]) -> dict[str, object]:
    """Run a case `times` times: the median run's figures plus the range of events/s.

    The VM's speed drifts by up to 2x between minutes (a shared host), so one run says little.
    """
    runs = sorted((run() for _ in range(times)), key=lambda r: r["events_per_s"])
    median = dict(runs[len(runs) // 2])
    median["events_per_s_range"] = [runs[0]["events_per_s"], runs[-1]["events_per_s"]]
    median["runs"] = times
    return median


def _group_in_loop(
    fresh: Callable[[], Path], sync: str, events: int, scattered_keys: bool
) -> dict[str, float]:
    return _run_loop(_group(fresh(), sync, 64, events, scattered_keys=scattered_keys))


def _percentiles(latencies: list[float]) -> dict[str, float]:
    qs = statistics.quantiles(latencies, n=100) if len(latencies) > 1 else latencies * 99
    return {"p50_ms": round(qs[49] * 1000, 3), "p99_ms": round(qs[98] * 1000, 3)}


def _scan(path: Path, rows: int) -> dict[str, float]:
    async def fill() -> None:
        store = await EventStore.open(path)
        envs = [_event(i) for i in range(10_000)]
        for _ in range(rows // 10_000):
            await store.append_batch(envs)
        await store.close()

    asyncio.run(fill())
    out = {}
    with open_log(path) as reader:
        for label, fn in (
            ("raw_rows_per_s", lambda: sum(1 for _ in reader.iter_rows())),
            ("trusted_decode_rows_per_s", lambda: sum(1 for _ in reader.iter_envelopes())),
            (
                "validated_decode_rows_per_s",
                lambda: sum(1 for _ in reader.iter_envelopes(validate=True)),
            ),
        ):
            best = 0.0
            for _ in range(2):
                t0 = time.perf_counter()
                n = fn()
                best = max(best, n / (time.perf_counter() - t0))
            out[label] = round(best)
    return out


def _machine() -> dict[str, object]:
    return {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "platform": platform.platform(),
    }


def _run_loop(coro):  # type: ignore[no-untyped-def]
    """The server's event loop: uvloop where installed (as `llamaswap-es` runs), else asyncio."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    return uvloop.run(coro)


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="bench/run.py eventlog")
    parser.add_argument("--events", type=int, default=40_000, help="events per append case")
    parser.add_argument("--scan-rows", type=int, default=300_000)
    parser.add_argument("--repeat", type=int, default=3, help="runs of each group-commit case")
    parser.add_argument("--crash-rounds", type=int, default=0)
    parser.add_argument("--only-crash", action="store_true")
    args = parser.parse_args(argv)
    if args.only_crash and not args.crash_rounds:
        args.crash_rounds = 100
    results: dict[str, object] = {"machine": _machine()}
    with tempfile.TemporaryDirectory(prefix="bench-eventlog-") as tmp:
        root = Path(tmp)
        case = 0

        def fresh() -> Path:
            nonlocal case
            case += 1
            return root / f"case{case}" / "events.db"

        if not args.only_crash:
            appends: dict[str, object] = {}
            for sync in ("normal", "full"):
                for batch in (1, 10, 100, 1000):
                    # Single-event commits at FULL pay one fsync each: fewer of them.
                    total = args.events // (10 if batch == 1 else 1)
                    figures = asyncio.run(_batched(fresh(), sync, batch, max(total, batch)))
                    appends[f"{sync}_batch{batch}"] = figures
                    print(f"{sync} batch={batch}: {figures}", flush=True)
                for label, scattered in (("group64", False), ("group64_scattered_keys", True)):
                    figures = _repeated(
                        args.repeat,
                        partial(_group_in_loop, fresh, sync, args.events, scattered),
                    )
                    appends[f"{sync}_{label}"] = figures
                    print(f"{sync} 64 producers, group commit ({label}): {figures}", flush=True)
            results["appends"] = appends
            results["scan"] = _scan(fresh(), args.scan_rows)
            print(f"scan of {args.scan_rows} rows: {results['scan']}", flush=True)
        if args.crash_rounds:
            from tests.events.crash_harness import crash_loop

            seed = random.randrange(1 << 30)
            t0 = time.perf_counter()
            totals = crash_loop(fresh(), args.crash_rounds, seed)
            totals["seconds"] = round(time.perf_counter() - t0, 1)
            totals["seed"] = seed
            results["crashloop"] = totals
            print(f"kill -9 loop: {totals}", flush=True)
    print(json.dumps(results))
