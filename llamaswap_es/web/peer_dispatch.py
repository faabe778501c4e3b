"""Serving a request for a peer's model (spec/api.md §6.12): no scheduling, no loading stream.

The peer's `apiKey` replaces the client's credentials, its own model name is restored in the
body by the caller, and forwarding errors become llama-swap's 502 "peer proxy error".

The scheduler never sees a peer request, but the history does (llama-swap records them, §14):
the request is in the in-flight table while it runs, its capture is kept like a local one, and
when it ends one `PeerRequestFinished` goes to the run loop's inbox with the other inputs (same
group commit, no transaction of its own), so the activity table and the per-model metrics count
it under the name the client asked for. The reducer ignores that event.
"""

from __future__ import annotations

import asyncio
from urllib.parse import urlsplit

from aiohttp import web
from multidict import CIMultiDict

from llamaswap_es.config.models import PeerConfig
from llamaswap_es.web import request_ids
from llamaswap_es.web.client_address import reported_client_ip
from llamaswap_es.web.context import AppContext
from llamaswap_es.web.dispatch import (
    DOOR_REFUSALS,
    cancel_callback,
    meterable_encodings,
    refused_response,
)
from llamaswap_es.web.errors import error_response
from llamaswap_es.web.forwarder import ForwardTimeouts, forward
from llamaswap_es.web.request_outcome import PEER_PROXY_ERROR, RequestOutcome, peer_record


async def serve_peer(
    request: web.Request,
    ctx: AppContext,
    fqn: str,
    requested: str,
    body: bytes | None,
    path_qs: str,
    *,
    stream: bool = False,
    metadata: dict[str, str] | None = None,
    request_id: str | None = None,
) -> web.StreamResponse:
    """Forward to a peer: no scheduling, the peer's key injected, its model name restored.

    `requested` is the name the client asked for (the activity row's model); `stream` is whether
    the client asked for a stream; `metadata` goes to the activity row as for a local request
    (a selector, a session id); `request_id` is the id a selector's choice was made under (None:
    a new one), so the choice and the request's record share it.
    """
    peer_id, _ = ctx.resolver.fqns[fqn]
    peer = ctx.config.peers[peer_id]
    loop = ctx.service.door
    assert loop is not None
    request_id = request_id or ctx.ids.new_id()
    request_ids.assign(request, request_id, requested)
    try:  # the record must fit in the log's inbox, as a local request's events must
        loop.check_capacity(f"peer request {request_id} for model {requested!r}")
    except DOOR_REFUSALS as exc:
        return refused_response(request, ctx, exc)
    received_ms = ctx.service.clock.now_ms()
    path = urlsplit(path_qs).path
    metered = request.method == "POST"
    headers = _peer_headers(request, peer, body)
    if metered and "Accept-Encoding" in headers:  # as llama-swap does on every metered POST
        headers["Accept-Encoding"] = meterable_encodings(headers["Accept-Encoding"])

    entry = ctx.inflight.begin(
        request_id=request_id,
        model=requested,
        path=request.path,
        method=request.method,
        headers=request.headers,
        remote_ip=reported_client_ip(request),
        cancel=cancel_callback(asyncio.current_task()),
        metadata=metadata,
        phase="running",
    )
    record = peer_record(
        request_id=request_id,
        model=requested,
        peer=peer_id,
        path=path,
        method=request.method,
        stream=stream,
        received_ms=received_ms,
        metadata=metadata,
    )
    outcome = RequestOutcome(ctx, entry, record)
    if metered:  # the headers the peer receives: credentials are redacted by the recorder
        outcome.keep_capture(request_id, path, headers, body)
    try:
        forwarded = await forward(
            request,
            ctx.session,
            peer.proxy.rstrip("/"),
            path_qs=path_qs,
            body=body,
            headers=headers,
            timeouts=ForwardTimeouts(
                connect_s=float(peer.timeouts.connect) or None,
                response_header_s=float(peer.timeouts.response_header) or None,
            ),
            metered_path=path,
            keep_host=False,
            add_forwarded_for=False,
            on_finished=outcome.finish,
            tap=outcome.tap,
        )
    finally:
        outcome.finish_unreported()  # every peer request is recorded once, whatever happened
    if (
        forwarded.result.error
        and forwarded.result.status == 502
        and not forwarded.response.prepared
    ):
        return error_response(request, 502, f"{PEER_PROXY_ERROR}: {forwarded.result.error}")
    return forwarded.response


def _peer_headers(request: web.Request, peer: PeerConfig, body: bytes | None) -> CIMultiDict[str]:
    """The client's headers minus forwarding ones, with the peer's key when it has one."""
    headers = CIMultiDict(request.headers)
    for name in ("X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Proto", "Host"):
        headers.popall(name, None)
    if peer.api_key:
        headers["Authorization"] = f"Bearer {peer.api_key}"
        headers["x-api-key"] = peer.api_key
    if body is not None:
        headers.popall("Content-Length", None)
    return headers
