"""The sendLoadingState preamble and its fence (spec/api.md §6.11; core.md §2.2, §7 #804)."""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import aiohttp
import pytest
from aiohttp import web

from llamaswap_es.web.forwarder import forward, upstream_session
from llamaswap_es.web.loading_stream import REMARKS, RULE, LoadingStream, loading_frame
from tests.web.servers import app_with, serving

WAIT_S = 5.0


@dataclass
class Control:
    """What the test and the server-side handler synchronise on."""

    show_position: asyncio.Event = field(default_factory=asyncio.Event)
    release: asyncio.Event = field(default_factory=asyncio.Event)
    stopped: asyncio.Event = field(default_factory=asyncio.Event)
    stream: LoadingStream | None = None
    frames_at_stop: int = -1


def loading_app(control: Control, upstream_url: str | None = None) -> web.Application:
    async def handle(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        stream = LoadingStream(response, "m1", tick_ms=20, type_interval_ms=0, rng=random.Random(7))
        control.stream = stream
        await stream.start(request)
        await asyncio.wait_for(control.show_position.wait(), WAIT_S)
        stream.set_position(3)
        await asyncio.wait_for(control.release.wait(), WAIT_S)
        await stream.stop()
        control.frames_at_stop = stream.frames_written
        control.stopped.set()
        if upstream_url is None:
            await response.write(b"data: UPSTREAM\n\n")
            return response
        async with upstream_session() as session:
            forwarded = await forward(request, session, upstream_url, response=response, body=b"{}")
        return forwarded.response

    return app_with([web.post("/v1/chat/completions", handle)])


async def read_frames(resp: aiohttp.ClientResponse) -> AsyncIterator[bytes]:
    while True:
        frame = await asyncio.wait_for(resp.content.readuntil(b"\n\n"), WAIT_S)
        if not frame:
            return
        yield frame


def text_of(frame: bytes) -> str | None:
    """The reasoning text of a loading frame, None for any other frame."""
    if not frame.startswith(b"data: {"):
        return None
    chunk = json.loads(frame[6:])
    return chunk["choices"][0]["delta"].get("reasoning_content")


async def test_frames_banner_position_dots_done_then_upstream(http):
    control = Control()
    async with (
        serving(loading_app(control)) as server,
        http.post(server.make_url("/v1/chat/completions"), data=b"{}") as resp,
    ):
        assert resp.status == 200
        assert resp.headers["Content-Type"] == "text/event-stream"
        assert resp.headers["Cache-Control"] == "no-cache"
        texts: list[str] = []
        after: list[bytes] = []
        async for frame in read_frames(resp):
            text = text_of(frame)
            if text is None:
                after.append(frame)
                continue
            texts.append(text)
            joined = "".join(texts)
            if "llama-swap loading model: m1\n" in joined:
                control.show_position.set()
            if "Queue position: #3" in joined and joined.endswith("."):
                control.release.set()
        rest = await resp.content.read()
    joined = "".join(texts)
    assert joined.startswith(f"{RULE}\nllama-swap loading model: m1\n")
    assert any(remark in joined for remark in REMARKS)  # the first tick brings a remark
    assert "\nQueue position: #3 " in joined
    assert all(len(t) <= 5 for t in texts[: len(texts) - 4])  # typed in 5-character pieces
    assert texts[-4] == "\n" and texts[-3].startswith("Done! (") and texts[-3].endswith("s)\n")
    assert texts[-2:] == [f"{RULE}\n", " \n"]
    assert after == [b"data: UPSTREAM\n\n"] and rest == b""  # nothing after the upstream bytes


async def test_no_loading_frame_after_stop(http):
    control = Control()
    async with (
        serving(loading_app(control)) as server,
        http.post(server.make_url("/v1/chat/completions"), data=b"{}") as resp,
    ):
        control.show_position.set()
        control.release.set()
        await asyncio.wait_for(control.stopped.wait(), WAIT_S)
        body = await asyncio.wait_for(resp.content.read(), WAIT_S)
    stream = control.stream
    assert stream is not None and stream.fenced
    # A write attempted after the fence (a late tick) is dropped.
    await stream._write("late")
    assert stream.frames_written == control.frames_at_stop
    assert loading_frame("late") not in body
    assert body.endswith(b"data: UPSTREAM\n\n")
    assert body.count(b"Done! (") == 1


async def test_client_gone_stop_writes_nothing_and_returns(http):
    control = Control()
    async with serving(loading_app(control)) as server:
        resp = await http.post(server.make_url("/v1/chat/completions"), data=b"{}")
        await asyncio.wait_for(resp.content.readuntil(b"\n\n"), WAIT_S)
        resp.close()
        control.show_position.set()
        control.release.set()
        await asyncio.wait_for(control.stopped.wait(), WAIT_S)
    stream = control.stream
    assert stream is not None and stream.fenced
    assert stream.frames_written == control.frames_at_stop


async def test_stop_twice_and_stop_before_any_tick():
    class Transport:
        def is_closing(self) -> bool:
            return False

    frames: list[bytes] = []

    class Response(web.StreamResponse):
        async def prepare(self, request):  # type: ignore[override]
            return None

        async def write(self, data):  # type: ignore[override]
            frames.append(bytes(data))

    class Request:
        transport = Transport()

    stream = LoadingStream(Response(), "m1", tick_ms=10_000, type_interval_ms=0)
    await stream.start(Request())  # type: ignore[arg-type]
    await stream.stop()
    count = len(frames)
    await stream.stop()
    assert len(frames) == count
    assert frames[-3].startswith(loading_frame("Done! (")[:-10])


@pytest.fixture
async def sse_upstream() -> AsyncIterator[str]:
    async def chat(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(status=201, headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        await response.write(b'data: {"choices":[{"delta":{"content":"hi"}}]}\n\ndata: [DONE]\n\n')
        return response

    async with serving(app_with([web.post("/v1/chat/completions", chat)])) as server:
        yield str(server.base)


async def test_upstream_body_is_appended_after_the_preamble(http, sse_upstream):
    control = Control()
    control.show_position.set()
    control.release.set()
    async with (
        serving(loading_app(control, sse_upstream)) as server,
        http.post(server.make_url("/v1/chat/completions"), data=b"{}") as resp,
    ):
        assert resp.status == 200  # the upstream's 201 is lost, as in llama-swap
        body = await asyncio.wait_for(resp.content.read(), WAIT_S)
    preamble, _, tail = body.partition(loading_frame(" \n"))
    assert b"Done! (" in preamble
    assert tail == b'data: {"choices":[{"delta":{"content":"hi"}}]}\n\ndata: [DONE]\n\n'
