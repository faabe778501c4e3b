"""A static-file server for the UI with a canned `/api/events` burst, for page-shape smoke tests.

It is not a fake of our server: it only serves `ui/` under `/ui/` and answers `/api/events` with
one llama-swap-shaped burst (models, logs, an in-flight snapshot) so every page has something to
draw. Every other endpoint answers 404, which is also how the UI must behave against an older
server. Behaviour against the real server is covered by test_e2e.py.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from aiohttp import web

UI_DIR = Path(__file__).resolve().parents[2] / "ui"
STOP = web.AppKey("stop", asyncio.Event)

MODELS = [
    {
        "id": "alpha",
        "name": "Alpha 7B",
        "description": "A test model",
        "state": "ready",
        "unlisted": False,
        "peerID": "",
        "aliases": ["a"],
        "capabilities": {"vision": True},
        "context_length": 131072,
    },
    {
        "id": "beta",
        "name": "",
        "description": "",
        "state": "stopped",
        "unlisted": False,
        "peerID": "",
    },
    {
        "id": "hidden",
        "name": "",
        "description": "",
        "state": "stopped",
        "unlisted": True,
        "peerID": "",
    },
    {
        "id": "peer1/gamma",
        "name": "",
        "description": "",
        "state": "",
        "unlisted": False,
        "peerID": "peer1",
    },
]
INFLIGHT = {
    "operation": "snapshot",
    "requests": [
        {
            "id": "7",
            "request_id": "01JTESTREQUEST000000000007",
            "timestamp": "2026-01-01T00:00:00Z",
            "model": "beta",
            "req_path": "/v1/chat/completions",
            "method": "POST",
            "req_headers": {"User-Agent": "pytest", "X-Session-ID": "lspg-abcde"},
            "remote_ip": "127.0.0.1",
            "resp_headers": {},
            "resp_bytes": 0,
            "elapsed_ms": 1500,
            "phase": "queued",
            "queue_position": 2,
        },
    ],
}


def frame(kind: str, payload: object) -> bytes:
    envelope = json.dumps({"type": kind, "data": json.dumps(payload)})
    return f"event:message\ndata:{envelope}\n\n".encode()


async def events(request: web.Request) -> web.StreamResponse:
    resp = web.StreamResponse(
        headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
    )
    await resp.prepare(request)
    burst = [
        ("logData", {"source": "proxy", "data": "[INFO] \x1b[32mproxy started\x1b[0m\n"}),
        ("logData", {"source": "upstream", "data": "upstream line <b>not bold</b>\n"}),
        ("modelStatus", MODELS),
        ("uiConfig", {"activity": {"session_id": ["X-Session-ID"]}}),
        ("profileChanged", {"active": None}),
        ("inflight", INFLIGHT),
    ]
    for kind, payload in burst:
        await resp.write(frame(kind, payload))
    # Hold the stream open until the client leaves or the server stops.
    await request.app[STOP].wait()
    return resp


async def root(_: web.Request) -> web.Response:
    raise web.HTTPFound("/ui/")


async def index(_: web.Request) -> web.FileResponse:
    return web.FileResponse(UI_DIR / "index.html")


def make_app() -> web.Application:
    app = web.Application()
    app[STOP] = asyncio.Event()
    app.router.add_get("/", root)
    app.router.add_get("/ui/", index)
    app.router.add_get("/api/events", events)
    app.router.add_static("/ui/", UI_DIR)

    async def stop(app: web.Application) -> None:
        app[STOP].set()

    app.on_shutdown.append(stop)
    return app


@contextmanager
def serve_static(port: int) -> Iterator[str]:
    """Run the stub in a background thread; yield its base URL."""
    loop = asyncio.new_event_loop()
    runner = web.AppRunner(make_app(), shutdown_timeout=1.0)
    ready = threading.Event()

    def run() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(runner.setup())
        loop.run_until_complete(web.TCPSite(runner, "127.0.0.1", port).start())
        ready.set()
        loop.run_forever()

    thread = threading.Thread(target=run, name="ui-stub-server", daemon=True)
    thread.start()
    if not ready.wait(10):
        raise RuntimeError("the UI stub server did not start within 10 s")
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
