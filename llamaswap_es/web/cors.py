"""CORS as llama-swap does it (spec/api.md §4): every preflight answered, nothing else touched.

Browsers send `OPTIONS` before a cross-origin call with custom headers; llama-swap answers any such
request itself, for any path and without a key, and adds no CORS headers to other responses
(except `/v1/models`, which echoes the Origin: see `echo_origin`).
"""

from __future__ import annotations

import re

from aiohttp import web

ALLOW_METHODS = "GET, POST, PUT, PATCH, DELETE, OPTIONS"
DEFAULT_ALLOW_HEADERS = "Content-Type, Authorization, Accept, X-Requested-With"
MAX_AGE_S = 86400

# An HTTP token (RFC 9110 §5.6.2): the only characters a header name may contain.
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")


def allowed_request_headers(requested: str | None) -> str:
    """The `Access-Control-Allow-Headers` value for a preflight's `Access-Control-Request-Headers`.

    Items that are not valid header names are dropped rather than echoed, so a crafted request
    cannot inject text into our response headers.
    """
    if requested is None:
        return DEFAULT_ALLOW_HEADERS
    names = (item.strip() for item in requested.split(","))
    return ", ".join(name for name in names if _TOKEN.fullmatch(name))


def preflight_response(request: web.BaseRequest) -> web.Response:
    """204 with the permissive CORS headers llama-swap sends to every preflight."""
    return web.Response(
        status=204,
        headers={
            "Access-Control-Allow-Origin": "*",
            "Access-Control-Allow-Methods": ALLOW_METHODS,
            "Access-Control-Allow-Headers": allowed_request_headers(
                request.headers.get("Access-Control-Request-Headers")
            ),
            "Access-Control-Max-Age": str(MAX_AGE_S),
        },
    )


@web.middleware
async def cors_middleware(request: web.Request, handler: web.RequestHandler) -> web.StreamResponse:
    """Answer every `OPTIONS` request with the preflight; pass everything else through.

    It must be the outermost middleware after access logging, before auth: preflights carry no
    credentials, and it answers even for paths no route knows.
    """
    if request.method == "OPTIONS":
        return preflight_response(request)
    return await handler(request)


def echo_origin(request: web.BaseRequest, response: web.StreamResponse) -> None:
    """Copy the request's Origin into `Access-Control-Allow-Origin` (the model listing does)."""
    origin = request.headers.get("Origin")
    if origin:
        response.headers["Access-Control-Allow-Origin"] = origin
