"""The aiohttp application: llama-swap's middleware order and every route module.

Order (spec/api.md §2): access log → Host check (ours, admin routes) → CORS per route family →
API keys → Go-mux-style 404/405 and `RequestError` rendering → the route. Each route module has
one job and a `register(router)`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence

from aiohttp import web
from aiohttp.typedefs import Handler

from llamaswap_es.events.types import (
    ConfigApplied,
    Envelope,
    FootprintKnown,
    GpuMemorySampled,
    ProcessAdopted,
    ProcessExited,
    ProcessReady,
    ProcessStartFailed,
    ProcessStopped,
    StartProcess,
    StopProcess,
)
from llamaswap_es.redaction import redact_text
from llamaswap_es.runtime.log_context import clear_request
from llamaswap_es.web import (
    activity_routes,
    config_reload,
    events_route,
    history_routes,
    listing,
    log_api,
    log_routes,
    metrics_routes,
    model_routes,
    ops_routes,
    queue_routes,
    request_ids,
    static_routes,
)
from llamaswap_es.web.auth import api_key_middleware, is_public_route
from llamaswap_es.web.boundary import shown_text
from llamaswap_es.web.client_address import reported_client_ip
from llamaswap_es.web.context import CTX, AppContext
from llamaswap_es.web.cors import allow_listed_origin, cors_middleware
from llamaswap_es.web.errors import go_mux_errors_middleware
from llamaswap_es.web.host_check import host_check_middleware

access_log = logging.getLogger("llamaswap_es.access")

UNLOGGED_PREFIXES = ("/wol-health", "/api/performance", "/metrics")
STATUS_CHANGING = (
    StartProcess, StopProcess, ProcessReady, ProcessStartFailed, ProcessStopped, ProcessExited,
    ProcessAdopted, ConfigApplied, FootprintKnown, GpuMemorySampled,
)  # fmt: skip


def is_static_asset(path: str) -> bool:
    """A file the UI's page loads (a script, a style sheet, an icon): logged at debug, so a
    page load writes one line at info, not fifty."""
    if path == "/favicon.ico":
        return True
    return path.startswith("/ui/") and "." in path.rsplit("/", 1)[-1]


@web.middleware
async def access_log_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """llama-swap's access line, with any credential in the query string redacted. The target
    is logged as the client sent it (still percent-encoded, as Go's RequestURI is), so a `%0a`
    in a path cannot start a forged log line. A handler cancelled because its client left (once
    the answer was sent, while the request's end was still being recorded, say) still gets its
    line: with the status that went out, or 499 when nothing did."""
    started = time.monotonic()
    clear_request()  # a kept-alive connection's previous request is not this one
    try:
        response = await handler(request)
    except asyncio.CancelledError:
        _log_access(request, request.get(PREPARED), started, cancelled=True)
        raise
    _log_access(request, response, started)
    return response


PREPARED: web.RequestKey[web.StreamResponse] = web.RequestKey("prepared", web.StreamResponse)
"""The response whose headers went out (set as they go): what a cancelled handler's line shows."""


async def remember_prepared(request: web.Request, response: web.StreamResponse) -> None:
    request[PREPARED] = response


def _log_access(
    request: web.Request,
    response: web.StreamResponse | None,
    started: float,
    *,
    cancelled: bool = False,
) -> None:
    if request.path.startswith(UNLOGGED_PREFIXES):
        return
    status = response.status if response is not None else 499
    size = (response.body_length or response.content_length or 0) if response is not None else 0
    quiet = is_static_asset(request.path) and status < 400
    target = shown_text(redact_text(request.raw_path))
    access_log.log(
        logging.DEBUG if quiet else logging.INFO,
        'Request %s "%s %s HTTP/%d.%d" %d %d "%s" %.3fs%s',
        reported_client_ip(request), request.method, target, request.version.major,
        request.version.minor, status, size,
        shown_text(request.headers.get("User-Agent", "")), time.monotonic() - started,
        " (the client left)" if cancelled else "",
    )  # fmt: skip


def build_app(ctx: AppContext, *, extra_routes: Sequence[object] = ()) -> web.Application:
    app = web.Application(
        middlewares=[
            access_log_middleware,
            host_check_middleware(
                lambda: ctx.config.llamaswap_es.allowed_hosts, lambda: ctx.listen_host
            ),
            cors_middleware(lambda: ctx.config.llamaswap_es.allowed_origins),
            api_key_middleware(lambda: ctx.config.api_keys, exempt=is_public_route),
            go_mux_errors_middleware,
        ],
        client_max_size=ctx.body_limit,
    )
    app[CTX] = ctx
    app.on_response_prepare.append(allow_listed_origin)
    app.on_response_prepare.append(request_ids.add_header)
    app.on_response_prepare.append(remember_prepared)
    for module in (
        ops_routes, config_reload, model_routes, listing, log_routes, events_route, log_api,
        static_routes, *extra_routes,
    ):  # fmt: skip
        module.register(app.router)  # type: ignore[attr-defined]
    if ctx.projections is not None:
        for projection_routes in (activity_routes, queue_routes, metrics_routes, history_routes):
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
