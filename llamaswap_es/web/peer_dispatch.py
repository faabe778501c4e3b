"""Serving a request for a peer's model (spec/api.md §6.12): no scheduling, no loading stream.

The peer's `apiKey` replaces the client's credentials, its own model name is restored in the
body by the caller, and forwarding errors become llama-swap's 502 "peer proxy error".
"""

from __future__ import annotations

from aiohttp import web
from multidict import CIMultiDict

from llamaswap_es.web.context import AppContext
from llamaswap_es.web.errors import error_response
from llamaswap_es.web.forwarder import ForwardTimeouts, forward


async def serve_peer(
    request: web.Request,
    ctx: AppContext,
    fqn: str,
    requested: str,
    body: bytes | None,
    path_qs: str,
) -> web.StreamResponse:
    """Forward to a peer: no scheduling, the peer's key injected, its model name restored."""
    peer_id, _ = ctx.resolver.fqns[fqn]
    peer = ctx.config.peers[peer_id]
    headers = CIMultiDict(request.headers)
    for name in ("X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Proto", "Host"):
        headers.popall(name, None)
    if peer.api_key:
        headers["Authorization"] = f"Bearer {peer.api_key}"
        headers["x-api-key"] = peer.api_key
    if body is not None:
        headers.popall("Content-Length", None)
    base = peer.proxy.rstrip("/")
    timeouts = ForwardTimeouts(
        connect_s=float(peer.timeouts.connect) or None,
        response_header_s=float(peer.timeouts.response_header) or None,
    )
    forwarded = await forward(
        request,
        ctx.session,
        base,
        path_qs=path_qs,
        body=body,
        headers=headers,
        timeouts=timeouts,
        keep_host=False,
        add_forwarded_for=False,
    )
    if (
        forwarded.result.error
        and forwarded.result.status == 502
        and not forwarded.response.prepared
    ):
        return error_response(request, 502, f"peer proxy error: {forwarded.result.error}")
    return forwarded.response
