"""The idle model (`llamaswap-es.idleModel`) through the real server: after a big model's TTL
unloads it, the small default model is loaded. Real fake-upstream processes; the fixture
replays the log at teardown (`replay verify`)."""

from __future__ import annotations

import asyncio

import aiohttp

from llamaswap_es.events.open_log import open_log
from tests.fixtures.server import config_text, fake_model

CHAT = "/v1/chat/completions"


async def test_a_ttl_unload_of_the_big_model_loads_the_idle_model(server_factory) -> None:
    models = [
        fake_model("big", "--tokens", "3", extra="ttl: 1"),
        fake_model("idle", extra="aliases: [small]"),
    ]
    header = "llamaswap-es:\n  idleModel: small"  # an alias: resolves to `idle`
    server = server_factory(config_text(models, header=header))
    async with aiohttp.ClientSession() as http:
        body = {"model": "big", "messages": [{"role": "user", "content": "hi"}]}
        async with http.post(server.url + CHAT, json=body) as r:
            assert r.status == 200

        async def running() -> dict[str, str]:
            async with http.get(f"{server.url}/running") as r:
                return {e["model"]: e["state"] for e in (await r.json())["running"]}

        async with asyncio.timeout(20):  # big's ttl is 1 s; idle then loads in about a second
            while await running() != {"idle": "ready"}:
                await asyncio.sleep(0.05)

    with open_log(server.db_path) as reader:
        envelopes = list(reader.iter_envelopes())
    stops = [(e.body.model, e.body.reason) for e in envelopes if e.type == "StopProcess"]
    assert stops == [("big", "ttl")]
    starts = [(e.body.model, e.body.reason) for e in envelopes if e.type == "StartProcess"]
    assert starts == [("big", "swap"), ("idle", "idle_model")]
