"""The fake upstream's aiohttp application: llama-server's non-generating routes and the app.

While "loading" (the first --load-delay-ms) every route but `/health` and `/` answers 503 like
llama-server does. Every request is logged on stderr in llama-server's style.
"""

from __future__ import annotations

import base64
import io
import os
import struct
import time
import wave
from collections.abc import Awaitable, Callable

import aiohttp
from aiohttp import web

from llamaswap_es.fake_upstream.generation import STATE, bad_request, read_json
from llamaswap_es.fake_upstream.generation import routes as generation_routes
from llamaswap_es.fake_upstream.settings import FakeSettings, FakeState
from llamaswap_es.fake_upstream.text import count_tokens, embedding, relevance

routes = web.RouteTableDef()

MAX_BODY_BYTES = 16 * 1024 * 1024
_LOADING = {"error": {"code": 503, "message": "Loading model", "type": "unavailable_error"}}
# The smallest valid PNG: one transparent pixel.
_PNG_1X1 = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="
)


def state_of(request: web.Request) -> FakeState:
    return request.app[STATE]


@web.middleware
async def loading_and_access_log(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    state = state_of(request)
    if not state.loaded and request.path not in ("/health", "/"):
        response: web.StreamResponse = web.json_response(_LOADING, status=503)
    else:
        try:
            response = await handler(request)
        except web.HTTPException as exc:
            response = exc
    peer = request.remote or "-"
    state.log(
        f"srv  log_server_r: request: {request.method} {request.path} {peer} {response.status}"
    )
    if isinstance(response, web.HTTPException):
        raise response
    return response


@routes.route("*", "/health")
async def health(request: web.Request) -> web.Response:
    if not state_of(request).loaded:
        return web.json_response(_LOADING, status=503)
    return web.json_response({"status": "ok"})


@routes.get("/")
async def index(request: web.Request) -> web.Response:
    name = state_of(request).settings.model_name
    page = f"<!doctype html><title>fake upstream</title><h1>fake upstream: {name}</h1>"
    return web.Response(text=page, content_type="text/html")


@routes.get("/v1/models")
@routes.get("/models")
async def models(request: web.Request) -> web.Response:
    settings = state_of(request).settings
    entry = {
        "id": settings.model_name,
        "object": "model",
        "created": int(state_of(request).started),
        "owned_by": "llamacpp",
        "meta": {"n_ctx_train": 512, "n_params": 1000},
    }
    return web.json_response({"object": "list", "data": [entry]})


@routes.get("/props")
async def props(request: web.Request) -> web.Response:
    settings = state_of(request).settings
    return web.json_response(
        {
            "default_generation_settings": {"n_ctx": 512, "n_predict": settings.tokens},
            "total_slots": 1,
            "model_path": f"/fake/{settings.model_name}.gguf",
            "chat_template": "",
            "build_info": "fake-upstream",
        }
    )


_GPU_ENV = frozenset(
    ("CUDA_VISIBLE_DEVICES", "CUDA_DEVICE_ORDER", "HIP_VISIBLE_DEVICES", "ROCR_VISIBLE_DEVICES")
)
"""The variables that name the GPUs a process was given: `/fake/info` reports them as
`gpu_env` (placement by GPU memory sets them)."""


@routes.get("/fake/info")
async def info(request: web.Request) -> web.Response:
    """Who answers: pid, parent and group, model name; used by tests."""
    return web.json_response(
        {
            "pid": os.getpid(),
            "ppid": os.getppid(),
            "pgid": os.getpgid(0),
            "model": state_of(request).settings.model_name,
            "env": {k: v for k, v in os.environ.items() if k.startswith("FAKE_")},
            "gpu_env": {k: v for k, v in os.environ.items() if k in _GPU_ENV},
        }
    )


@routes.post("/v1/embeddings")
@routes.post("/embeddings")
async def embeddings(request: web.Request) -> web.Response:
    body = await read_json(request)
    inputs = body.get("input", "")
    items = inputs if isinstance(inputs, list) else [inputs]
    data = [
        {"object": "embedding", "index": i, "embedding": embedding(str(text))}
        for i, text in enumerate(items)
    ]
    prompt_n = count_tokens([str(t) for t in items])
    return web.json_response(
        {
            "object": "list",
            "model": state_of(request).settings.model_name,
            "data": data,
            "usage": {"prompt_tokens": prompt_n, "total_tokens": prompt_n},
        }
    )


@routes.post("/v1/rerank")
@routes.post("/rerank")
@routes.post("/v1/reranking")
async def rerank(request: web.Request) -> web.Response:
    body = await read_json(request)
    query = str(body.get("query", ""))
    documents = body.get("documents", [])
    if not isinstance(documents, list):
        raise bad_request("documents must be a list")
    results = [
        {"index": i, "relevance_score": relevance(query, str(doc))}
        for i, doc in enumerate(documents)
    ]
    results.sort(key=lambda r: (-r["relevance_score"], r["index"]))
    top_n = body.get("top_n")
    if isinstance(top_n, int) and top_n >= 0:
        results = results[:top_n]
    prompt_n = count_tokens([query, *[str(d) for d in documents]])
    return web.json_response(
        {
            "model": state_of(request).settings.model_name,
            "object": "list",
            "usage": {"prompt_tokens": prompt_n, "total_tokens": prompt_n},
            "results": results,
        }
    )


def silent_wav(duration_ms: int = 100, rate: int = 8000) -> bytes:
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        frames = rate * duration_ms // 1000
        out.writeframes(struct.pack(f"<{frames}h", *([0] * frames)))
    return buffer.getvalue()


@routes.post("/v1/audio/speech")
async def speech(request: web.Request) -> web.Response:
    body = await read_json(request)
    if not body.get("input"):
        raise bad_request("missing input")
    return web.Response(body=silent_wav(), content_type="audio/wav")


@routes.post("/v1/audio/transcriptions")
@routes.post("/inference")
async def transcriptions(request: web.Request) -> web.Response:
    """Multipart form with `file` (and usually `model`): the text says how big the file was."""
    if not request.content_type.startswith("multipart/"):
        raise bad_request("expected a multipart/form-data body")
    try:
        form = await request.post()
    except (ValueError, UnicodeError) as exc:  # a boundary or part aiohttp cannot read
        raise bad_request(f"invalid multipart body: {exc}") from None
    upload = form.get("file")
    if not isinstance(upload, web.FileField):  # absent, or a plain form field
        raise bad_request("missing file")
    size = len(upload.file.read())
    return web.json_response(
        {"text": f"The length of the file is {size} bytes", "model": str(form.get("model", ""))}
    )


@routes.post("/v1/images/generations")
async def images(request: web.Request) -> web.Response:
    body = await read_json(request)
    count = body.get("n", 1) if isinstance(body.get("n"), int) else 1
    picture = base64.b64encode(_PNG_1X1).decode()
    return web.json_response(
        {"created": int(time.time()), "data": [{"b64_json": picture} for _ in range(count)]}
    )


@routes.get("/ws")
async def websocket_echo(request: web.Request) -> web.WebSocketResponse:
    """Echoes each text frame back as `echo: <text>` (ComfyUI-style websocket for tests)."""
    ws = web.WebSocketResponse()
    await ws.prepare(request)
    async for message in ws:
        if message.type == aiohttp.WSMsgType.TEXT:
            await ws.send_str(f"echo: {message.data}")
    return ws


def build_app(settings: FakeSettings) -> web.Application:
    app = web.Application(middlewares=[loading_and_access_log], client_max_size=MAX_BODY_BYTES)
    app[STATE] = FakeState(settings)
    app.add_routes(routes)
    app.add_routes(generation_routes)
    return app
