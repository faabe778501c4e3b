"""The aiohttp application: llama-swap's middleware order and every route module.

Order (spec/api.md §2): access log → CORS preflight → API keys → Go-mux-style 404/405 and
`RequestError` rendering → the route. Each route module has one job and a `register(router)`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence

from aiohttp import web

from llamaswap_es.events.types import (
    ConfigApplied,
    Envelope,
    ProcessAdopted,
    ProcessExited,
    ProcessReady,
    ProcessStartFailed,
    ProcessStopped,
    StartProcess,
    StopProcess,
)
from llamaswap_es.projections import http_activity, http_metrics, http_queue
from llamaswap_es.projections.history import http as http_history
from llamaswap_es.web import (
    config_reload,
    events_route,
    listing,
    log_api,
    log_routes,
    model_routes,
    ops_routes,
    static_routes,
)
from llamaswap_es.web.auth import api_key_middleware, is_public_route
from llamaswap_es.web.client_address import reported_client_ip
from llamaswap_es.web.context import CTX, AppContext
from llamaswap_es.web.cors import cors_middleware
from llamaswap_es.web.errors import go_mux_errors_middleware

access_log = logging.getLogger("llamaswap_es.access")

UNLOGGED_PREFIXES = ("/wol-health", "/api/performance", "/metrics")
STATUS_CHANGING = (
    StartProcess, StopProcess, ProcessReady, ProcessStartFailed, ProcessStopped, ProcessExited,
    ProcessAdopted, ConfigApplied,
)  # fmt: skip


@web.middleware
async def access_log_middleware(request: web.Request, handler: web.Handler) -> web.StreamResponse:
    started = time.monotonic()
    response = await handler(request)
    if not request.path.startswith(UNLOGGED_PREFIXES):
        client = reported_client_ip(request)
        size = response.body_length or response.content_length or 0
        access_log.info(
            'Request %s "%s %s HTTP/%d.%d" %d %d "%s" %.3fs',
            client, request.method, request.path_qs, request.version.major,
            request.version.minor, response.status, size,
            request.headers.get("User-Agent", ""), time.monotonic() - started,
        )  # fmt: skip
    return response


def build_app(ctx: AppContext, *, extra_routes: Sequence[object] = ()) -> web.Application:
    app = web.Application(
        middlewares=[
            access_log_middleware,
            cors_middleware,
            api_key_middleware(lambda: ctx.config.api_keys, exempt=is_public_route),
            go_mux_errors_middleware,
        ],
        client_max_size=ctx.body_limit,
    )
    app[CTX] = ctx
    for module in (
        ops_routes, config_reload, model_routes, listing, log_routes, events_route, log_api,
        static_routes, *extra_routes,
    ):  # fmt: skip
        module.register(app.router)  # type: ignore[attr-defined]
    if ctx.projections is not None:
        for projection_routes in (http_activity, http_queue, http_metrics, http_history):
            projection_routes.register_routes(app.router, ctx.projections)
    return app


def publish_committed(ctx: AppContext, envelopes: Sequence[Envelope]) -> None:
    """Push each committed batch to `/api/events`: the event tail, and model status on change."""
    hub = ctx.hub
    if not hub.connections:
        return
    status_changed = False
    for envelope in envelopes:
        hub.publish("logEvent", log_api.envelope_json(envelope))
        status_changed = status_changed or isinstance(envelope.body, STATUS_CHANGING)
    if status_changed:
        hub.publish("modelStatus", listing.model_status(ctx))
