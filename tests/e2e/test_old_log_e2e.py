"""A real server on a log written by llamaswap-es 0.1.0 (every payload field written out): it
serves on, its new rows leave null and empty fields out, the activity history continues, and
the mixed log verifies (the server fixture runs `replay verify` on it at teardown)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import aiohttp

from tests.events.test_old_payloads import old_log
from tests.fixtures.server import config_text, fake_model, wait_json

CHAT = "/v1/chat/completions"


async def test_a_server_on_an_old_log_serves_and_the_log_verifies(
    server_factory, tmp_path: Path
) -> None:
    db_path = old_log(tmp_path / "events.db")
    keep_all = "llamaswap-es:\n  eventRetentionDays: 0\n  activityRetentionDays: 0\n"
    server = server_factory(config_text([fake_model("bench")], keep_all), db_path=db_path)
    async with aiohttp.ClientSession() as http:
        body = {"model": "bench", "messages": [{"role": "user", "content": "hi"}]}
        async with http.post(server.url + CHAT, json=body) as response:
            assert response.status == 200
        doc = await wait_json(
            http, server.url + "/api/metrics/activity", lambda doc: doc["total"] >= 42
        )
    assert doc["total"] == 42  # the 41 old requests and the new one
    server.stop()
    conn = sqlite3.connect(f"{db_path.as_uri()}?mode=ro", uri=True)
    [(old, new)] = conn.execute(
        "SELECT max(length(payload)) FILTER (WHERE payload LIKE '%\"priority\":null%'),"
        " count(*) FILTER (WHERE type = 'RequestReceived' AND payload NOT LIKE '%\"priority\":%')"
        " FROM events"
    ).fetchall()
    conn.close()
    assert old is not None and new == 1  # old rows as written, the new one without its nulls
