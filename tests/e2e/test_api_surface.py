"""The rest of the API surface through the real server: a client that leaves while queued,
/api/events, unloads, /upstream redirects, CORS preflight, the log streams."""

from __future__ import annotations

import asyncio
import json

import aiohttp

from llamaswap_es.events.open_log import open_log
from tests.fixtures.server import config_text, fake_model

CHAT = "/v1/chat/completions"


def _chat(model: str) -> dict[str, object]:
    return {"model": model, "messages": [{"role": "user", "content": "hi"}]}


async def _log_types(http: aiohttp.ClientSession, url: str) -> list[str]:
    async with http.get(f"{url}/api/log/events", params={"limit": "1000"}) as response:
        return [e["type"] for e in (await response.json())["events"]]


async def _until(predicate, timeout_s: float = 20) -> None:
    async with asyncio.timeout(timeout_s):
        while not await predicate():
            await asyncio.sleep(0.03)


async def test_a_client_that_leaves_while_queued_is_cancelled_and_never_loads(
    server_factory,
) -> None:
    models = [fake_model("a", "--load-delay-ms", "1500"), fake_model("b")]
    server = server_factory(config_text(models))
    async with aiohttp.ClientSession() as http:
        first = asyncio.create_task(http.post(server.url + CHAT, json=_chat("a")))

        async def received(n: int) -> bool:
            return (await _log_types(http, server.url)).count("RequestReceived") >= n

        await _until(lambda: received(1))
        second = asyncio.create_task(http.post(server.url + CHAT, json=_chat("b")))
        await _until(lambda: received(2))
        second.cancel()  # the client gives up while its request waits behind a's load

        async def cancelled() -> bool:
            return "RequestCancelled" in await _log_types(http, server.url)

        await _until(cancelled)
        response = await first
        assert response.status == 200
        response.release()
    with open_log(server.db_path) as reader:
        starts = [e.body.model for e in reader.iter_envelopes() if e.type == "StartProcess"]
    assert starts == ["a"], "a cancelled request never causes a load"


async def test_api_events_sends_the_burst_then_live_model_status(server_factory) -> None:
    server = server_factory(config_text([fake_model("a")]))
    messages: list[tuple[str, object]] = []
    async with aiohttp.ClientSession() as http, http.get(server.url + "/api/events") as events:
        assert events.headers["Content-Type"] == "text/event-stream"

        async def read_until_ready() -> None:
            async for raw in events.content:
                line = raw.decode().strip()
                if not line.startswith("data:"):
                    continue
                envelope = json.loads(line[len("data:") :])
                payload = json.loads(envelope["data"])
                messages.append((envelope["type"], payload))
                if envelope["type"] == "modelStatus" and payload[0]["state"] == "ready":
                    return

        reader = asyncio.create_task(read_until_ready())
        async with http.post(server.url + CHAT, json=_chat("a")) as response:
            assert response.status == 200
        await asyncio.wait_for(reader, 20)
    burst = [kind for kind, _ in messages[:6]]
    assert burst == ["logData", "logData", "modelStatus", "uiConfig", "profileChanged", "inflight"]
    assert messages[2][1][0] == {
        "id": "a", "name": "", "description": "", "state": "stopped", "unlisted": False,
        "peerID": "",
    }  # fmt: skip
    kinds = {kind for kind, _ in messages}
    assert {"logEvent", "inflight"} <= kinds


async def test_unloads_wait_for_the_stop_and_name_unknown_models(server_factory) -> None:
    server = server_factory(config_text([fake_model("a")]))
    async with aiohttp.ClientSession() as http:
        async with http.post(server.url + CHAT, json=_chat("a")) as response:
            assert response.status == 200
        async with http.get(server.url + "/running") as response:
            running = (await response.json())["running"]
        assert [(r["model"], r["state"]) for r in running] == [("a", "ready")]
        async with http.post(server.url + "/api/models/unload/a") as response:
            assert response.status == 200 and await response.text() == "OK"
        async with http.get(server.url + "/running") as response:
            assert (await response.json())["running"] == []
        async with http.post(server.url + "/api/models/unload/nope") as response:
            assert response.status == 404
        async with http.get(server.url + "/unload") as response:
            assert await response.text() == "OK"


async def test_upstream_passthrough_redirects_and_serves(server_factory) -> None:
    server = server_factory(config_text([fake_model("a")]))
    async with aiohttp.ClientSession() as http:
        async with http.get(server.url + "/upstream/a?x=1", allow_redirects=False) as response:
            assert response.status == 301
            assert response.headers["Location"] == "/upstream/a/?x=1"
        async with http.get(server.url + "/upstream/a/health") as response:
            assert response.status == 200
        async with http.get(server.url + "/upstream/nope/health") as response:
            assert response.status == 404
        async with http.get(server.url + "/", allow_redirects=False) as response:
            assert response.status == 302 and response.headers["Location"] == "/ui"


async def test_cors_preflight_and_version(server_factory) -> None:
    server = server_factory(config_text([fake_model("a")], header="apiKeys: [k]"))
    async with aiohttp.ClientSession() as http:
        headers = {"Access-Control-Request-Headers": "  X-Custom ,  Bad Header, Accept "}
        async with http.options(server.url + CHAT, headers=headers) as response:
            assert response.status == 204
            assert response.headers["Access-Control-Allow-Origin"] == "*"
            assert response.headers["Access-Control-Allow-Headers"] == "X-Custom, Accept"
        auth = {"Authorization": "Bearer k"}
        async with http.get(server.url + "/api/version", headers=auth) as response:
            assert set(await response.json()) == {"version", "commit", "build_date"}


async def test_model_log_stream_holds_the_upstreams_output(server_factory) -> None:
    server = server_factory(config_text([fake_model("a")]))
    async with aiohttp.ClientSession() as http:
        async with http.post(server.url + CHAT, json=_chat("a")) as response:
            assert response.status == 200
        async with http.get(server.url + "/logs/stream/a") as stream:
            assert stream.status == 200
            first = await asyncio.wait_for(stream.content.readany(), 10)
        assert first, "the model's buffered output comes first"
        async with http.get(server.url + "/logs/stream/nope") as response:
            assert response.status == 400


async def test_websockets_are_tunnelled_and_comfyui_only_starts_from_its_root(
    server_factory,
) -> None:
    comfy = fake_model("comfyui_auto", extra="compat:\n  ignoreWebsockets: false")
    server = server_factory(config_text([fake_model("a"), comfy]))
    async with aiohttp.ClientSession() as http:
        async with http.get(server.url + "/comfyui?t=1", allow_redirects=False) as response:
            assert response.status == 301 and response.headers["Location"] == "/comfyui/?t=1"
        async with http.get(server.url + "/comfyui/api/prompt") as response:
            assert response.status == 409
            assert "only /comfyui/ can start it" in await response.text()
        async with http.get(server.url + "/comfyui/") as response:
            assert response.status == 200  # the root may start the model
        async with http.ws_connect(server.url + "/comfyui/ws") as ws:
            await ws.send_str("hello")
            assert (await ws.receive_str()) == "echo: hello"
        async with http.ws_connect(server.url + "/upstream/a/ws") as ws:  # starts model a
            await ws.send_str("hi")
            assert (await ws.receive_str()) == "echo: hi"


async def test_an_ignored_websocket_cannot_start_its_model(server_factory) -> None:
    model = fake_model("a", extra="compat:\n  ignoreWebsockets: true")
    server = server_factory(config_text([model]))
    async with aiohttp.ClientSession() as http:
        async with http.get(
            server.url + "/upstream/a/ws",
            headers={"Connection": "Upgrade", "Upgrade": "websocket", "Sec-WebSocket-Version": "13",
                     "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="},
        ) as response:  # fmt: skip
            assert response.status == 409
            assert "ignored websocket requests cannot start it" in await response.text()
        async with http.post(server.url + CHAT, json=_chat("a")) as response:
            assert response.status == 200
        async with http.ws_connect(server.url + "/upstream/a/ws") as ws:
            await ws.send_str("x")
            assert (await ws.receive_str()) == "echo: x"


async def test_a_multipart_request_gets_the_models_use_model_name(server_factory) -> None:
    model = fake_model("whisper", extra="useModelName: upstream-name\naliases: [asr]")
    server = server_factory(config_text([model]))
    form = aiohttp.FormData()
    form.add_field("model", "asr")
    form.add_field("file", b"\x00\x01audio-bytes", filename="a.wav", content_type="audio/wav")
    async with (
        aiohttp.ClientSession() as http,
        http.post(server.url + "/v1/audio/transcriptions", data=form) as response,
    ):
        assert response.status == 200
        reply = await response.json()
    assert reply == {"text": "The length of the file is 13 bytes", "model": "upstream-name"}
