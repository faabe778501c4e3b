"""Projections on the real service: real log, reducer, fake-upstream processes, real HTTP.

Requests go through the scheduler as the HTTP layer will send them (RequestReceived, wait for
Dispatch, call the upstream, RequestFinished with the metrics parsed from its real answer). The
activity rows must carry those metrics and the waits the log shows, `/metrics` must count them,
the queue view must show a waiting request, and a restart must continue without double counting.
"""

from __future__ import annotations

import asyncio
import sqlite3
import sys
import time
from pathlib import Path

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from llamaswap_es.config import load_config
from llamaswap_es.events.open_log import open_log
from llamaswap_es.events.types import Dispatch, RequestFinished, RequestReceived
from llamaswap_es.projections.inflight import InflightTracker
from llamaswap_es.projections.lifecycle import Projections
from llamaswap_es.projections.queue_view import model_status_payload
from llamaswap_es.projections.rebuild import rebuild_projections
from llamaswap_es.runtime.logs import UpstreamLogs
from llamaswap_es.runtime.service import SwapService
from llamaswap_es.web import activity_routes, metrics_routes, queue_routes
from llamaswap_es.web.response_meter import ResponseMeter
from tests.conftest import REPO_ROOT, free_port
from tests.projections.http_app import serve_routes

LOAD_DELAY_MS = {"a": 1500, "b": 300}
"""`a` loads slowly so the queue view is read while r1 surely still waits for it."""


def write_config(tmp_path: Path) -> Path:
    lines = ["healthCheckTimeout: 20", "captureBuffer: 1", "models:"]
    for model in ("a", "b"):
        port = free_port()
        lines += [
            f"  {model}:",
            f"    cmd: {sys.executable} -m llamaswap_es.fake_upstream --port {port} "
            f"--model-name {model} --load-delay-ms {LOAD_DELAY_MS[model]} --tokens 7 --quiet",
            f"    proxy: http://127.0.0.1:{port}",
            f"    env: [PYTHONPATH={REPO_ROOT}]",
            "    unloadTimeout: 2",
        ]
    path = tmp_path / "config.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


async def serve(svc: SwapService, rid: str, model: str, *, stream: bool) -> dict:
    """One request end to end below HTTP; returns the metrics reported in RequestFinished."""
    assert svc.loop is not None and svc.executor is not None
    path = "/v1/chat/completions"
    ticket = svc.loop.submit_request(
        RequestReceived(request_id=rid, model=model, path=path, stream=stream)
    )
    decision = await asyncio.wait_for(ticket.decision, 30)
    assert isinstance(decision, Dispatch), decision
    address = svc.executor.address(model)
    assert address is not None
    body = {"model": model, "stream": stream, "messages": [{"role": "user", "content": "hi"}]}
    started = time.monotonic()
    async with aiohttp.ClientSession() as http, http.post(f"{address[1]}{path}", json=body) as resp:
        meter = ResponseMeter(resp.status, resp.content_type, path=path)
        size = 0
        async for chunk in resp.content.iter_any():
            meter.feed(chunk)
            size += len(chunk)
        content_type = resp.headers.get("Content-Type", "")
    wall_ms = int((time.monotonic() - started) * 1000)
    metrics, error = meter.finish(wall_ms)
    svc.loop.submit(
        RequestFinished(
            request_id=rid,
            model=model,
            status=resp.status,
            duration_ms=wall_ms,
            bytes_out=size,
            error=error,
            metrics=metrics,
            content_type=content_type,
            path=path,
        )
    )
    return metrics


def activity_rows(db_path: Path) -> list[tuple]:
    with sqlite3.connect(db_path) as conn:
        return conn.execute("SELECT * FROM activity ORDER BY id").fetchall()


def waits_from_log(db_path: Path) -> dict[str, int]:
    """received → dispatched per request, read straight from the events."""
    received: dict[str, int] = {}
    waits: dict[str, int] = {}
    with open_log(db_path) as reader:
        for env in reader.iter_envelopes():
            if env.type == "RequestReceived":
                received[env.key] = env.ts_ms
            elif env.type == "Dispatch":
                waits[env.key] = env.ts_ms - received[env.key]
    return waits


def samples(text: str) -> dict[tuple[str, tuple], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


async def test_activity_metrics_and_queue_view_on_the_real_service(
    tmp_path: Path, db_path: Path, env_tag: str
) -> None:
    config = load_config(str(write_config(tmp_path)), None)
    svc = SwapService(config, db_path=db_path, logs=UpstreamLogs(), env_tag=env_tag)
    await svc.start()
    projections = await Projections.start(svc, inflight=InflightTracker(), use_gpus=False)
    modules = (
        activity_routes.register_routes,
        metrics_routes.register_routes,
        queue_routes.register_routes,
    )
    try:
        async with serve_routes(projections, *modules) as (base, http):
            # r1 finds `a` stopped: while it loads, the queue view shows r1 waiting on the swap.
            first = asyncio.create_task(serve(svc, "r1", "a", stream=False))
            assert await svc.wait_until(lambda view: bool(view.queue), timeout_s=10)
            async with http.get(f"{base}/api/queue") as resp:
                queue = await resp.json()
            reported = {"r1": await first}
            reported["r2"] = await serve(svc, "r2", "a", stream=True)  # `a` is ready: no wait
            reported["r3"] = await serve(svc, "r3", "b", stream=False)  # swaps `a` out
            await svc.loop.flush()
            await projections.runner.flush()
            async with http.get(f"{base}/metrics") as resp:
                assert resp.headers["Content-Type"].startswith("text/plain; version=0.0.4")
                scraped = samples(await resp.text())
            async with http.get(f"{base}/api/metrics/activity?order=asc") as resp:
                listed = await resp.json()
            status = model_status_payload(svc.config, svc.view)
    finally:
        await projections.stop()
        await svc.shutdown()

    assert queue["requests"][0]["request_id"] == "r1"
    assert queue["requests"][0]["phase"] == "waiting" and queue["requests"][0]["waited_ms"] >= 0
    assert {m["id"]: (m["state"], m["queue_depth"]) for m in queue["models"]}["a"] == (
        "starting",
        1,
    )

    assert [(m["id"], m["state"]) for m in status] == [("a", "stopped"), ("b", "ready")]
    rows = {r["request_id"]: r for r in listed["data"]}
    assert sorted(rows) == ["r1", "r2", "r3"] and listed["total"] == 3
    for rid, metrics in reported.items():
        tokens = rows[rid]["tokens"]
        assert metrics["output_tokens"] == 7  # the fake upstream's --tokens
        for key in ("input_tokens", "output_tokens", "cache_tokens", "tokens_per_second"):
            assert tokens[key] == metrics[key], (rid, key)
    log_waits = waits_from_log(db_path)
    for rid in ("r1", "r2", "r3"):
        assert rows[rid]["queue_wait_ms"] == log_waits[rid]
    # r1 and r3 waited for their model's swap the whole time; r2 found `a` ready.
    assert rows["r1"]["swap_wait_ms"] == rows["r1"]["queue_wait_ms"] >= LOAD_DELAY_MS["a"]
    assert rows["r3"]["swap_wait_ms"] == rows["r3"]["queue_wait_ms"] >= LOAD_DELAY_MS["b"]
    assert rows["r2"]["swap_wait_ms"] == 0

    def value(name: str, **labels: str) -> float:
        key = (name, tuple(sorted(labels.items())))
        assert key in scraped, f"/metrics has no series {key}"
        return scraped[key]

    assert value("llamaswap_es_requests_total", model="a", status="200") == 2
    assert value("llamaswap_es_requests_total", model="b", status="200") == 1
    assert value("llamaswap_es_tokens_total", model="a", direction="output") == 14
    assert value("llamaswap_es_queue_wait_seconds_count", model="a") == 2
    assert value("llamaswap_es_swap_duration_seconds_count", model="b") == 1
    assert value("llamaswap_es_model_loads_total", model="a") == 1
    # Nothing crashed or failed to start, and each model says so with a 0 (not a missing
    # series), so that `increase()` and the alert rules see the first crash too.
    for model in ("a", "b"):
        assert value("llamaswap_es_model_crashes_total", model=model) == 0
        assert value("llamaswap_es_model_start_failures_total", model=model) == 0
    assert value("llamaswap_es_model_state", model="b", state="ready") == 1
    assert value("llamaswap_es_model_state", model="a", state="stopped") == 1
    assert value("llamaswap_es_projection_lag_events") == 0
    assert value("llamaswap_es_event_log_bytes") > 0
    value("llamaswap_cpu_util_percent", core="0")  # the host families are present
    assert ("llamaswap_memory_total_bytes", ()) in scraped

    live = activity_rows(db_path)

    # A restart: the projections resume from their checkpoint (the shutdown's events are read
    # from the log), a new request adds exactly one row.
    svc = SwapService(config, db_path=db_path, logs=UpstreamLogs(), env_tag=env_tag)
    await svc.start()
    projections = await Projections.start(svc, inflight=InflightTracker(), use_gpus=False)
    try:
        await serve(svc, "r4", "b", stream=True)
        await svc.loop.flush()
        await projections.runner.flush()
    finally:
        await projections.stop()
        await svc.shutdown()
    resumed = activity_rows(db_path)
    assert resumed[:3] == live
    assert [row[1] for row in resumed] == ["r1", "r2", "r3", "r4"]
    rebuild_projections(db_path)
    assert activity_rows(db_path) == resumed
