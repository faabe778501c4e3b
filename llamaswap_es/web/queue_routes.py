"""`GET /api/queue`, `GET /api/inflight` and `POST /api/inflight/{id}/cancel`.

deps: `state()` (the scheduler state, read-only), `clock_ms()`, `inflight` (InflightTracker).
The queue view is ours (ARCHITECTURE §9.10); the cancel endpoint is llama-swap's (§13).
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from llamaswap_es.projections.queue_view import queue_payload
from llamaswap_es.web.errors import error_response


def register_routes(router: web.UrlDispatcher, deps: Any) -> None:
    async def queue(request: web.Request) -> web.StreamResponse:
        return web.json_response(queue_payload(deps.state(), deps.clock_ms()))

    async def inflight(request: web.Request) -> web.StreamResponse:
        entries = [entry.to_json() for entry in deps.inflight.entries()]
        return web.json_response({"requests": entries})

    async def cancel(request: web.Request) -> web.StreamResponse:
        if not deps.inflight.cancel(request.match_info["id"]):
            return error_response(request, 404, "inflight request not found")
        return web.json_response({"msg": "ok"})

    router.add_get("/api/queue", queue)
    router.add_get("/api/inflight", inflight)
    router.add_post("/api/inflight/{id}/cancel", cancel)
