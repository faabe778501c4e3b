"""Where the history database is the event log's own file (the default), its request rows are
the `activity` table (a view): the file holds each request once. An old file's copy is converted
once, keeping every row the history showed (a forwarded request's peer included); a history
database of its own is still written as before (tests/projections/test_history_sink.py)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from llamaswap_es.events.open_log import open_log
from llamaswap_es.events.store import EventStore
from llamaswap_es.projections.history.engine import open_history_database
from llamaswap_es.projections.history.writer import HistoryWriter
from llamaswap_es.replay.verify import verify
from tests.events.test_old_payloads import old_log
from tests.projections.test_history_sink import log_id_of

COLUMNS = (
    "node, request_id, seq, day, ts_ms, model_id, requested_model, peer, req_path, method, "
    "stream, resp_content_type, resp_status_code, cache_tokens, draft_tokens, draft_acc_tokens, "
    "input_tokens, output_tokens, prompt_per_second, tokens_per_second, duration_ms, received_ms, "
    "dispatched_ms, queue_wait_ms, swap_wait_ms, ttfb_ms, bytes_out, error_msg, metadata_json"
)
"""Every history_requests column but `recorded_ms` (the view gives the row's own time)."""


def _query(path: Path, sql: str) -> list[tuple]:
    with sqlite3.connect(path) as conn:
        return conn.execute(sql).fetchall()


async def _start_local_history(path: Path, node: str) -> HistoryWriter:
    store = await EventStore.open(path)  # the event log's migrations (0006: activity.peer)
    await store.close()
    writer = HistoryWriter(open_history_database("", path), node=node, log_id=log_id_of(path))
    await writer.checkpoint()
    return writer


async def test_an_old_file_drops_its_copy_and_the_history_shows_the_same_rows(
    tmp_path: Path,
) -> None:
    path = old_log(tmp_path / "old.db")  # round 1's fixture: 41 requests, node "vm"
    forwarded = _query(path, "SELECT request_id FROM history_requests ORDER BY seq LIMIT 1")[0][0]
    with sqlite3.connect(path) as conn:  # as a front node records a request a peer served
        conn.execute(
            "UPDATE history_requests SET peer = 'gpu-b' WHERE request_id = ?", (forwarded,)
        )
    before = _query(path, f"SELECT {COLUMNS} FROM history_requests ORDER BY seq")
    assert len(before) == 41

    writer = await _start_local_history(path, "vm")
    try:
        assert writer.requests_in_activity
        assert _query(path, "SELECT type FROM sqlite_master WHERE name = 'history_requests'") == [
            ("view",)
        ]
        assert _query(path, f"SELECT {COLUMNS} FROM history_requests ORDER BY seq") == before
        assert _query(path, "SELECT peer FROM activity WHERE peer != ''") == [("gpu-b",)]
        # a restart (the view is made again) changes nothing
        await writer.db.close()
        writer = await _start_local_history(path, "vm")
        assert _query(path, f"SELECT {COLUMNS} FROM history_requests ORDER BY seq") == before
    finally:
        await writer.db.close()
    with open_log(path) as reader:
        report = verify(reader)
    assert report.ok, report.to_text()


async def test_rows_another_log_wrote_keep_the_table(tmp_path: Path) -> None:
    path = old_log(tmp_path / "old.db")
    with sqlite3.connect(path) as conn:  # another node pointed its historyDatabase here
        conn.execute("INSERT INTO history_checkpoints (node, log_id) VALUES ('gpu-b', 'other')")
        conn.execute(
            "INSERT INTO history_requests (node, request_id, seq, day, ts_ms, model_id, "
            "recorded_ms) VALUES ('gpu-b', 'x', 1, '2026-12-06', 1, 'm', 1)"
        )
    writer = await _start_local_history(path, "vm")
    try:
        assert not writer.requests_in_activity
        assert _query(path, "SELECT type FROM sqlite_master WHERE name = 'history_requests'") == [
            ("table",)
        ]
        assert _query(path, "SELECT count(*) FROM history_requests") == [(42,)]
    finally:
        await writer.db.close()
