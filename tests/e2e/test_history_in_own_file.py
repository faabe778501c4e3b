"""A single box (historyDatabase unset): the fleet Activity API lists every request, from the
activity table itself; the event-log file holds no second copy of them. Real server, real fake
upstream; the fixture replays the log at teardown."""

from __future__ import annotations

import sqlite3

import aiohttp

from tests.e2e.test_keep_alive_and_queue_timeout import CHAT, HI
from tests.fixtures.server import config_text, fake_model, wait_json


async def test_the_local_history_lists_each_request_once_from_activity(server_factory) -> None:
    header = "llamaswap-es:\n  nodeName: box"
    server = server_factory(config_text([fake_model("a")], header=header))
    async with aiohttp.ClientSession() as http:
        for _ in range(3):
            async with http.post(server.url + CHAT, json={"model": "a", "messages": HI}) as r:
                assert r.status == 200
        doc = await wait_json(
            http, f"{server.url}/api/history/activity", lambda doc: doc.get("total") == 3
        )
        async with http.get(f"{server.url}/api/metrics/activity") as r:
            local = (await r.json())["data"]
    assert {e["node"] for e in doc["data"]} == {"box"}
    assert sorted(e["request_id"] for e in doc["data"]) == sorted(e["request_id"] for e in local)
    with sqlite3.connect(f"file:{server.db_path}?mode=ro", uri=True) as conn:
        kinds = dict(
            conn.execute("SELECT name, type FROM sqlite_master WHERE name LIKE 'history_%'")
        )
    assert kinds["history_requests"] == "view"
    assert kinds["history_decisions"] == "table"
