"""Request ids both ways: ours on every proxied answer, the client's own kept beside it.

Every request that reaches a model gets our id (the key of its events, the activity row, the
story page, `replay explain`); the answer carries it in `X-Request-ID` and the proxy log's
lines about it name it, so a user with a slow call in hand can find it in the history. A
client that sends its own `X-Request-ID` (an SDK's, a gateway's trace id) has it stored in the
request's metadata as `client_request_id`, searchable like ours (`/api/metrics/activity?
request_id=…`, the Activity page's filter, `replay timeline --request`).

The client's value is kept only when it is printable ASCII of at most 128 characters (after
trimming spaces); anything else is ignored, never echoed, so no header can smuggle control
characters into a log line or an event.
"""

from __future__ import annotations

import logging

from aiohttp import web

from llamaswap_es.runtime.log_context import bind_request

log = logging.getLogger("llamaswap_es.web.request_ids")

HEADER = "X-Request-ID"
MAX_CLIENT_ID_CHARS = 128
CLIENT_ID_KEY = "client_request_id"
"""Its name in the request's metadata (RequestReceived.metadata, the activity row's metadata)."""
_REQUEST_ID = "llamaswap_es.request_id"


def client_request_id(request: web.BaseRequest) -> str | None:
    """The client's own `X-Request-ID` when it is printable ASCII of at most 128 characters."""
    raw = request.headers.get(HEADER)
    if raw is None:
        return None
    value = raw.strip()
    if not value or len(value) > MAX_CLIENT_ID_CHARS or not all(" " <= c <= "~" for c in value):
        log.debug("ignoring a client %s that is not printable ASCII of <= %d characters",
                  HEADER, MAX_CLIENT_ID_CHARS)  # fmt: skip
        return None
    return value


def client_metadata(request: web.BaseRequest) -> dict[str, str]:
    """`{"client_request_id": …}` when the client sent a usable one, else empty."""
    value = client_request_id(request)
    return {CLIENT_ID_KEY: value} if value is not None else {}


def assign(request: web.BaseRequest, request_id: str, model: str | None = None) -> None:
    """`request_id` is the id of this request's current attempt: its answer will carry it, and
    log lines written while serving it name it (and the model)."""
    request[_REQUEST_ID] = request_id
    bind_request(request_id, model)


def assigned(request: web.BaseRequest) -> str | None:
    return request.get(_REQUEST_ID)


async def add_header(request: web.BaseRequest, response: web.StreamResponse) -> None:
    """`on_response_prepare`: put our id on the answer of every request that was given one
    (streamed, loading-state, error and proxied answers alike)."""
    request_id = assigned(request)
    if request_id is not None:
        response.headers[HEADER] = request_id
