"""Where the history database is the event log's own file (the default), the history is a
projection on the standard library's sqlite3: its request rows are the `activity` table (a view,
so the file holds each request once) and `history_decisions` is written by the projection runner.
An old file's request copy is converted once, keeping every row the history showed (a forwarded
request's peer included), and a file an older version's history sink wrote continues from the
sink's checkpoint with no decision missing or written twice. A history database of its own is
still written by the sink (tests/projections/test_history_sink.py)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from llamaswap_es.events.open_log import open_log
from llamaswap_es.events.store import EventStore
from llamaswap_es.events.types import Envelope
from llamaswap_es.projections.activity import ActivityProjection
from llamaswap_es.projections.database import ProjectionDatabase
from llamaswap_es.projections.history.fold import DecisionFold
from llamaswap_es.projections.history.lifecycle import RETENTION_HOLD, read_log_id
from llamaswap_es.projections.history.local import DecisionProjection, prepare_local_history
from llamaswap_es.projections.history.sink import HistorySink
from llamaswap_es.projections.history.writer import HistoryWriter
from llamaswap_es.projections.runner import ProjectionRunner
from llamaswap_es.replay.verify import verify
from tests.events.test_old_payloads import old_log
from tests.fixtures.event_store import open_booted_store
from tests.projections.logs import STORY, write_story
from tests.projections.test_history_sink import log_id_of

COLUMNS = (
    "node, request_id, seq, day, ts_ms, model_id, requested_model, peer, req_path, method, "
    "stream, resp_content_type, resp_status_code, cache_tokens, draft_tokens, draft_acc_tokens, "
    "input_tokens, output_tokens, prompt_per_second, tokens_per_second, duration_ms, received_ms, "
    "dispatched_ms, queue_wait_ms, swap_wait_ms, ttfb_ms, bytes_out, error_msg, metadata_json"
)
"""Every history_requests column but `recorded_ms` (the view gives the row's own time)."""
DECISION = "seq, day, ts_ms, kind, model_id, instance, reason, detail, duration_ms"


def _query(path: Path, sql: str) -> list[tuple]:
    with sqlite3.connect(path) as conn:
        return conn.execute(sql).fetchall()


async def _start_local_history(path: Path, node: str) -> bool:
    """What a server start does to the file: True when the history is the local projection."""
    store = await EventStore.open(path)  # the event log's migrations (0006: activity.peer)
    await store.close()
    db = ProjectionDatabase(path)
    try:
        log_id = db.run_sync(read_log_id)
        return db.run_sync(lambda conn: prepare_local_history(conn, path, node, log_id))
    finally:
        db.close()


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

    assert await _start_local_history(path, "vm")
    assert _query(path, "SELECT type FROM sqlite_master WHERE name = 'history_requests'") == [
        ("view",)
    ]
    assert _query(path, f"SELECT {COLUMNS} FROM history_requests ORDER BY seq") == before
    assert _query(path, "SELECT peer FROM activity WHERE peer != ''") == [("gpu-b",)]
    # a restart (the view is made again) changes nothing
    assert await _start_local_history(path, "vm")
    assert _query(path, f"SELECT {COLUMNS} FROM history_requests ORDER BY seq") == before
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
    assert not await _start_local_history(path, "vm")  # the server writes through the sink
    assert _query(path, "SELECT type FROM sqlite_master WHERE name = 'history_requests'") == [
        ("table",)
    ]
    assert _query(path, "SELECT count(*) FROM history_requests") == [(42,)]


async def test_a_file_the_history_sink_wrote_continues_as_a_projection_exactly(
    db_path: Path,
) -> None:
    """The sink stops between a model's load and its ready (its fold remembers the load):
    the projection takes its checkpoint and state, and the decisions are those of one fold
    over the whole log, each once."""
    split = next(i for i, (_, e) in enumerate(STORY) if type(e).__name__ == "StopProcess")
    await write_story(db_path, STORY[: split + 3])  # … ProcessStopped a, StartProcess b
    store = await open_booted_store(db_path)
    try:
        path = store.path
        db = ProjectionDatabase(path)
        held: list[int] = []

        async def hold(seq: int) -> None:  # as the sink's server wired it: the `history` row
            held.append(seq)
            await db.run(
                lambda conn: conn.execute(
                    "INSERT OR REPLACE INTO projection_checkpoints (name, seq, state, updated_ms) "
                    "VALUES (?, ?, '{}', 0)",
                    (RETENTION_HOLD, seq),
                )
            )

        from llamaswap_es.projections.history.engine import open_history_database

        writer = HistoryWriter(
            open_history_database(f"sqlite:///{path}", path), node="node-a",
            log_id=log_id_of(path),
        )  # fmt: skip
        sink = HistorySink(writer, store, write_interval_s=0, hold_retention=hold)
        await sink.start()
        await sink.flush()
        await sink.stop()
        await writer.db.close()
        sink_seq = _query(path, "SELECT seq FROM history_checkpoints")[0][0]
        sink_rows = _query(path, "SELECT count(*) FROM history_decisions")[0][0]
        assert held[-1] == sink_seq and sink_rows == 7  # up to the load of b
        for ts, body in STORY[split + 3 :]:
            await store.append_batch([Envelope(body=body, ts_ms=ts)])

        log_id = await db.query(read_log_id)
        assert await db.run(lambda conn: prepare_local_history(conn, path, "node-a", log_id))
        checkpoints = dict(_query(path, "SELECT name, seq FROM projection_checkpoints"))
        assert RETENTION_HOLD not in checkpoints  # its own checkpoint holds retention instead
        assert checkpoints["history_decisions"] == sink_seq
        assert _query(path, "SELECT count(*) FROM history_checkpoints") == [(0,)]

        decisions = DecisionProjection(path, "node-a")
        runner = ProjectionRunner(
            db, store, activity=ActivityProjection(path), tables=[decisions], write_interval_s=0
        )
        await runner.start()
        await runner.flush()
        await runner.stop()
        db.close()

        fold = DecisionFold()
        expected = [
            row for env in await store.read() if (row := fold.step(env)) is not None
        ]
        cols = DECISION.split(", ")
        assert _query(path, f"SELECT {DECISION} FROM history_decisions ORDER BY seq") == [
            tuple(r[c] for c in cols) for r in expected
        ]
        assert decisions.decisions_written == len(expected) - sink_rows  # none written twice
        assert ("ready", "b", 1500) in _query(
            path, "SELECT kind, model_id, duration_ms FROM history_decisions"
        )  # the load began before the sink stopped: its state carried over
        assert [r[0] for r in _query(path, "SELECT request_id FROM history_requests")] == [
            "r1", "r2", "r3", "r4", "r5",
        ]  # fmt: skip
    finally:
        await store.close()


async def test_both_readers_answer_the_history_api_alike(tmp_path: Path) -> None:
    """One SQL text, two executors: the projections' sqlite3 connection and SQLAlchemy give the
    same pages for every sort, order and filter (round 1's fixture, 41 requests)."""
    from llamaswap_es.projections.activity_queries import parse_activity_query
    from llamaswap_es.projections.history.engine import EngineReader, open_history_database
    from llamaswap_es.projections.history.local import LocalHistory
    from llamaswap_es.projections.history.queries import list_history_activity

    path = old_log(tmp_path / "old.db")
    assert await _start_local_history(path, "vm")
    model = _query(path, "SELECT model_id FROM activity LIMIT 1")[0][0]
    db = ProjectionDatabase(path)
    engine = open_history_database(f"sqlite:///{path}", path)
    try:
        local, shared = LocalHistory(db, "vm"), EngineReader(engine)
        for params, models in (
            ({"sort": "id", "order": "asc", "limit": "7", "page": "2"}, []),
            ({"sort": "duration", "order": "desc"}, [model]),
            ({"sort": "gen_speed", "start": "2020-01-01T00:00:00Z", "end": "2099-01-01T00:00:00Z"},
             []),
        ):
            query = parse_activity_query(params, models)
            one = await list_history_activity(local, query, ["vm"])
            two = await list_history_activity(shared, query, ["vm"])
            assert one == two and one["data"], params
        assert (await list_history_activity(local, query, ["elsewhere"]))["total"] == 0
    finally:
        await engine.close()
        db.close()
