"""A forward ended from outside (its upstream declared hung), against real loopback servers.

The upstreams here go silent the way a stopped process does; the test then resolves the abort
that `HungUpstreams` would resolve. The client gets what it can read: a 504 envelope when nothing
was sent yet, an SSE error frame closing a stream, a cut connection for a half-sent plain body.
Either way the upstream request is dropped at once.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web

from llamaswap_es.web.forwarder import ForwardResult, forward, upstream_session
from llamaswap_es.web.hung_upstreams import HungUpstreams, hung_message
from tests.web.servers import app_with, serving

WAIT_S = 5.0
MESSAGE = hung_message("m1", None)


class Silent:
    """Upstream routes that send a start (or nothing) and then go silent until dropped."""

    def __init__(self) -> None:
        self.reached = asyncio.Event()
        self.dropped = asyncio.Event()

    def app(self) -> web.Application:
        async def silence(request: web.Request, first: bytes, content_type: str | None):
            response = None
            if content_type is not None:
                response = web.StreamResponse(headers={"Content-Type": content_type})
                await response.prepare(request)
                await response.write(first)
            self.reached.set()
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                self.dropped.set()
                raise
            return response

        async def sse(request: web.Request) -> web.StreamResponse:
            return await silence(request, b'data: {"x": 1}\n\n', "text/event-stream")

        async def plain(request: web.Request) -> web.StreamResponse:
            return await silence(request, b"partial ", "text/plain")

        async def nothing(request: web.Request) -> web.StreamResponse:
            return await silence(request, b"", None)

        return app_with(
            [web.post("/sse", sse), web.post("/plain", plain), web.post("/none", nothing)]
        )


@pytest.fixture
async def setup() -> AsyncIterator[tuple[str, Silent, HungUpstreams, asyncio.Queue]]:
    """(proxy URL, the silent upstream, the registry its forwards watch, their results)."""
    upstream = Silent()
    hung = HungUpstreams()
    results: asyncio.Queue[ForwardResult] = asyncio.Queue()
    session = upstream_session()

    async def handle(request: web.Request) -> web.StreamResponse:
        abort = hung.watch("m1", 1)
        try:
            forwarded = await forward(
                request, session, target, body=await request.read(),
                on_finished=results.put_nowait, abort=abort,
            )  # fmt: skip
        finally:
            hung.release("m1", 1, abort)
        return forwarded.response

    async with serving(upstream.app(), handler_cancellation=True) as up:
        target = str(up.base)
        async with session, serving(app_with([web.post("/{tail:.*}", handle)])) as proxy:
            yield str(proxy.base), upstream, hung, results


async def test_a_request_still_waiting_for_headers_gets_a_504_naming_the_model(setup, http):
    url, upstream, hung, results = setup
    task = asyncio.create_task(http.post(f"{url}/none", data=b"{}"))
    await asyncio.wait_for(upstream.reached.wait(), WAIT_S)
    hung.declare("m1", 1, MESSAGE)
    response = await asyncio.wait_for(task, WAIT_S)
    assert response.status == 504
    error = (await response.json())["error"]
    assert (error["code"], error["message"], error["type"]) == (
        "upstream_hung",
        MESSAGE,
        "server_error",
    )
    await asyncio.wait_for(upstream.dropped.wait(), WAIT_S)
    result = await asyncio.wait_for(results.get(), WAIT_S)
    assert (result.status, result.error, result.unreachable) == (504, MESSAGE, False)


async def test_a_started_stream_ends_with_an_sse_error_frame(setup, http):
    url, upstream, hung, results = setup
    async with http.post(f"{url}/sse", data=b"{}") as response:
        assert response.status == 200
        first = await asyncio.wait_for(response.content.readuntil(b"\n\n"), WAIT_S)
        hung.declare("m1", 1, MESSAGE)
        rest = await asyncio.wait_for(response.content.read(), WAIT_S)
    assert first == b'data: {"x": 1}\n\n'
    assert rest.startswith(b"event: error\ndata: ") and rest.endswith(b"\n\n")
    error = json.loads(rest.split(b"data: ", 1)[1])["error"]
    assert (error["code"], error["message"]) == ("upstream_hung", MESSAGE)
    await asyncio.wait_for(upstream.dropped.wait(), WAIT_S)
    result = await asyncio.wait_for(results.get(), WAIT_S)
    assert result.error == MESSAGE and not result.client_disconnected


async def test_a_half_sent_plain_body_is_cut(setup, http):
    url, upstream, hung, results = setup
    async with http.post(f"{url}/plain", data=b"{}") as response:
        assert await asyncio.wait_for(response.content.readexactly(8), WAIT_S) == b"partial "
        hung.declare("m1", 1, MESSAGE)
        with pytest.raises(aiohttp.ClientPayloadError):
            await asyncio.wait_for(response.content.read(), WAIT_S)
    await asyncio.wait_for(upstream.dropped.wait(), WAIT_S)
    result = await asyncio.wait_for(results.get(), WAIT_S)
    assert result.error == MESSAGE


async def test_a_forward_that_registers_after_the_declaration_is_ended_at_once(setup, http):
    """Its dispatch was already on its way when the instance was declared hung."""
    url, _upstream, hung, results = setup
    hung.declare("m1", 1, MESSAGE)
    async with http.post(f"{url}/none", data=b"{}") as response:
        assert response.status == 504
    result = await asyncio.wait_for(results.get(), WAIT_S)
    assert result.status == 504
