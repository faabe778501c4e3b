"""Retention on a real server: a log whose early events are sixty days old is pruned behind its
snapshot at start-up, old activity rows go, recent ones and everything since stay, requests are
served as before, and the pruned log still verifies (the server fixture runs `replay verify`)."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import aiohttp

from llamaswap_es.projections.rebuild import rebuild_projections
from tests.fixtures.processes import wait_until
from tests.fixtures.server import config_text, fake_model, wait_json
from tests.runtime.log_builder import DAY_MS, LogBuilder

CHAT = "/v1/chat/completions"


def _history(db_path: Path) -> int:
    """Two earlier runs' worth of log, at -60 and -10 days; returns the old snapshot's seq."""
    builder = LogBuilder(db_path, models=("a",), base_ms=time.time_ns() // 1_000_000 - 60 * DAY_MS)
    builder.at(0).load("a")
    builder.serve("old-1", "a")
    builder.at(0.5).unload()
    old = builder.snapshot("old")
    builder.at(50).load("a")
    builder.serve("recent-1", "a")
    builder.unload()
    builder.snapshot("recent")
    builder.close()
    rebuild_projections(db_path)  # the activity rows those runs' servers would have written
    return old


def _query(db_path: Path, sql: str) -> list[tuple]:
    conn = sqlite3.connect(f"{db_path.as_uri()}?mode=ro", uri=True)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


async def test_old_events_and_activity_are_pruned_and_the_server_works_on(
    server_factory, tmp_path: Path
) -> None:
    db_path = tmp_path / "events.db"
    old_snapshot = _history(db_path)
    assert _query(db_path, "SELECT request_id FROM activity ORDER BY id") == [
        ("old-1",),
        ("recent-1",),
    ]
    header = "llamaswap-es:\n  eventRetentionDays: 30\n  activityRetentionDays: 30\n"
    server = server_factory(config_text([fake_model("a")], header), db_path=db_path)

    def pruned() -> bool:
        first = _query(db_path, "SELECT min(seq) FROM events")[0][0]
        old_rows = _query(db_path, "SELECT count(*) FROM activity WHERE request_id = 'old-1'")
        return first > old_snapshot and old_rows[0][0] == 0

    await wait_until(pruned, timeout_s=20, what="the start-up prune")
    assert _query(db_path, "SELECT min(seq) FROM events") == [(old_snapshot + 1,)]
    assert _query(db_path, "SELECT seq FROM snapshots ORDER BY seq")[0] == (old_snapshot,)
    recent = "SELECT count(*) FROM events WHERE key = 'recent-1'"
    assert _query(db_path, recent)[0][0] == 3  # received, dispatched, finished: all kept

    async with aiohttp.ClientSession() as http:
        body = {"model": "a", "messages": [{"role": "user", "content": "hi"}]}
        async with http.post(server.url + CHAT, json=body) as response:
            assert response.status == 200

        doc = await wait_json(  # the row is written by the projection, after the answer
            http, server.url + "/api/metrics/activity", lambda doc: len(doc["data"]) >= 2
        )
        ids = [entry["id"] for entry in doc["data"]]
    # recent-1 keeps id 2; the new request gets 3: ids are never reused, old-1's row is gone.
    assert sorted(ids) == [2, 3]
    assert _query(db_path, "SELECT request_id FROM activity WHERE id = 2") == [("recent-1",)]
    server.stop()
    # server_factory's teardown runs `replay verify` on this log: it starts from the snapshot.


async def test_retention_turned_on_by_a_reload_prunes_at_once(
    server_factory, tmp_path: Path
) -> None:
    db_path = tmp_path / "events.db"
    old_snapshot = _history(db_path)
    model = fake_model("a")
    keep_all = "llamaswap-es:\n  eventRetentionDays: 0\n  activityRetentionDays: 0\n"
    server = server_factory(config_text([model], keep_all), db_path=db_path)
    async with aiohttp.ClientSession() as http:
        async with http.get(server.url + "/api/version") as response:
            assert response.status == 200  # serving, its start-up (no-op) prune done or moot
        assert _query(db_path, "SELECT min(seq) FROM events") == [(1,)]  # 0: keep forever
        assert server.config_path is not None
        header = "llamaswap-es:\n  eventRetentionDays: 30\n  activityRetentionDays: 30\n"
        server.config_path.write_text(config_text([model], header))
        async with http.post(server.url + "/api/config/reload") as response:
            assert response.status == 200

    def pruned() -> bool:
        first = _query(db_path, "SELECT min(seq) FROM events")[0][0]
        old_rows = _query(db_path, "SELECT count(*) FROM activity WHERE request_id = 'old-1'")
        return first == old_snapshot + 1 and old_rows[0][0] == 0

    await wait_until(pruned, timeout_s=20, what="the prune after the reload")


async def test_a_config_without_our_section_prunes_by_the_default_retention(
    server_factory, tmp_path: Path
) -> None:
    """Defaults: events kept 7 days, activity 90 days. A log whose requests are 120, 60 and 10
    days old loses all three requests' events (behind the newest snapshot older than a week) and
    the 120-day-old activity row; the 60- and 10-day-old rows stay (activity outlives events)."""
    db_path = tmp_path / "events.db"
    now_ms = time.time_ns() // 1_000_000
    builder = LogBuilder(db_path, models=("a",), base_ms=now_ms - 120 * DAY_MS)
    builder.at(0).load("a")
    builder.serve("ancient-1", "a")
    builder.unload()
    builder.snapshot("ancient")
    builder.at(60).load("a")
    builder.serve("old-1", "a")
    builder.unload()
    builder.snapshot("old")
    builder.at(110).load("a")
    builder.serve("recent-1", "a")
    builder.unload()
    newest_expired = builder.snapshot("recent")  # 10 days old: older than the 7-day default
    builder.close()
    rebuild_projections(db_path)
    server = server_factory(config_text([fake_model("a")]), db_path=db_path)

    def pruned() -> bool:
        first = _query(db_path, "SELECT min(seq) FROM events")[0][0]
        ancient = _query(db_path, "SELECT count(*) FROM activity WHERE request_id = 'ancient-1'")
        return first > newest_expired and ancient[0][0] == 0

    await wait_until(pruned, timeout_s=20, what="the start-up prune by the default retention")
    assert _query(db_path, "SELECT min(seq) FROM events") == [(newest_expired + 1,)]
    keyed = "SELECT count(*) FROM events WHERE key IN ('ancient-1', 'old-1', 'recent-1')"
    assert _query(db_path, keyed) == [(0,)]
    assert _query(db_path, "SELECT request_id FROM activity ORDER BY id") == [
        ("old-1",),
        ("recent-1",),
    ]
    server.stop()
    # server_factory's teardown runs `replay verify` on this log: it starts from the snapshot.
