"""Requests for a peer's models go to the peer, with its key and its own model name."""

from __future__ import annotations

import json

import aiohttp
from aiohttp import web

from tests.fixtures.net import free_port
from tests.fixtures.server import config_text, fake_model


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
