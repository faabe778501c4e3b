"""Projection throughput: folding the log into `activity`, rebuilding it, and querying it.

`python bench/run.py projections [--requests N]` writes a log of N requests (received,
dispatched, finished, with a swap every 50) through the real store, then measures
  * live apply: `ActivityProjection.apply` in batches of 100 events (what the runner does),
  * rebuild: `rebuild_projections` over the whole log,
  * queries: the activity API's default page, a model-filtered page sorted by speed, and stats.
Prints a final JSON line of figures.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from pathlib import Path

from llamaswap_es.events.open_log import open_log
from llamaswap_es.events.store import EventStore
from llamaswap_es.events.types import (
    Dispatch,
    Envelope,
    ProcessReady,
    RequestFinished,
    RequestReceived,
    StartProcess,
    SwapPlanned,
)
from llamaswap_es.projections.activity import ActivityProjection
from llamaswap_es.projections.activity_queries import (
    activity_stats,
    list_activity,
    parse_activity_query,
)
from llamaswap_es.projections.database import connect_reader, connect_writer
from llamaswap_es.projections.rebuild import rebuild_projections

MODELS = ("llama-8b", "qwen-7b", "mistral-7b")


def request_events(i: int, ts: int) -> list[Envelope]:
    model = MODELS[(i // 50) % len(MODELS)]
    rid = f"req-{i:08d}"
    out = [Envelope(RequestReceived(request_id=rid, model=model, path="/v1/chat/completions"), ts)]
    if i % 50 == 0:
        out += [
            Envelope(SwapPlanned(model=model, evict=(), request_id=rid), ts),
            Envelope(StartProcess(model=model, instance=i), ts),
            Envelope(ProcessReady(model=model, instance=i), ts + 2000),
        ]
    metrics = {
        "cache_tokens": 10, "input_tokens": 100 + i % 37, "output_tokens": 200 + i % 53,
        "draft_tokens": -1, "draft_acc_tokens": -1, "prompt_per_second": 900.0 + i % 97,
        "tokens_per_second": 40.0 + i % 13, "duration_ms": 1500,
    }  # fmt: skip
    out += [
        Envelope(Dispatch(request_id=rid, model=model, instance=i - i % 50), ts + 2000),
        Envelope(
            RequestFinished(
                request_id=rid,
                model=model,
                status=200,
                duration_ms=1500,
                metrics=metrics,
                content_type="application/json",
                path="/v1/chat/completions",
            ),
            ts + 3500,
        ),
    ]
    return out


async def write_log(path: Path, requests: int) -> None:
    async with await EventStore.open(path) as store:
        batch: list[Envelope] = []
        for i in range(requests):
            batch += request_events(i, 1_748_779_200_000 + i * 1000)
            if len(batch) >= 1000:
                await store.append_batch(batch)
                batch = []
        if batch:
            await store.append_batch(batch)


def timed_ms(fn, repeat: int = 20) -> float:  # type: ignore[no-untyped-def]
    runs = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        runs.append((time.perf_counter() - t0) * 1000)
    return round(statistics.median(runs), 2)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="bench projections")
    parser.add_argument("--requests", type=int, default=20_000)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "events.db"
        asyncio.run(write_log(path, args.requests))
        with open_log(path) as reader:
            envelopes = list(reader.iter_envelopes())
        print(f"log: {len(envelopes)} events for {args.requests} requests", flush=True)

        conn = connect_writer(path)
        projection = ActivityProjection(path)
        t0 = time.perf_counter()
        for i in range(0, len(envelopes), 100):
            projection.apply(conn, envelopes[i : i + 100])
        live_s = time.perf_counter() - t0
        conn.close()
        print(f"live apply: {len(envelopes) / live_s:,.0f} events/s", flush=True)

        report = rebuild_projections(path)
        print(f"rebuild: {report.events / report.seconds:,.0f} events/s", flush=True)

        reader = connect_reader(path)
        default = parse_activity_query({}, [])
        filtered = parse_activity_query({"sort": "gen_speed", "page": "3"}, ["qwen-7b"])
        figures = {
            "requests": args.requests,
            "events": len(envelopes),
            "live_apply_events_per_s": round(len(envelopes) / live_s),
            "rebuild_events_per_s": round(report.events / report.seconds),
            "rebuild_s": round(report.seconds, 2),
            "query_default_page_ms": timed_ms(lambda: list_activity(reader, default)),
            "query_model_sorted_page_ms": timed_ms(lambda: list_activity(reader, filtered)),
            "query_stats_ms": timed_ms(lambda: activity_stats(reader, None), repeat=5),
        }
        reader.close()
    print(json.dumps(figures))
