"""`GET /metrics`, `GET /api/performance` and `GET /api/hardware` (spec/api.md §17, §18).

deps: `registry` (CollectorRegistry), `log_gauges`, `model_metrics` and `state` (each configured
model's counters start at 0), `runner` (for the lag), `store` (last seq), `db_path`, `sampler`
(PerformanceSampler), `hardware` (dict or None). A `Projections` has them all.

Deliberate difference: with `performance.disabled` llama-swap answers `/metrics` with 503; we still
serve the per-model metrics (ARCHITECTURE §9.9) and leave out only the host families.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from aiohttp import web
from prometheus_client import generate_latest

from llamaswap_es.projections.activity_queries import parse_rfc3339
from llamaswap_es.web.errors import error_response

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def register_routes(router: web.UrlDispatcher, deps: Any) -> None:
    async def metrics(request: web.Request) -> web.StreamResponse:
        last = await deps.store.last_seq()
        deps.log_gauges.update(deps.db_path, last, max(0, last - deps.runner.applied_seq))
        if (view := deps.state()) is not None:
            deps.model_metrics.declare(view.models)
        body = generate_latest(deps.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE})

    async def performance(request: web.Request) -> web.StreamResponse:
        sampler = deps.sampler
        if not sampler.enabled:
            return web.json_response({"enabled": False}, status=503)
        after: float | None = None
        if text := request.query.get("after"):
            stamp = parse_rfc3339_precise(text)
            if stamp is None:
                return error_response(request, 400, "invalid 'after' timestamp, use RFC3339 format")
            after = stamp
        sys_stats = [s.to_json() for s in sampler.sys_stats(after)]
        gpu_stats = [g.to_json() for g in sampler.gpu_stats(after)]
        if after is None:  # llama-swap: an empty buffer serialises as null without `after`
            return web.json_response(
                {"enabled": True, "sys_stats": sys_stats or None, "gpu_stats": gpu_stats or None}
            )
        return web.json_response({"enabled": True, "sys_stats": sys_stats, "gpu_stats": gpu_stats})

    async def hardware(request: web.Request) -> web.StreamResponse:
        if deps.hardware is None:
            return error_response(request, 503, "hardware detection unavailable")
        return web.json_response(deps.hardware)

    router.add_get("/metrics", metrics)
    router.add_get("/api/performance", performance)
    router.add_get("/api/hardware", hardware)


def parse_rfc3339_precise(text: str) -> float | None:
    """Seconds since the epoch with the fraction kept (`after` compares strictly)."""
    whole = parse_rfc3339(text)
    if whole is None:
        return None
    return datetime.fromisoformat(text.replace("z", "Z")).timestamp()
