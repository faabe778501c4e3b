"""The history sink under load: how far behind the log it writes, and what it costs a request.

`python bench/run.py fleet [--rate N] [--e2e-rate N] [--seconds S] [--requests N]
[--database URL]` measures, on a PostgreSQL it starts in a temp dir (Debian's, as the tests do)
unless `--database` names one:

* **lag, end to end**: two real server subprocesses (node-a, node-b, each with its own event log
  and fake upstream) writing into the one shared database, driven open-loop at `--e2e-rate`
  requests/s in total (half each) for `--seconds`. Lag per request = `recorded_ms - ts_ms` of its
  row (when the sink wrote it minus when the request's end was committed to the log). Rows are
  counted against the requests answered (a 429 or 503 is a row too), so the figure is also an
  exactly-once check under load. The default rate is what two proxies, their upstreams and the
  load generator sustain together on a 2-core machine; beyond it the servers queue and the lag
  is theirs.
* **lag, sink alone**: two event logs in this process fed straight through their stores (each
  request = RequestReceived, Dispatch, RequestFinished) at exactly `--rate` requests/s across the
  two, with the run loop's listener call, and two sinks writing to the same database: the sink's
  own capacity, without HTTP in the way.
* **overhead at c=1**: three servers side by side, each in front of its own fake upstream: the sink
  off (`historySink: false`), on into the node's own SQLite file (the default), and on into
  PostgreSQL. Small non-streaming chats go to the three in turn (the order turning every round),
  one at a time, `--requests` each; the figures are each server's latency percentiles and the
  difference to the sink-off server.

Prints progress lines and a final JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import sqlite3
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import aiohttp
from sqlalchemy import bindparam, text

from bench.bench_proxy import (
    HEADERS,
    SMALL,
    BenchServer,
    fake_model_yaml,
    machine,
    small_request,
    start_server,
)
from llamaswap_es.events.store import EventStore
from llamaswap_es.events.types import Dispatch, Envelope, RequestFinished, RequestReceived
from llamaswap_es.projections.history.engine import open_history_database
from llamaswap_es.projections.history.sink import HistorySink
from llamaswap_es.projections.history.writer import HistoryWriter
from tests.fixtures.net import free_port
from tests.fixtures.postgres import PostgresServer, make_template, postgres_bin

MODEL = "bench"
WARM_UP = 32
"""Requests per node before the measured run (they load the model and open the pools)."""


def _percentiles(values: list[float]) -> dict[str, float]:
    if len(values) < 2:
        return {"p50": values[0] if values else 0.0, "p99": values[0] if values else 0.0}
    qs = statistics.quantiles(values, n=100, method="inclusive")
    return {"p50": round(qs[49], 3), "p99": round(qs[98], 3), "max": round(max(values), 3)}


def _config(port: int, ours: str) -> str:
    flags = ("--tokens 1", "--token-delay-ms 0", "--quiet")
    model = fake_model_yaml(MODEL, port, *flags, extra=("concurrencyLimit: 256",))
    return f"healthCheckTimeout: 30\nmodels:\n{model}\nllamaswap-es:\n{ours}"


def _server(root: Path, name: str, ours: str) -> BenchServer:
    workdir = root / name
    workdir.mkdir()
    return start_server(workdir, _config(free_port(), ours))


# -- lag, end to end -------------------------------------------------------------------------------


async def _paced(session: aiohttp.ClientSession, bases: list[str], rate: float, seconds: float):
    """Open loop: request i is sent at start + i/rate, to bases[i % n].

    Returns (answered 200, answered with another status, never answered, seconds)."""
    answered = refused = lost = 0
    tasks: set[asyncio.Task[None]] = set()

    async def one(base: str) -> None:
        nonlocal answered, refused, lost
        url = f"{base}/v1/chat/completions"
        try:
            async with session.post(url, data=SMALL, headers=HEADERS) as response:
                await response.read()
                if response.status == 200:
                    answered += 1
                else:
                    refused += 1  # a 429 or 503 is an activity row too
        except aiohttp.ClientError:
            lost += 1

    start = time.perf_counter()
    sent = 0
    while (elapsed := time.perf_counter() - start) < seconds:
        due = int(elapsed * rate) + 1
        while sent < due:
            task = asyncio.create_task(one(bases[sent % len(bases)]))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            sent += 1
        await asyncio.sleep(0.002)
    await asyncio.gather(*tasks)
    return answered, refused, lost, time.perf_counter() - start


async def _history_lag_ms(url: str, nodes: list[str], since_ms: int) -> tuple[int, list[float]]:
    """(all rows of `nodes`, lag in ms of each of their requests that ended after `since_ms`)."""
    db = open_history_database(url, Path("unused-for-a-url.db"))
    query = text(
        "SELECT ts_ms, recorded_ms - ts_ms FROM history_requests WHERE node IN :nodes"
    ).bindparams(bindparam("nodes", expanding=True))
    try:
        async with db.engine.connect() as conn:
            rows = (await conn.execute(query, {"nodes": nodes})).all()
    finally:
        await db.close()
    return len(rows), [float(lag) for ts, lag in rows if ts >= since_ms]


async def _rows_reach(url: str, nodes: list[str], expected: int, timeout_s: float) -> int:
    """Wait until `nodes` have `expected` rows (the last requests' ends are committed just
    after their answers); returns the count found (fewer at the deadline, more never waited)."""
    deadline = time.monotonic() + timeout_s
    while True:
        count, _ = await _history_lag_ms(url, nodes, 0)
        if count >= expected or time.monotonic() > deadline:
            return count
        await asyncio.sleep(0.2)


async def _wait_current(session: aiohttp.ClientSession, bases: list[str], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    for base in bases:
        while time.monotonic() < deadline:
            async with session.get(f"{base}/api/history") as response:
                if (await response.json())["lag_events"] == 0:
                    break
            await asyncio.sleep(0.1)


async def lag_end_to_end(root: Path, url: str, rate: float, seconds: float) -> dict[str, object]:
    nodes = [
        _server(root, name, f"  nodeName: {name}\n  historyDatabase: {url}\n")
        for name in ("node-a", "node-b")
    ]
    try:
        bases = [n.url for n in nodes]
        connector = aiohttp.TCPConnector(limit=512)
        async with aiohttp.ClientSession(connector=connector) as session:
            for base in bases:  # load the models and open the pools
                await asyncio.gather(*(small_request(session, base) for _ in range(WARM_UP)))
            await _wait_current(session, bases, 30)
            since_ms = time.time_ns() // 1_000_000
            answered, refused, lost, took = await _paced(session, bases, rate, seconds)
        expected = len(bases) * WARM_UP + answered + refused  # every answer is a row, once
        await _rows_reach(url, ["node-a", "node-b"], expected, 60)
        count, lags = await _history_lag_ms(url, ["node-a", "node-b"], since_ms)
    finally:
        for node in nodes:
            node.stop()
    return {
        "target_req_per_s": rate,
        "achieved_req_per_s": round(answered / took),
        "answered": answered,
        "refused": refused,
        "lost": lost,
        "rows": count - len(nodes) * WARM_UP,
        "rows_match_answered": count == len(nodes) * WARM_UP + answered + refused,
        "lag_ms": _percentiles(lags),
    }


# -- lag, the sink alone ---------------------------------------------------------------------------


async def lag_sink_alone(root: Path, url: str, rate: float, seconds: float) -> dict[str, object]:
    stores, sinks = [], []
    for name in ("solo-a", "solo-b"):
        store = await EventStore.open(root / f"{name}.db")
        with sqlite3.connect(store.path) as conn:
            log_id = conn.execute("SELECT id FROM log_identity").fetchone()[0]
        db = open_history_database(url, store.path)
        sink = HistorySink(HistoryWriter(db, node=name, log_id=log_id), store)
        await sink.start()
        stores.append(store)
        sinks.append(sink)
    try:
        await asyncio.gather(*(s.flush(30) for s in sinks))
        since_ms = time.time_ns() // 1_000_000
        start = time.perf_counter()
        sent = 0
        pending: set[asyncio.Task[None]] = set()
        while (elapsed := time.perf_counter() - start) < seconds:
            due = int(elapsed * rate) + 1
            while sent < due:  # concurrent appends, as a server's handlers make them
                i = sent % 2
                task = asyncio.create_task(
                    _one_request(stores[i], sinks[i].on_committed, f"r{sent}")
                )
                pending.add(task)
                task.add_done_callback(pending.discard)
                sent += 1
            await asyncio.sleep(0.002)
        await asyncio.gather(*pending)
        took = time.perf_counter() - start
        await asyncio.gather(*(s.flush(60) for s in sinks))
        count, lags = await _history_lag_ms(url, ["solo-a", "solo-b"], since_ms)
    finally:
        for sink in sinks:
            await sink.stop()
            await sink.writer.db.close()
        for store in stores:
            await store.close()
    return {
        "target_req_per_s": rate,
        "achieved_req_per_s": round(sent / took),
        "rows": count,
        "rows_match_sent": count == sent,
        "lag_ms": _percentiles(lags),
    }


async def _one_request(
    store: EventStore, listener: Callable[[list[Envelope]], None], rid: str
) -> None:
    now = time.time_ns() // 1_000_000
    bodies = [
        RequestReceived(request_id=rid, model=MODEL, path="/v1/chat/completions"),
        Dispatch(request_id=rid, model=MODEL, instance=1),
        RequestFinished(request_id=rid, model=MODEL, status=200, duration_ms=1,
                        metrics={"input_tokens": 5, "output_tokens": 1}),
    ]  # fmt: skip
    envelopes = [Envelope(body=b, ts_ms=now) for b in bodies]
    seqs = await store.append_batch(envelopes)
    listener([Envelope(body=b, ts_ms=now, seq=s) for b, s in zip(bodies, seqs, strict=True)])


# -- overhead at c=1 -------------------------------------------------------------------------------


async def overhead(root: Path, url: str, requests: int) -> dict[str, object]:
    variants = {
        "off": "  historySink: false\n",
        "local_sqlite": "  nodeName: local\n",
        "postgresql": f"  nodeName: pg\n  historyDatabase: {url}\n",
    }
    servers = {name: _server(root, f"c1-{name}", ours) for name, ours in variants.items()}
    try:
        async with aiohttp.ClientSession() as session:
            for server in servers.values():  # load the model, open the pool
                for _ in range(200):
                    await small_request(session, server.url)
            times: dict[str, list[float]] = {name: [] for name in servers}
            names = list(servers)
            for i in range(requests):  # the order turns each round: no server always follows
                for name in names[i % 3 :] + names[: i % 3]:  # another's post-request work
                    times[name].append(await small_request(session, servers[name].url) * 1000)
    finally:
        for server in servers.values():
            server.stop()
    off = _percentiles(times["off"])
    out: dict[str, object] = {"requests_each": requests}
    for name, values in times.items():
        figures = _percentiles(values)
        out[name] = {
            "p50_ms": figures["p50"],
            "p99_ms": figures["p99"],
            "added_p50_ms": round(figures["p50"] - off["p50"], 3),
            "added_p99_ms": round(figures["p99"] - off["p99"], 3),
        }
    return out


# -- the benchmark ---------------------------------------------------------------------------------


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="bench/run.py fleet")
    parser.add_argument(
        "--rate", type=float, default=1000, help="requests/s across both nodes, the sink alone"
    )
    parser.add_argument(
        "--e2e-rate", type=float, default=300,
        help="requests/s across both nodes end to end (what two proxies sustain on the machine)",
    )  # fmt: skip
    parser.add_argument("--seconds", type=float, default=20, help="length of each lag run")
    parser.add_argument("--requests", type=int, default=2000, help="per server, c=1 overhead")
    parser.add_argument("--database", help="a PostgreSQL URL to use instead of a temp one")
    args = parser.parse_args(argv)
    results: dict[str, object] = {}
    with tempfile.TemporaryDirectory(prefix="bench-fleet-") as tmp:
        root = Path(tmp)
        postgres = None
        url = args.database
        if url is None:
            bin_dir = postgres_bin()
            if bin_dir is None:
                raise SystemExit("PostgreSQL is not installed (apt-get install postgresql)")
            template = make_template(bin_dir)
            postgres = PostgresServer(bin_dir, template)
            postgres.start()
            url = postgres.url(postgres.create_database())
        try:
            t0 = time.perf_counter()
            results["lag_end_to_end"] = asyncio.run(
                lag_end_to_end(root, url, args.e2e_rate, args.seconds)
            )
            print(f"lag, end to end: {results['lag_end_to_end']}", flush=True)
            results["lag_sink_alone"] = asyncio.run(
                lag_sink_alone(root, url, args.rate, args.seconds)
            )
            print(f"lag, sink alone: {results['lag_sink_alone']}", flush=True)
            results["c1_overhead"] = asyncio.run(overhead(root, url, args.requests))
            print(f"overhead at c=1: {results['c1_overhead']}", flush=True)
            results["seconds"] = round(time.perf_counter() - t0, 1)
        finally:
            if postgres is not None:
                postgres.close()
                shutil.rmtree(template.parent, ignore_errors=True)
    results["machine"] = machine()
    e2e = results["lag_end_to_end"]
    alone = results["lag_sink_alone"]
    results["targets"] = {
        "sink_alone_lag_p99_ms<=1000": alone["lag_ms"]["p99"] <= 1000,  # type: ignore[index]
        "end_to_end_lag_p99_ms<=1000": e2e["lag_ms"]["p99"] <= 1000,  # type: ignore[index]
        "rows_exactly_once": bool(e2e["rows_match_answered"] and alone["rows_match_sent"]),  # type: ignore[index]
    }
    print(json.dumps(results))
