"""The streaming reverse proxy against real aiohttp upstreams on loopback (spec/api.md §6.9)."""

from __future__ import annotations

import asyncio
import gzip
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import aiohttp
import openai
import pytest
from aiohttp import web

from llamaswap_es.web.forwarder import ForwardResult, forward, upstream_session
from tests.conftest import free_port
from tests.web.servers import app_with, serving

WAIT_S = 5.0


@dataclass
class Upstream:
    """Test upstream state: events the test and the upstream handlers synchronise on."""

    client_got_first: asyncio.Event = field(default_factory=asyncio.Event)
    cancelled: asyncio.Event = field(default_factory=asyncio.Event)
    reached: asyncio.Event = field(default_factory=asyncio.Event)
    seen: dict = field(default_factory=dict)


def chat_chunk(text: str) -> bytes:
    chunk = {
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "m1",
        "choices": [{"index": 0, "delta": {"content": text}, "finish_reason": None}],
    }
    return b"data: " + json.dumps(chunk).encode() + b"\n\n"


USAGE_CHUNK = (
    b'data: {"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"m1",'
    b'"choices":[],"usage":{"prompt_tokens":15,"completion_tokens":33,"total_tokens":48}}\n\n'
)


def upstream_app(state: Upstream) -> web.Application:
    async def sse_start(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        return response

    async def stream(request: web.Request) -> web.StreamResponse:
        response = await sse_start(request)
        await response.write(chat_chunk("first"))
        await asyncio.wait_for(state.client_got_first.wait(), WAIT_S)
        await response.write(chat_chunk("second"))
        await response.write(USAGE_CHUNK + b"data: [DONE]\n\n")
        return response

    async def hang(request: web.Request) -> web.StreamResponse:
        try:
            response = await sse_start(request)
            await response.write(chat_chunk("first"))
            await asyncio.Event().wait()  # until the proxy goes away
        except asyncio.CancelledError:
            state.cancelled.set()
            raise
        return response

    async def silent(request: web.Request) -> web.StreamResponse:
        state.reached.set()
        try:
            await asyncio.Event().wait()  # never sends headers
        except asyncio.CancelledError:
            state.cancelled.set()
            raise
        return web.Response()

    async def die(request: web.Request) -> web.StreamResponse:
        response = await sse_start(request)
        await response.write(chat_chunk("first"))
        assert request.transport is not None
        request.transport.close()  # the upstream process crashes mid-stream
        return response

    async def die_plain(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/plain"})
        await response.prepare(request)
        await response.write(b"partial ")
        assert request.transport is not None
        request.transport.close()
        return response

    async def echo(request: web.Request) -> web.Response:
        state.seen["headers"] = dict(request.headers)
        state.seen["body"] = await request.read()
        state.seen["path_qs"] = request.raw_path
        usage = {"prompt_tokens": 3, "completion_tokens": 5}
        return web.json_response({"ok": True, "usage": usage}, headers={"X-Upstream": "yes"})

    async def gzipped(request: web.Request) -> web.Response:
        body = gzip.compress(
            json.dumps({"usage": {"prompt_tokens": 7, "completion_tokens": 9}}).encode()
        )
        return web.Response(
            body=body, headers={"Content-Encoding": "gzip", "Content-Type": "application/json"}
        )

    async def failing(request: web.Request) -> web.Response:
        return web.json_response({"error": {"message": "model unavailable"}}, status=503)

    async def chat(request: web.Request) -> web.StreamResponse:
        response = await sse_start(request)
        for word in ("Hello", " there", "!"):
            await response.write(chat_chunk(word))
        await response.write(USAGE_CHUNK + b"data: [DONE]\n\n")
        return response

    return app_with(
        [
            web.post("/stream", stream),
            web.post("/hang", hang),
            web.post("/silent", silent),
            web.post("/die", die),
            web.post("/die-plain", die_plain),
            web.route("*", "/echo/{tail:.*}", echo),
            web.post("/gzipped", gzipped),
            web.post("/failing", failing),
            web.post("/v1/chat/completions", chat),
        ]
    )


@dataclass
class Proxy:
    url: str
    results: asyncio.Queue[ForwardResult]


@pytest.fixture
async def upstream_state() -> Upstream:
    return Upstream()


@pytest.fixture
async def upstream_url(upstream_state: Upstream) -> AsyncIterator[str]:
    async with serving(upstream_app(upstream_state), handler_cancellation=True) as server:
        yield str(server.base)


def proxy_app(target: str, results: asyncio.Queue[ForwardResult], session: aiohttp.ClientSession):
    async def handle(request: web.Request) -> web.StreamResponse:
        body = await request.read() if request.method == "POST" else None
        forwarded = await forward(
            request, session, target, body=body, metered_path=request.path,
            on_finished=results.put_nowait,
        )  # fmt: skip
        return forwarded.response

    return app_with([web.route("*", "/{tail:.*}", handle)])


@asynccontextmanager
async def proxy_server(
    upstream_url: str, handler_cancellation: bool = False
) -> AsyncIterator[Proxy]:
    """The forwarder in a handler; `handler_cancellation` as the server would be run."""
    results: asyncio.Queue[ForwardResult] = asyncio.Queue()
    session = upstream_session()
    app = proxy_app(upstream_url, results, session)
    async with session, serving(app, handler_cancellation=handler_cancellation) as server:
        yield Proxy(str(server.base), results)


@pytest.fixture
async def proxy(upstream_url: str) -> AsyncIterator[Proxy]:
    async with proxy_server(upstream_url) as served:
        yield served


async def next_result(proxy: Proxy) -> ForwardResult:
    return await asyncio.wait_for(proxy.results.get(), WAIT_S)


async def test_stream_arrives_chunk_by_chunk(http, proxy, upstream_state):
    async with http.post(f"{proxy.url}/stream", data=b"{}") as resp:
        assert resp.status == 200
        assert resp.headers["X-Accel-Buffering"] == "no"
        first = await asyncio.wait_for(resp.content.readuntil(b"\n\n"), WAIT_S)
        assert b'"first"' in first
        upstream_state.client_got_first.set()  # only now does the upstream send the rest
        rest = await asyncio.wait_for(resp.content.read(), WAIT_S)
    assert b'"second"' in rest and rest.endswith(b"data: [DONE]\n\n")
    result = await next_result(proxy)
    assert result.status == 200 and result.error is None
    assert result.bytes_out == len(first) + len(rest)
    assert result.ttfb_ms is not None and result.ttfb_ms <= result.duration_ms
    assert (result.metrics["input_tokens"], result.metrics["output_tokens"]) == (15, 33)


async def test_client_disconnect_cancels_the_upstream_request(http, upstream_url, upstream_state):
    # The server cancels the handler when its client leaves (web/server.py runs with
    # handler_cancellation=True); the forwarder relies on that, it does not poll the socket.
    async with proxy_server(upstream_url, handler_cancellation=True) as proxy:
        resp = await http.post(f"{proxy.url}/hang", data=b"{}")
        assert b'"first"' in await asyncio.wait_for(resp.content.readuntil(b"\n\n"), WAIT_S)
        resp.close()  # the client goes away mid-stream
        await asyncio.wait_for(upstream_state.cancelled.wait(), WAIT_S)
        result = await next_result(proxy)
    assert result.client_disconnected
    assert result.error is not None and "client disconnected" in result.error
    assert result.status == 200 and result.ttfb_ms is not None


async def test_client_disconnect_before_headers_cancels_the_upstream(
    http, upstream_url, upstream_state
):
    # The server cancels the handler when its client leaves (web/server.py runs with
    # handler_cancellation=True); the forwarder relies on that, it does not poll the socket.
    async with proxy_server(upstream_url, handler_cancellation=True) as proxy:
        task = asyncio.create_task(http.post(f"{proxy.url}/silent", data=b"{}"))
        await asyncio.wait_for(upstream_state.reached.wait(), WAIT_S)
        task.cancel()  # the client gives up while the model is still thinking
        with pytest.raises(asyncio.CancelledError):
            await task
        await asyncio.wait_for(upstream_state.cancelled.wait(), WAIT_S)
        result = await next_result(proxy)
    assert result.client_disconnected and result.ttfb_ms is None


async def test_upstream_crash_mid_sse_ends_with_an_error_event(http, proxy):
    async with http.post(f"{proxy.url}/die", data=b"{}") as resp:
        assert resp.status == 200
        body = await asyncio.wait_for(resp.content.read(), WAIT_S)
    assert b'"first"' in body
    last_event = body.rstrip(b"\n").split(b"\n\n")[-1]
    assert last_event.startswith(b"event: error\ndata: ")
    error = json.loads(last_event.split(b"data: ", 1)[1])["error"]
    assert "upstream connection lost" in error["message"]
    result = await next_result(proxy)
    assert result.error is not None and "upstream connection lost" in result.error


async def test_upstream_crash_mid_plain_body_cuts_the_client(http, proxy):
    async with http.post(f"{proxy.url}/die-plain", data=b"{}") as resp:
        assert resp.status == 200
        with pytest.raises(aiohttp.ClientPayloadError):
            await asyncio.wait_for(resp.content.read(), WAIT_S)
    result = await next_result(proxy)
    assert "upstream connection lost" in (result.error or "")


async def test_unreachable_upstream_is_502(http):
    results: asyncio.Queue[ForwardResult] = asyncio.Queue()
    dead = f"http://127.0.0.1:{free_port()}"
    async with (
        upstream_session() as session,
        serving(proxy_app(dead, results, session)) as server,
        http.post(server.make_url("/v1/chat/completions"), data=b"{}") as resp,
    ):
        assert resp.status == 502
        body = await resp.json()
    assert body["error"]["type"] == "server_error"
    assert "unreachable" in body["error"]["message"]
    result = results.get_nowait()
    assert result.status == 502 and "unreachable" in (result.error or "")


async def test_headers_path_and_body_are_forwarded(http, proxy, upstream_state):
    headers = {
        "Content-Type": "application/json",
        "X-Custom": "1",
        "Connection": "keep-alive, X-Hop",
        "X-Hop": "dropped",
        "Keep-Alive": "timeout=5",
        "X-Forwarded-For": "203.0.113.9",
    }
    url = f"{proxy.url}/echo/api/x%2Fy?a=1&b=%2F"
    async with http.post(
        aiohttp.client.URL(url, encoded=True), data=b'{"model":"m"}', headers=headers
    ) as resp:
        assert resp.status == 200
        assert resp.headers["X-Upstream"] == "yes"
    seen = upstream_state.seen
    assert seen["path_qs"] == "/echo/api/x%2Fy?a=1&b=%2F"
    assert seen["body"] == b'{"model":"m"}'
    sent = seen["headers"]
    assert sent["X-Custom"] == "1"
    assert "X-Hop" not in sent and "Keep-Alive" not in sent
    assert sent["X-Forwarded-For"] == "203.0.113.9, 127.0.0.1"
    assert sent["Host"] == proxy.url.removeprefix("http://")  # the client's Host is kept
    assert "User-Agent" in sent  # aiohttp client's own, passed through
    result = await next_result(proxy)
    assert (result.metrics["input_tokens"], result.metrics["output_tokens"]) == (3, 5)


async def test_no_user_agent_is_added(proxy, upstream_state):
    async with (
        aiohttp.ClientSession(skip_auto_headers=("User-Agent",)) as client,
        client.get(f"{proxy.url}/echo/x") as resp,
    ):
        assert resp.status == 200
    assert "User-Agent" not in upstream_state.seen["headers"]


async def test_gzip_body_passes_through_and_is_metered(http, proxy):
    async with http.post(
        f"{proxy.url}/gzipped", data=b"{}", headers={"Accept-Encoding": "gzip"}
    ) as resp:
        assert resp.headers["Content-Encoding"] == "gzip"
        assert json.loads(gzip.decompress(await resp.read()))["usage"]["prompt_tokens"] == 7
    result = await next_result(proxy)
    assert (result.metrics["input_tokens"], result.metrics["output_tokens"]) == (7, 9)


async def test_upstream_error_status_passes_through_with_its_message(http, proxy):
    async with http.post(f"{proxy.url}/failing", data=b"{}") as resp:
        assert resp.status == 503
        assert (await resp.json())["error"]["message"] == "model unavailable"
    result = await next_result(proxy)
    assert result.status == 503 and result.error == "model unavailable"
    assert result.metrics["input_tokens"] == 0


async def test_openai_sdk_streams_through_the_forwarder(proxy):
    client = openai.AsyncOpenAI(base_url=f"{proxy.url}/v1", api_key="unused", max_retries=0)
    stream = await client.chat.completions.create(
        model="m1",
        messages=[{"role": "user", "content": "hi"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    text = ""
    usage = None
    async for chunk in stream:
        if chunk.choices:
            text += chunk.choices[0].delta.content or ""
        if chunk.usage:
            usage = chunk.usage
    await client.close()
    assert text == "Hello there!"
    assert usage is not None and usage.completion_tokens == 33
    result = await next_result(proxy)
    assert result.metrics["output_tokens"] == 33


async def test_openai_sdk_raises_on_upstream_crash(upstream_url):
    results: asyncio.Queue[ForwardResult] = asyncio.Queue()

    async def handle(request: web.Request) -> web.StreamResponse:
        forwarded = await forward(
            request, session, upstream_url, path_qs="/die", body=await request.read()
        )
        results.put_nowait(forwarded.result)
        return forwarded.response

    async with (
        upstream_session() as session,
        serving(app_with([web.post("/v1/chat/completions", handle)])) as server,
    ):
        client = openai.AsyncOpenAI(
            base_url=str(server.make_url("/v1")), api_key="x", max_retries=0
        )
        stream = await client.chat.completions.create(
            model="m1", messages=[{"role": "user", "content": "hi"}], stream=True
        )
        with pytest.raises(openai.APIError, match="upstream connection lost"):
            async for _ in stream:
                pass
        await client.close()
