"""Log history and live log streams (spec/api.md §11)."""

from __future__ import annotations

import contextlib

from aiohttp import web

from llamaswap_es.web.context import CTX
from llamaswap_es.web.errors import error_response

INVALID_LOGGER = "invalid logger. Use 'proxy', 'upstream' or a model's ID"


def register(router: web.UrlDispatcher) -> None:
    router.add_get("/logs", history)
    router.add_get("/logs/stream", stream)
    router.add_get("/logs/stream/{name:.+}", stream)


async def history(request: web.Request) -> web.Response:
    if "text/html" in request.headers.get("Accept", ""):
        return web.Response(status=302, headers={"Location": "/ui/"})
    text = request.app[CTX].logs.history("combined")
    return web.Response(text=text, content_type="text/plain")


async def stream(request: web.Request) -> web.StreamResponse:
    ctx = request.app[CTX]
    name = request.match_info.get("name", "")
    if name in ("", "combined"):
        source = "combined"
    elif name in ("proxy", "upstream"):
        source = name
    else:
        model_id = ctx.resolver.local(name)
        if model_id is None:
            return error_response(request, 400, INVALID_LOGGER)
        source = model_id
    response = web.StreamResponse(
        headers={
            "Content-Type": "text/plain; charset=utf-8",
            "X-Content-Type-Options": "nosniff",
            "X-Accel-Buffering": "no",
        }
    )
    response.enable_chunked_encoding()
    await response.prepare(request)
    with_history = "no-history" not in request.query
    with contextlib.suppress(ConnectionError):
        async for text in ctx.logs.subscribe(source, history=with_history):
            await response.write(text.encode())
    return response
