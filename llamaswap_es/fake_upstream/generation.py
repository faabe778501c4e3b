"""The text-generating routes: OpenAI chat and completions, llama-server's /completion and /infill,
and Anthropic's /v1/messages, each streaming (SSE) or not, with `usage` and `timings`.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web

from llamaswap_es.fake_upstream.settings import (
    EXIT_BEFORE_ANSWER_CODE,
    EXIT_DURING_REQUEST_CODE,
    FakeState,
)
from llamaswap_es.fake_upstream.text import (
    answer_text,
    count_tokens,
    timings,
    token_piece,
    usage,
)

routes = web.RouteTableDef()
STATE: web.AppKey[FakeState] = web.AppKey("llamaswap_es.fake_upstream.state", FakeState)


async def read_json(request: web.Request) -> dict[str, Any]:
    """The JSON body, or a llama-server style 400 naming the problem."""
    try:
        body = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise bad_request(f"invalid JSON body: {exc}") from None
    except RecursionError:  # deeper than Python reads: a 400 like any unreadable body, not a 500
        raise bad_request("invalid JSON body: nested too deeply") from None
    if not isinstance(body, dict):
        raise bad_request("the JSON body must be an object")
    return body


def bad_request(message: str) -> web.HTTPBadRequest:
    body = {"error": {"code": 400, "message": message, "type": "invalid_request_error"}}
    return web.HTTPBadRequest(text=json.dumps(body), content_type="application/json")


class Generation:
    """One request's answer: how many tokens, their pacing, and the crash switch."""

    def __init__(self, request: web.Request, body: dict[str, Any], prompt: Any) -> None:
        self.state: FakeState = request.app[STATE]
        settings = self.state.settings
        self._exit_before_answer_if(settings.exit_before_answer_if)
        self._drop_connection_if(request, settings.drop_connection_if)
        limit = next(
            (
                body[k]
                for k in ("max_tokens", "max_completion_tokens", "n_predict")
                if isinstance(body.get(k), int) and body[k] >= 0
            ),
            None,
        )
        self.total = settings.tokens if limit is None else min(limit, settings.tokens)
        self.finish = "length" if limit is not None and limit < settings.tokens else "stop"
        self.prompt_n = count_tokens(prompt)
        self.stream = bool(body.get("stream", False))
        self.id = self.state.next_id()
        self.created = int(time.time())
        self.model = settings.model_name

    @property
    def text(self) -> str:
        return answer_text(self.total)

    def timings(self) -> dict[str, Any]:
        return timings(self.prompt_n, self.total, self.state.settings.token_delay_ms)

    def usage(self) -> dict[str, int]:
        return usage(self.prompt_n, self.total)

    async def pieces(self) -> AsyncIterator[str]:
        """The answer token by token, paced by --token-delay-ms; may crash half-way."""
        delay_s = self.state.settings.token_delay_ms / 1000
        for i in range(self.total):
            if self.state.settings.exit_during_request and i == self.total // 2:
                self.crash()
            if delay_s:
                await asyncio.sleep(delay_s)
            yield token_piece(i, self.total)

    def _exit_before_answer_if(self, marker: str | None) -> None:
        if not _take(marker):
            return
        self.state.log(f"exiting before answering (--exit-before-answer-if {marker})")
        os._exit(EXIT_BEFORE_ANSWER_CODE)

    def _drop_connection_if(self, request: web.Request, marker: str | None) -> None:
        """Close this request's connection unanswered and go on serving (a one-shot switch)."""
        if not _take(marker):
            return
        self.state.log(f"dropping a connection unanswered (--drop-connection-if {marker})")
        if request.transport is not None:
            request.transport.close()
        raise ConnectionResetError("connection dropped on purpose")

    def crash(self) -> None:
        self.state.log(f"exiting during a request (--exit-during-request), id={self.id}")
        os._exit(EXIT_DURING_REQUEST_CODE)

    async def whole(self) -> str:
        """The answer for a non-streaming request (same pacing and crash switch)."""
        return "".join([piece async for piece in self.pieces()])


async def open_sse(request: web.Request) -> web.StreamResponse:
    resp = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream",
            "Cache-Control": "no-cache",
            "Connection": "keep-alive",
        }
    )
    await resp.prepare(request)
    return resp


async def send(resp: web.StreamResponse, data: Any, event: str | None = None) -> None:
    payload = data if isinstance(data, str) else json.dumps(data, separators=(",", ":"))
    head = f"event: {event}\n" if event else ""
    await resp.write(f"{head}data: {payload}\n\n".encode())


@routes.post("/v1/chat/completions")
@routes.post("/chat/completions")
async def chat_completions(request: web.Request) -> web.StreamResponse:
    body = await read_json(request)
    gen = Generation(request, body, body.get("messages", []))
    base = {"id": f"chatcmpl-{gen.id}", "created": gen.created, "model": gen.model}
    base["system_fingerprint"] = "fake-upstream"
    if not gen.stream:
        text = await gen.whole()
        message = {"role": "assistant", "content": text}
        choice = {"index": 0, "message": message, "finish_reason": gen.finish}
        return web.json_response(
            {
                **base,
                "object": "chat.completion",
                "choices": [choice],
                "usage": gen.usage(),
                "timings": gen.timings(),
            }
        )
    resp = await open_sse(request)
    chunk = {**base, "object": "chat.completion.chunk"}
    first = {"index": 0, "delta": {"role": "assistant", "content": None}, "finish_reason": None}
    await send(resp, {**chunk, "choices": [first]})
    async for piece in gen.pieces():
        delta = {"index": 0, "delta": {"content": piece}, "finish_reason": None}
        await send(resp, {**chunk, "choices": [delta]})
    last = {"index": 0, "delta": {}, "finish_reason": gen.finish}
    await send(resp, {**chunk, "choices": [last], "usage": gen.usage(), "timings": gen.timings()})
    await send(resp, "[DONE]")
    return resp


@routes.post("/v1/completions")
@routes.post("/completions")
async def completions(request: web.Request) -> web.StreamResponse:
    body = await read_json(request)
    gen = Generation(request, body, body.get("prompt", ""))
    base = {
        "id": f"cmpl-{gen.id}",
        "created": gen.created,
        "model": gen.model,
        "object": "text_completion",
    }
    if not gen.stream:
        text = await gen.whole()
        choice = {"index": 0, "text": text, "logprobs": None, "finish_reason": gen.finish}
        return web.json_response(
            {**base, "choices": [choice], "usage": gen.usage(), "timings": gen.timings()}
        )
    resp = await open_sse(request)
    async for piece in gen.pieces():
        choice = {"index": 0, "text": piece, "logprobs": None, "finish_reason": None}
        await send(resp, {**base, "choices": [choice]})
    last = {"index": 0, "text": "", "logprobs": None, "finish_reason": gen.finish}
    await send(resp, {**base, "choices": [last], "usage": gen.usage(), "timings": gen.timings()})
    await send(resp, "[DONE]")
    return resp


def native_result(gen: Generation, content: str, done: bool, predicted: int) -> dict[str, Any]:
    result: dict[str, Any] = {
        "content": content,
        "id_slot": 0,
        "stop": done,
        "model": gen.model,
        "tokens_predicted": predicted,
        "tokens_evaluated": gen.prompt_n,
    }
    if done:
        result["stop_type"] = "limit" if gen.finish == "length" else "eos"
        result["timings"] = gen.timings()
    return result


async def native(request: web.Request, prompt: Any, as_list: bool) -> web.StreamResponse:
    body = await read_json(request)
    gen = Generation(request, body, prompt(body))
    if not gen.stream:
        text = await gen.whole()
        result = native_result(gen, text, True, gen.total)
        return web.json_response([result] if as_list else result)
    resp = await open_sse(request)
    count = 0
    async for piece in gen.pieces():
        count += 1
        await send(resp, native_result(gen, piece, False, count))
    await send(resp, native_result(gen, "", True, gen.total))
    return resp


@routes.post("/completion")
async def completion(request: web.Request) -> web.StreamResponse:
    """llama-server's native completion (no `[DONE]` at the end of a stream)."""
    return await native(request, lambda body: body.get("prompt", ""), as_list=False)


@routes.post("/infill")
async def infill(request: web.Request) -> web.StreamResponse:
    """Fill-in-the-middle; the non-streamed answer is a one-element list (spec/api.md §14.3)."""

    def prompt(body: dict[str, Any]) -> list[Any]:
        return [body.get("input_prefix", ""), body.get("input_suffix", ""), body.get("prompt", "")]

    return await native(request, prompt, as_list=True)


@routes.post("/v1/messages")
async def messages(request: web.Request) -> web.StreamResponse:
    """Anthropic's Messages API, with its streaming event types."""
    body = await read_json(request)
    gen = Generation(request, body, [body.get("system", ""), body.get("messages", [])])
    stop_reason = "max_tokens" if gen.finish == "length" else "end_turn"
    message = {
        "id": f"msg_{gen.id}",
        "type": "message",
        "role": "assistant",
        "model": gen.model,
        "stop_sequence": None,
    }
    if not gen.stream:
        text = await gen.whole()
        return web.json_response(
            {
                **message,
                "content": [{"type": "text", "text": text}],
                "stop_reason": stop_reason,
                "usage": {"input_tokens": gen.prompt_n, "output_tokens": gen.total},
            }
        )
    resp = await open_sse(request)
    start: dict[str, Any] = {
        **message,
        "content": [],
        "stop_reason": None,
        "usage": {"input_tokens": gen.prompt_n, "output_tokens": 0},
    }
    await send(resp, {"type": "message_start", "message": start}, "message_start")
    block = {"type": "text", "text": ""}
    await send(
        resp,
        {"type": "content_block_start", "index": 0, "content_block": block},
        "content_block_start",
    )
    await send(resp, {"type": "ping"}, "ping")
    async for piece in gen.pieces():
        delta = {"type": "text_delta", "text": piece}
        await send(
            resp,
            {"type": "content_block_delta", "index": 0, "delta": delta},
            "content_block_delta",
        )
    await send(resp, {"type": "content_block_stop", "index": 0}, "content_block_stop")
    await send(
        resp,
        {
            "type": "message_delta",
            "delta": {"stop_reason": stop_reason, "stop_sequence": None},
            "usage": {"output_tokens": gen.total},
        },
        "message_delta",
    )
    await send(resp, {"type": "message_stop"}, "message_stop")
    return resp


def _take(marker: str | None) -> bool:
    """A one-shot switch: True once, when the marker file exists (it is deleted). A file that
    holds a number N > 1 is an N-shot switch: it is counted down, and deleted at the last."""
    if marker is None:
        return False
    try:
        with open(marker) as file:
            shots = file.read().strip()
        if shots.isdigit() and int(shots) > 1:
            with open(marker, "w") as file:
                file.write(str(int(shots) - 1))
            return True
        os.unlink(marker)
    except FileNotFoundError:
        return False
    return True
