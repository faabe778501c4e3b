"""`/api/events`: one SSE connection per UI tab, with llama-swap's initial burst (spec/api.md §12).

The burst is queued into the connection's own subscription before any live message, so nothing
published in between is lost or reordered. A tab that falls too far behind is dropped by the hub
(projections/event_hub.py): its connection is aborted here, which also ends a write that waits on
a client that stopped reading.
"""

from __future__ import annotations

import contextlib

from aiohttp import web

from llamaswap_es.projections.event_hub import frame
from llamaswap_es.web.context import CTX
from llamaswap_es.web.listing import model_status


def register(router: web.UrlDispatcher) -> None:
    router.add_get("/api/events", events)


async def events(request: web.Request) -> web.StreamResponse:
    ctx = request.app[CTX]
    initial = [
        frame("logData", {"source": "proxy", "data": ctx.logs.history("proxy")}),
        frame("logData", {"source": "upstream", "data": ctx.logs.history("upstream")}),
        frame("modelStatus", model_status(ctx)),
        frame("uiConfig", {"activity": {"session_id": list(ctx.config.ui.activity.session_id)}}),
        frame("profileChanged", {"active": ctx.active_profile}),
        frame("inflight", ctx.inflight.snapshot()),
    ]
    transport = request.transport
    subscription = ctx.hub.subscribe(
        initial=initial,
        limit_bytes=ctx.config.llamaswap_es.event_stream_buffer_kib * 1024,
        peer=request.remote or "unknown address",
        on_overflow=transport.abort if transport is not None else None,
    )
    response = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream",
            "Cache-Control": "no-cache",
            "Connection": "keep-alive",
            "X-Content-Type-Options": "nosniff",
            "X-Accel-Buffering": "no",
        }
    )
    try:
        await response.prepare(request)
        with contextlib.suppress(ConnectionError):
            async for data in subscription.frames():
                await response.write(data)
    finally:
        ctx.hub.unsubscribe(subscription)  # also when the client left before the first write
    return response
