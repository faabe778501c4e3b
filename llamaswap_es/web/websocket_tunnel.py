"""Websocket upgrades through the proxy (spec/api.md §6.9, §6.13): 101, then frames both ways.

A websocket request to a model is scheduled like any request (it can start the model) unless the
model has `compat.ignoreWebsockets`, in which case it bypasses the scheduler and is served only
while the model is ready. Either way the tunnel copies frames until one side closes.
"""

from __future__ import annotations

import asyncio
import contextlib

import aiohttp
from aiohttp import web
from yarl import URL

TUNNEL_HEADERS = ("Authorization", "Cookie", "Origin", "User-Agent", "X-Api-Key")


def is_websocket_upgrade(request: web.BaseRequest) -> bool:
    """`Connection` has an `upgrade` token and `Upgrade` a `websocket` one (any case, lists)."""

    def tokens(name: str) -> set[str]:
        return {
            t.strip().lower()
            for value in request.headers.getall(name, [])
            for t in value.split(",")
        }

    return "upgrade" in tokens("Connection") and "websocket" in tokens("Upgrade")


async def tunnel(
    request: web.Request, session: aiohttp.ClientSession, upstream_base: str, path_qs: str
) -> web.StreamResponse:
    """Open the upstream websocket first (a refusal becomes a 502), then accept the client's."""
    url = URL(upstream_base.rstrip("/").replace("http", "ws", 1) + path_qs, encoded=True)
    protocols = [
        p.strip() for p in request.headers.get("Sec-WebSocket-Protocol", "").split(",") if p.strip()
    ]
    headers = {h: request.headers[h] for h in TUNNEL_HEADERS if h in request.headers}
    try:
        upstream = await session.ws_connect(
            url,
            protocols=protocols,
            headers=headers,
            autoping=True,
            timeout=aiohttp.ClientWSTimeout(ws_close=30),
        )
    except (aiohttp.ClientError, TimeoutError) as exc:
        from llamaswap_es.web.errors import error_response

        return error_response(request, 502, f"upstream websocket {url} failed: {exc}")
    client = web.WebSocketResponse(protocols=[upstream.protocol] if upstream.protocol else ())
    await client.prepare(request)
    try:
        pumps = [
            asyncio.create_task(_pump(client, upstream)),
            asyncio.create_task(_pump(upstream, client)),
        ]
        await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
        for task in pumps:
            task.cancel()
        await asyncio.gather(*pumps, return_exceptions=True)
    finally:
        with contextlib.suppress(Exception):
            await upstream.close()
        with contextlib.suppress(Exception):
            await client.close()
    return client


async def _pump(
    source: web.WebSocketResponse | aiohttp.ClientWebSocketResponse,
    target: web.WebSocketResponse | aiohttp.ClientWebSocketResponse,
) -> None:
    async for message in source:
        if message.type == aiohttp.WSMsgType.TEXT:
            await target.send_str(message.data)
        elif message.type == aiohttp.WSMsgType.BINARY:
            await target.send_bytes(message.data)
        else:
            break
