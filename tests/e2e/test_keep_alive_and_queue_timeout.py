"""Two scheduler features through the real server: a request's own TTL (`ttl` / `keep_alive`)
and the queue timeout (`queueTimeoutSeconds`). Real SDK and HTTP clients, real fake-upstream
processes; the fixture replays every log at teardown (`replay verify`)."""

from __future__ import annotations

import asyncio
import base64
import json

import aiohttp
import openai

from llamaswap_es.events.open_log import open_log
from tests.fixtures.server import config_text, fake_model

CHAT = "/v1/chat/completions"
HI = [{"role": "user", "content": "hi"}]


async def _until(check, timeout_s: float = 20, every_s: float = 0.05):
    """Poll `check()` (async) until it returns something truthy, or fail after `timeout_s`."""
    async with asyncio.timeout(timeout_s):
        while not (found := await check()):
            await asyncio.sleep(every_s)
    return found


def _reasoning(sse: str) -> str:
    """The loading preamble's text: the `reasoning_content` of its SSE chunks, joined."""
    chunks = [json.loads(line[6:]) for line in sse.splitlines() if line.startswith("data: {")]
    return "".join(c["choices"][0]["delta"].get("reasoning_content") or "" for c in chunks)


def _events(db_path, event_type: str) -> list:
    with open_log(db_path) as reader:
        return [e for e in reader.iter_envelopes() if e.type == event_type]


async def test_a_request_ttl_unloads_the_model_long_before_its_configured_ttl(
    server_factory,
) -> None:
    server = server_factory(config_text([fake_model("a", "--tokens", "3", extra="ttl: 300")]))
    client = openai.AsyncOpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0)
    async with aiohttp.ClientSession() as http:
        reply = await client.chat.completions.create(model="a", messages=HI, extra_body={"ttl": 1})
        assert reply.choices[0].message.content

        async def stopped() -> bool:
            async with http.get(f"{server.url}/running") as r:
                return not (await r.json())["running"]

        # the configured ttl is 300 s: only the request's own ttl can stop it this soon
        await _until(stopped, timeout_s=15)

        (received,) = _events(server.db_path, "RequestReceived")
        assert received.body.ttl_override_ms == 1000
        (stop,) = _events(server.db_path, "StopProcess")
        assert (stop.body.model, stop.body.reason) == ("a", "ttl")

        async def captured() -> dict | None:
            async with http.get(f"{server.url}/api/metrics/activity") as r:
                rows = (await r.json())["data"]
            if not rows or not rows[0]["has_capture"]:
                return None
            async with http.get(f"{server.url}/api/captures/{rows[0]['id']}") as r:
                return await r.json()

        capture = await _until(captured)
        assert json.loads(base64.b64decode(capture["req_body"]))["ttl"] == 1  # sent on as is

        bad = {"model": "a", "messages": HI, "keep_alive": "5 minutes"}
        async with http.post(server.url + CHAT, json=bad) as r:
            assert r.status == 400
            error = (await r.json())["error"]
        assert error["message"] == (
            'invalid keep_alive "5 minutes": expected seconds or a duration like 5m'
        )
        assert error["type"] == "invalid_request_error"
    assert len(_events(server.db_path, "RequestReceived")) == 1  # the bad one never queued
    await client.close()


async def test_a_request_queued_behind_a_slow_load_times_out_with_503(server_factory) -> None:
    models = [fake_model("slow", "--load-delay-ms", "4000"), fake_model("b")]
    header = "sendLoadingState: true\nllamaswap-es:\n  queueTimeoutSeconds: 1"
    server = server_factory(config_text(models, header=header))
    async with aiohttp.ClientSession() as http:
        first = asyncio.create_task(
            http.post(server.url + CHAT, json={"model": "slow", "messages": HI})
        )

        async def slow_is_loading() -> bool:
            return bool(_events(server.db_path, "StartProcess"))

        await _until(slow_is_loading)  # b cannot start beside it: b's requests queue
        streamed = asyncio.create_task(
            http.post(server.url + CHAT, json={"model": "b", "messages": HI, "stream": True})
        )
        async with http.post(server.url + CHAT, json={"model": "b", "messages": HI}) as r:
            assert r.status == 503
            assert r.headers["Retry-After"] == "1"
            error = (await r.json())["error"]
        assert error["code"] == "queue_timeout" and error["type"] == "server_error"
        assert error["message"].startswith("request waited 1.")
        assert error["message"].endswith(' s in the queue for model "b" (queueTimeoutSeconds: 1)')
        # a stream that already got the loading preamble (200) ends with the error appended
        async with await streamed as stream:
            assert stream.status == 200
            body = (await stream.read()).decode()
        preamble, _, tail = body.rpartition("\n\n")
        assert "llama-swap loading model: b" in _reasoning(preamble)
        appended = json.loads(tail)
        assert appended["error"]["code"] == "queue_timeout"
        async with await first as served:
            assert served.status == 200  # the load they were queued behind goes on

    rejects = _events(server.db_path, "Reject")
    assert [(e.body.status, e.body.code) for e in rejects] == [(503, "queue_timeout")] * 2
    assert error["message"] in [e.body.message for e in rejects]
    (ready,) = _events(server.db_path, "ProcessReady")
    assert max(e.seq for e in rejects) < ready.seq, "timed out while the slow model loaded"
    assert [e.body.model for e in _events(server.db_path, "StartProcess")] == ["slow"]


async def test_running_shows_the_ttl_in_force_after_each_request(server_factory) -> None:
    server = server_factory(config_text([fake_model("a", "--tokens", "2", extra="ttl: 300")]))
    client = openai.AsyncOpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0)
    async with aiohttp.ClientSession() as http:

        async def ttl_shown(expected: int) -> bool:
            async with http.get(f"{server.url}/running") as r:
                return [(m["model"], m["ttl"]) for m in (await r.json())["running"]] == [
                    ("a", expected)
                ]

        for extra, expected in (({}, 300), ({"ttl": 42}, 42), ({"keep_alive": -1}, 0), ({}, 300)):
            await client.chat.completions.create(model="a", messages=HI, extra_body=extra)
            await _until(lambda expected=expected: ttl_shown(expected), timeout_s=10)
    await client.close()
