"""The active profile is event-sourced: switching it is a `ProfileActivated` in the log, so the
history says which pins each request met, and a reload (a new configuration) ends it."""

from __future__ import annotations

import aiohttp

from llamaswap_es.events.open_log import open_log
from tests.fixtures.server import config_text, fake_model

CHAT = "/v1/chat/completions"
PROFILES = "profiles:\n  big:\n    pins:\n      a: b\n"


async def _served_by(http: aiohttp.ClientSession, url: str, requested: str) -> str:
    body = {"model": requested, "messages": [{"role": "user", "content": "hi"}]}
    async with http.post(url + CHAT, json=body) as response:
        assert response.status == 200, await response.text()
        return (await response.json())["model"]


async def test_switching_a_profile_is_recorded_and_a_reload_ends_it(server_factory) -> None:
    server = server_factory(config_text([fake_model("a"), fake_model("b")], header=PROFILES))
    active = server.url + "/api/profiles/active"
    async with aiohttp.ClientSession() as http:
        assert await _served_by(http, server.url, "a") == "a"
        async with http.put(active, json={"name": "big"}) as response:
            assert response.status == 200 and (await response.json()) == {"active": "big"}
        assert await _served_by(http, server.url, "a") == "b"  # the pin applies at once
        async with http.post(server.url + "/api/config/reload") as response:
            assert response.status == 200
        async with http.get(server.url + "/api/profiles") as response:
            assert (await response.json())["active"] is None
        assert await _served_by(http, server.url, "a") == "a"
    with open_log(server.db_path) as reader:
        events = list(reader.iter_envelopes())
    order = [
        (e.type, getattr(e.body, "name", None) or getattr(e.body, "model", None))
        for e in events
        if e.type in ("ProfileActivated", "RequestReceived", "ConfigApplied")
    ]
    assert order == [
        ("ConfigApplied", None),
        ("RequestReceived", "a"),
        ("ProfileActivated", "big"),
        ("RequestReceived", "b"),
        ("ConfigApplied", None),
        ("RequestReceived", "a"),
    ]
