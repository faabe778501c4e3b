"""The fake upstream answers like llama-server: deterministic text, usage, timings, SSE."""

from __future__ import annotations

import json

import aiohttp

from llamaswap_es.events.types import ProcessReady, ProcessSpawned
from llamaswap_es.fake_upstream.text import answer_text
from tests.conftest import free_port
from tests.fixtures.processes import fake_spec
from tests.runtime.conftest import Harness

CHAT = {"model": "x", "messages": [{"role": "user", "content": "three little words"}]}


def sse_data(raw: str) -> list[str]:
    return [line[len("data: ") :] for line in raw.splitlines() if line.startswith("data: ")]


async def test_routes_answer_like_llama_server(harness: Harness) -> None:
    port = free_port()
    harness.executor.start(fake_spec("fake", port, "--tokens", "6", "--model-name", "m-6"), 1)
    await harness.events.expect(ProcessSpawned)
    await harness.events.expect(ProcessReady)
    base = f"http://127.0.0.1:{port}"
    async with aiohttp.ClientSession(base) as http:
        async with http.post("/v1/chat/completions", json=CHAT) as resp:
            body = await resp.json()
        assert body["choices"][0]["message"]["content"] == answer_text(6)
        assert body["usage"] == {"prompt_tokens": 3, "completion_tokens": 6, "total_tokens": 9}
        assert body["timings"]["predicted_n"] == 6 and body["timings"]["prompt_n"] == 3
        assert body["model"] == "m-6"

        async with http.post("/v1/chat/completions", json={**CHAT, "stream": True}) as resp:
            assert resp.headers["Content-Type"].startswith("text/event-stream")
            frames = sse_data(await resp.text())
        assert frames[-1] == "[DONE]"
        chunks = [json.loads(f) for f in frames[:-1]]
        text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks)
        assert text == answer_text(6)
        assert chunks[-1]["usage"]["completion_tokens"] == 6 and "timings" in chunks[-1]

        async with http.post("/v1/completions", json={"prompt": "a b", "max_tokens": 2}) as resp:
            body = await resp.json()
        assert body["choices"][0] == {
            "index": 0,
            "text": answer_text(2),
            "logprobs": None,
            "finish_reason": "length",
        }

        async with http.post("/completion", json={"prompt": "a", "stream": True}) as resp:
            frames = [json.loads(f) for f in sse_data(await resp.text())]
        assert "".join(f["content"] for f in frames) == answer_text(6)
        assert frames[-1]["stop"] is True and frames[-1]["timings"]["predicted_n"] == 6

        async with http.post("/infill", json={"input_prefix": "def f(", "prompt": ""}) as resp:
            body = await resp.json()
        assert isinstance(body, list) and body[-1]["timings"]["predicted_n"] == 6

        async with http.post("/v1/embeddings", json={"input": ["a b", "c"]}) as resp:
            body = await resp.json()
        assert [len(d["embedding"]) for d in body["data"]] == [8, 8]
        assert body["usage"]["prompt_tokens"] == 3

        rerank = {"query": "red apple", "documents": ["blue sky", "red apple pie"], "top_n": 1}
        for path in ("/v1/rerank", "/rerank"):
            async with http.post(path, json=rerank) as resp:
                body = await resp.json()
            assert body["results"] == [{"index": 1, "relevance_score": 1.0}]

        async with http.post("/v1/audio/speech", json={"input": "hello"}) as resp:
            assert resp.content_type == "audio/wav"
            assert (await resp.read())[:4] == b"RIFF"

        form = aiohttp.FormData()
        form.add_field("model", "whisper")
        form.add_field("file", b"12345", filename="a.wav", content_type="audio/wav")
        async with http.post("/v1/audio/transcriptions", data=form) as resp:
            body = await resp.json()
        assert body["text"] == "The length of the file is 5 bytes"

        async with http.post("/v1/images/generations", json={"prompt": "cat", "n": 2}) as resp:
            assert len((await resp.json())["data"]) == 2

        async with http.get("/v1/models") as resp:
            assert [m["id"] for m in (await resp.json())["data"]] == ["m-6"]
        async with http.get("/props") as resp:
            assert (await resp.json())["total_slots"] == 1
        async with http.get("/") as resp:
            assert "fake upstream: m-6" in await resp.text()
        async with http.post("/v1/chat/completions", data="{nope") as resp:
            assert resp.status == 400
            assert "invalid JSON body" in (await resp.json())["error"]["message"]


async def test_anthropic_messages_stream_has_its_event_types(harness: Harness) -> None:
    port = free_port()
    harness.executor.start(fake_spec("claude", port, "--tokens", "4"), 1)
    await harness.events.expect(ProcessSpawned)
    await harness.events.expect(ProcessReady)
    async with aiohttp.ClientSession(f"http://127.0.0.1:{port}") as http:
        request = {"max_tokens": 100, "messages": [{"role": "user", "content": "hi you"}]}
        async with http.post("/v1/messages", json=request) as resp:
            body = await resp.json()
        assert body["content"] == [{"type": "text", "text": answer_text(4)}]
        assert body["usage"] == {"input_tokens": 2, "output_tokens": 4}
        assert body["stop_reason"] == "end_turn"

        async with http.post("/v1/messages", json={**request, "stream": True}) as resp:
            raw = await resp.text()
    events = [line[len("event: ") :] for line in raw.splitlines() if line.startswith("event: ")]
    assert events == [
        "message_start",
        "content_block_start",
        "ping",
        *["content_block_delta"] * 4,
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    deltas = [json.loads(d) for d in sse_data(raw)]
    assert "".join(d["delta"]["text"] for d in deltas if d["type"] == "content_block_delta") == (
        answer_text(4)
    )
    assert deltas[-2]["usage"] == {"output_tokens": 4}


async def test_while_loading_inference_routes_answer_503(harness: Harness) -> None:
    port = free_port()
    spec = fake_spec("loading", port, "--load-delay-ms", "60000", check_endpoint="/")
    harness.executor.start(spec, 1)  # "/" answers while loading, so it is "ready" at once
    await harness.events.expect(ProcessSpawned)
    await harness.events.expect(ProcessReady)
    async with aiohttp.ClientSession(f"http://127.0.0.1:{port}") as http:
        async with http.get("/health") as resp:
            assert resp.status == 503
        async with http.post("/v1/chat/completions", json=CHAT) as resp:
            assert resp.status == 503
            assert (await resp.json())["error"]["message"] == "Loading model"
