"""Websocket tunnels whose upstream hangs, drops or closes, against real loopback servers.

A real aiohttp websocket client talks through `tunnel` to real upstreams: one that accepts the
connection and never answers the upgrade, one that stops answering mid-tunnel (it never reads
again, so it never answers a ping), one that drops its TCP connection without a close frame, one
that closes with its own code. The client always learns why, from a close frame (or, before the
upgrade, an HTTP error) that names the model; the tunnel's end records the same error.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

import aiohttp
import pytest
from aiohttp import WSCloseCode, WSMsgType, web

from llamaswap_es.web.forwarder import upstream_session
from llamaswap_es.web.hung_upstreams import HungUpstreams, hung_message
from llamaswap_es.web.websocket_tunnel import TunnelEnd, TunnelTimeouts, tunnel
from tests.web.servers import app_with, serving

WAIT_S = 5.0
TIMEOUTS = TunnelTimeouts(handshake_s=0.3, pong_within_s=0.2)


@dataclass
class Setup:
    proxy: str
    hang_port: int
    hung: HungUpstreams
    ends: asyncio.Queue[TunnelEnd]


async def _never_answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Accept, read whatever comes, answer nothing (a frozen process's kernel does the same)."""
    with contextlib.suppress(ConnectionError):
        while await reader.read(4096):
            pass
    writer.close()


async def _greeted(request: web.Request) -> web.WebSocketResponse:
    """The upgrade answered, a "hello" sent, and the client's "go" read."""
    ws = web.WebSocketResponse()
    await ws.prepare(request)
    await ws.send_str("hello")
    await ws.receive()
    return ws


def _upstream() -> web.Application:
    async def silent(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(autoping=True)
        await ws.prepare(request)
        await ws.send_str("hello")
        await asyncio.Event().wait()  # never reads again: no pong ever goes out
        return ws

    async def drop(request: web.Request) -> web.WebSocketResponse:
        ws = await _greeted(request)
        assert request.transport is not None
        request.transport.close()  # no close frame: the process died, say
        return ws

    async def bye(request: web.Request) -> web.WebSocketResponse:
        ws = await _greeted(request)
        await ws.close(code=4001, message=b"session over")
        return ws

    async def empty(request: web.Request) -> web.WebSocketResponse:
        ws = await _greeted(request)
        assert request.transport is not None
        request.transport.write(b"\x88\x00")  # a close frame with no code: a plain close
        await ws.receive()  # the tunnel's answering close
        request.transport.close()
        return ws

    async def echo(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        async for message in ws:
            await ws.send_str(f"echo: {message.data}")
        return ws

    return app_with(
        [web.get("/silent", silent), web.get("/drop", drop), web.get("/bye", bye),
         web.get("/empty", empty), web.get("/echo", echo)]
    )  # fmt: skip


@pytest.fixture
async def setup() -> AsyncIterator[Setup]:
    hung = HungUpstreams()
    ends: asyncio.Queue[TunnelEnd] = asyncio.Queue()
    session = upstream_session()
    hang_server = await asyncio.start_server(_never_answer, "127.0.0.1", 0)
    hang_port = hang_server.sockets[0].getsockname()[1]
    targets: dict[str, str] = {}

    async def handle(request: web.Request) -> web.StreamResponse:
        target = targets["hang"] if request.path == "/hang" else targets["up"]
        abort = hung.watch("m1", 1)
        end = TunnelEnd()
        try:
            return await tunnel(
                request, session, target, request.path_qs, model="m1", timeouts=TIMEOUTS,
                abort=abort, end=end,
            )  # fmt: skip
        finally:
            hung.release("m1", 1, abort)
            ends.put_nowait(end)

    targets["hang"] = f"http://127.0.0.1:{hang_port}"
    async with serving(_upstream(), handler_cancellation=True) as up:
        targets["up"] = str(up.base)
        async with session, serving(app_with([web.get("/{tail:.*}", handle)])) as proxy:
            yield Setup(str(proxy.base), hang_port, hung, ends)
    hang_server.close()
    await hang_server.wait_closed()


async def _closed_with(ws: aiohttp.ClientWebSocketResponse) -> tuple[int, str]:
    """Read until the tunnel closes; (close code, reason) of its close frame."""
    while True:
        message = await asyncio.wait_for(ws.receive(), WAIT_S)
        if message.type == WSMsgType.CLOSE:
            return message.data, message.extra
        assert message.type in (WSMsgType.TEXT, WSMsgType.BINARY), message


async def _end(setup: Setup) -> TunnelEnd:
    return await asyncio.wait_for(setup.ends.get(), WAIT_S)


async def test_an_upstream_that_never_answers_the_upgrade_gets_a_504_naming_the_model(
    setup: Setup, http: aiohttp.ClientSession
) -> None:
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await asyncio.wait_for(http.ws_connect(setup.proxy + "/hang"), WAIT_S)
    assert refused.value.status == 504
    end = await _end(setup)
    assert end.status == 504
    assert end.error is not None and 'model "m1"' in end.error
    assert "did not answer the websocket upgrade within 0.3 s" in end.error


async def test_an_upstream_that_stops_answering_mid_tunnel_closes_it_with_1011(
    setup: Setup, http: aiohttp.ClientSession
) -> None:
    async with http.ws_connect(setup.proxy + "/silent", autoclose=False) as ws:
        assert await asyncio.wait_for(ws.receive_str(), WAIT_S) == "hello"
        code, reason = await _closed_with(ws)
    assert code == WSCloseCode.INTERNAL_ERROR
    assert reason == 'model "m1": the upstream stopped answering (no pong within 0.2 s)'
    end = await _end(setup)
    assert (end.status, end.error) == (101, f"websocket tunnel ended: {reason}")


async def test_an_upstream_that_drops_the_connection_closes_it_with_1014(
    setup: Setup, http: aiohttp.ClientSession
) -> None:
    async with http.ws_connect(setup.proxy + "/drop", autoclose=False) as ws:
        assert await asyncio.wait_for(ws.receive_str(), WAIT_S) == "hello"
        await ws.send_str("go")
        code, reason = await _closed_with(ws)
    assert code == WSCloseCode.BAD_GATEWAY
    assert reason == 'model "m1": the upstream closed the connection without a close frame'
    assert (await _end(setup)).error == f"websocket tunnel ended: {reason}"


async def test_an_upstreams_own_close_code_and_reason_reach_the_client(
    setup: Setup, http: aiohttp.ClientSession
) -> None:
    async with http.ws_connect(setup.proxy + "/bye", autoclose=False) as ws:
        assert await asyncio.wait_for(ws.receive_str(), WAIT_S) == "hello"
        await ws.send_str("go")
        assert await _closed_with(ws) == (4001, "session over")
    end = await _end(setup)
    assert end.error == "the upstream closed the websocket with code 4001: session over"


async def test_an_upstreams_close_without_a_code_reaches_the_client_as_a_normal_close(
    setup: Setup, http: aiohttp.ClientSession
) -> None:
    """An empty close frame reads as code 0 in aiohttp, which may not be sent on: the client
    gets 1000, and nothing is recorded as an error."""
    async with http.ws_connect(setup.proxy + "/empty", autoclose=False) as ws:
        assert await asyncio.wait_for(ws.receive_str(), WAIT_S) == "hello"
        await ws.send_str("go")
        assert await _closed_with(ws) == (1000, "")
    assert (await _end(setup)).error is None


async def test_a_model_declared_hung_closes_its_tunnels_with_1011(
    setup: Setup, http: aiohttp.ClientSession
) -> None:
    async with http.ws_connect(setup.proxy + "/echo", autoclose=False) as ws:
        await ws.send_str("x")
        assert await asyncio.wait_for(ws.receive_str(), WAIT_S) == "echo: x"
        setup.hung.declare("m1", 1, hung_message("m1", None))
        code, reason = await _closed_with(ws)
    assert code == WSCloseCode.INTERNAL_ERROR
    assert reason == 'model "m1" stopped responding and was declared hung'
    assert (await _end(setup)).error == hung_message("m1", None)


async def test_a_client_that_closes_ends_the_tunnel_without_an_error(
    setup: Setup, http: aiohttp.ClientSession
) -> None:
    async with http.ws_connect(setup.proxy + "/echo") as ws:
        await ws.send_str("x")
        assert await asyncio.wait_for(ws.receive_str(), WAIT_S) == "echo: x"
    end = await _end(setup)
    assert (end.status, end.error) == (101, None)
