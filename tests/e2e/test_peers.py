"""Requests for a peer's models go to the peer, with its key and its own model name."""

from __future__ import annotations

import asyncio
import base64
import json
import sqlite3

import aiohttp
import openai
import pytest
from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families

from llamaswap_es.fake_upstream.app import build_app
from llamaswap_es.fake_upstream.settings import FakeSettings
from tests.fixtures.net import free_port
from tests.fixtures.server import config_text, fake_model, wait_json


async def _peer(seen: list[dict[str, object]]) -> tuple[web.AppRunner, int]:
    """A real HTTP server standing in for another llama-swap: it records what reaches it."""

    async def chat(request: web.Request) -> web.Response:
        seen.append(
            {
                "path": request.path,
                "body": json.loads(await request.read()),
                "authorization": request.headers.get("Authorization"),
                "x-api-key": request.headers.get("x-api-key"),
            }
        )
        return web.json_response({"choices": [{"message": {"content": "from the peer"}}]})

    app = web.Application()
    app.router.add_post("/api/v1/chat/completions", chat)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner, port


async def test_a_peer_model_is_forwarded_with_the_peers_key_and_name(server_factory) -> None:
    seen: list[dict[str, object]] = []
    runner, port = await _peer(seen)
    header = (
        f"peers:\n  p1:\n    proxy: http://127.0.0.1:{port}/api\n    apiKey: peer-secret\n"
        "    models: [remote-model]"
    )
    server = server_factory(config_text([fake_model("a")], header=header))
    try:
        async with aiohttp.ClientSession() as http:
            body = {"model": "p1/remote-model", "messages": []}
            headers = {"Authorization": "Bearer client-key"}
            async with http.post(
                server.url + "/v1/chat/completions", json=body, headers=headers
            ) as response:
                assert response.status == 200
                reply = await response.json()
            async with http.get(server.url + "/v1/models") as response:
                ids = [m["id"] for m in (await response.json())["data"]]
    finally:
        await runner.cleanup()
    assert reply["choices"][0]["message"]["content"] == "from the peer"
    assert seen == [
        {
            "path": "/api/v1/chat/completions",
            "body": {"model": "remote-model", "messages": []},
            "authorization": "Bearer peer-secret",
            "x-api-key": "peer-secret",
        }
    ]
    assert ids == ["a", "p1/remote-model"]


class Gate:
    """Holds the next request at the peer until released, so a test can look at it in flight."""

    def __init__(self) -> None:
        self.armed = False
        self.arrived = asyncio.Event()
        self.release = asyncio.Event()

    @web.middleware
    async def middleware(self, request: web.Request, handler):  # type: ignore[no-untyped-def]
        if self.armed:
            self.armed = False
            self.arrived.set()
            await self.release.wait()
        return await handler(request)


async def _fake_peer(port: int, gate: Gate) -> web.AppRunner:
    """The project's fake upstream as a plain HTTP server standing in for a remote API."""
    app = build_app(FakeSettings(port=port, model_name="remote-model", tokens=7, quiet=True))
    app.middlewares.append(gate.middleware)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner


def _captured(doc: dict) -> bool:
    return doc["total"] == 3 and all(
        row["has_capture"] for row in doc["data"] if row["resp_status_code"] == 200
    )


async def test_peer_requests_are_in_activity_captures_metrics_and_in_flight(
    server_factory,
) -> None:
    peer_port, dead_port = free_port(), free_port()
    header = (
        f"peers:\n  p1:\n    proxy: http://127.0.0.1:{peer_port}\n    apiKey: peer-secret\n"
        f"    models: [remote-model]\n  p2:\n    proxy: http://127.0.0.1:{dead_port}\n"
        "    models: [gone]"
    )
    server = server_factory(config_text([fake_model("a")], header=header))
    gate = Gate()
    peer = await _fake_peer(peer_port, gate)
    client = openai.AsyncOpenAI(base_url=f"{server.url}/v1", api_key="client-key", max_retries=0)
    messages = [{"role": "user", "content": "hi"}]
    try:
        async with aiohttp.ClientSession() as http:
            reply = await client.chat.completions.create(model="p1/remote-model", messages=messages)
            assert reply.usage is not None and reply.usage.completion_tokens == 7

            gate.armed = True
            opening = asyncio.ensure_future(
                client.chat.completions.create(
                    model="p1/remote-model", messages=messages, stream=True
                )
            )
            await asyncio.wait_for(gate.arrived.wait(), 10)  # held at the peer: in flight
            async with http.get(server.url + "/api/inflight") as response:
                running = (await response.json())["requests"]
            gate.release.set()
            assert [(r["model"], r["req_path"], r["phase"]) for r in running] == [
                ("p1/remote-model", "/v1/chat/completions", "running")
            ]
            assert running[0]["req_headers"]["Authorization"] == "[REDACTED]"
            chunks = [chunk async for chunk in await opening]
            assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 7

            with pytest.raises(openai.APIStatusError) as failed:
                await client.chat.completions.create(model="p2/gone", messages=messages)
            assert failed.value.status_code == 502
            assert "peer proxy error" in failed.value.message

            activity = await wait_json(http, server.url + "/api/metrics/activity", _captured)
            rows = sorted(activity["data"], key=lambda row: row["id"])
            assert [(r["model"], r["req_path"], r["resp_status_code"]) for r in rows] == [
                ("p1/remote-model", "/v1/chat/completions", 200),
                ("p1/remote-model", "/v1/chat/completions", 200),
                ("p2/gone", "/v1/chat/completions", 502),
            ]
            assert [r["tokens"]["output_tokens"] for r in rows] == [7, 7, 0]
            assert rows[2]["error_msg"].startswith("peer proxy error: ")
            assert not rows[0].get("error_msg") and not rows[1].get("error_msg")
            assert not rows[0].get("metadata"), "peer requests normally have no metadata"

            async with http.get(f"{server.url}/api/captures/{rows[0]['id']}") as response:
                capture = await response.json()
            assert capture["req_headers"]["Authorization"] == "[REDACTED]"
            assert capture["req_headers"]["X-Api-Key"] == "[REDACTED]"
            assert "peer-secret" not in json.dumps(capture)
            assert json.loads(base64.b64decode(capture["resp_body"]))["usage"] == {
                "prompt_tokens": reply.usage.prompt_tokens,
                "completion_tokens": 7,
                "total_tokens": reply.usage.total_tokens,
            }

            async with http.get(server.url + "/metrics") as response:
                families = {
                    f.name: f for f in text_string_to_metric_families(await response.text())
                }
            counted = {
                (s.labels["model"], s.labels["status"]): s.value
                for s in families["llamaswap_es_requests"].samples
                if s.name.endswith("_total")
            }
            assert counted == {("p1/remote-model", "200"): 2.0, ("p2/gone", "502"): 1.0}
            async with http.get(server.url + "/api/inflight") as response:
                assert (await response.json())["requests"] == []
    finally:
        await client.close()
        await peer.cleanup()

    with sqlite3.connect(f"{server.db_path.as_uri()}?mode=ro", uri=True) as conn:
        table = conn.execute(
            "SELECT model_id, stream, output_tokens, queue_wait_ms, resp_status_code "
            "FROM activity ORDER BY id"
        ).fetchall()
        logged = conn.execute(
            "SELECT type, json_extract(payload, '$.peer') FROM events "
            "WHERE type LIKE '%Request%' ORDER BY seq"
        ).fetchall()
    assert table == [
        ("p1/remote-model", 0, 7, None, 200),
        ("p1/remote-model", 1, 7, None, 200),
        ("p2/gone", 0, 0, None, 502),
    ]
    assert logged == [("PeerRequestFinished", p) for p in ("p1", "p1", "p2")]
