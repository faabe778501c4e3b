"""The activity table under retention: old rows deleted by age, a pruned log rebuilt without
losing the rows it can no longer recompute, the runner carrying on past a pruned stretch."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from llamaswap_es.projections.activity import ActivityProjection
from llamaswap_es.projections.activity_retention import DAY_MS, prune_activity
from llamaswap_es.projections.database import ProjectionDatabase
from llamaswap_es.projections.rebuild import rebuild_projections
from llamaswap_es.projections.runner import ProjectionRunner
from llamaswap_es.resources import resource_dir
from tests.fixtures.event_store import open_booted_store
from tests.projections.logs import write_story
from tests.projections.test_activity_projection import apply_all, by_request, rows

# Seqs of the story (tests/projections/logs.py) after the store's ServerStarted at 1: r4 is
# received at 14 and finished at 21; r5 is received at 22 and rejected at 23.
PRUNE_THROUGH = 15


async def _prune_log(db_path: Path, through: int = PRUNE_THROUGH) -> None:
    store = await open_booted_store(db_path)
    try:
        await store.save_snapshot(reducer_version="any", seq=through, digest="d", state=b"s")
        assert await store.prune_through(through) == through
    finally:
        await store.close()


async def test_rows_older_than_the_retention_go_in_chunks(db_path: Path) -> None:
    await write_story(db_path)
    apply_all(db_path)
    db = ProjectionDatabase(db_path)
    try:  # r1 and r2 finished at 4.5 s and 4.6 s; the cutoff is 5 s
        assert await prune_activity(db, days=1, now_ms=DAY_MS + 5_000, chunk=1) == 2
        assert await prune_activity(db, days=1, now_ms=DAY_MS + 5_000, chunk=1) == 0
        assert await prune_activity(db, days=0, now_ms=10 * DAY_MS) == 0  # off: keep all
    finally:
        db.close()
    assert sorted(by_request(db_path)) == ["r3", "r4", "r5"]
    assert [r[0] for r in rows(db_path)] == [3, 4, 5]  # the others keep their ids


async def test_rebuilding_a_pruned_log_keeps_what_it_cannot_recompute(
    db_path: Path, capsys
) -> None:
    from llamaswap_es.cli import main

    await write_story(db_path)
    apply_all(db_path)
    live = rows(db_path)
    await _prune_log(db_path)
    with sqlite3.connect(db_path) as conn:  # a stale row the rebuild must write again
        conn.execute("UPDATE activity SET error_msg = 'stale' WHERE request_id = 'r5'")
    assert main(["rebuild-projections", "--db", str(db_path)]) == 0
    out = capsys.readouterr().out
    assert "from 14 events (seq 16..29)" in out, out
    assert "activity: 1 rows (+4 kept: the log starts at seq 16" in out
    # r1..r3 ended before the log starts; r4 was received before it (its wait is known only
    # from the old row). r5 is folded again from the log, under the same id.
    assert rows(db_path) == live
    rebuild_projections(db_path)
    assert rows(db_path) == live


async def test_the_runner_continues_past_a_pruned_stretch(db_path: Path) -> None:
    await write_story(db_path)
    apply_all(db_path, stop_after=8)  # the checkpoint stays behind the prune point
    await _prune_log(db_path)
    store = await open_booted_store(db_path)
    db = ProjectionDatabase(db_path)
    runner = ProjectionRunner(db, store, activity=ActivityProjection(db.path))
    try:
        await runner.start()
        await runner.flush()
        assert runner.failure is None
        assert runner.applied_seq == await store.last_seq()
    finally:
        await runner.stop()
        db.close()
        await store.close()
    assert "r5" in by_request(db_path)


async def test_the_history_tables_in_this_file_go_by_the_same_cutoff(db_path: Path) -> None:
    """The history sink writes into the event log's own file by default (docs/fleet.md): its
    rows follow activityRetentionDays there, so the file stays bounded."""
    await write_story(db_path)
    apply_all(db_path)
    ddl = resource_dir("migrations") / "history" / "0001_history.sql"
    with sqlite3.connect(db_path) as conn:
        conn.executescript(ddl.read_text())
        for i, ts_ms in enumerate((1_000, 4_999, 5_000, 9_000)):
            conn.execute(
                "INSERT INTO history_requests (node, request_id, seq, day, ts_ms, model_id, "
                "recorded_ms) VALUES ('n', ?, ?, '1970-01-01', ?, 'a', ?)",
                (f"h{i}", i, ts_ms, ts_ms),
            )
            conn.execute(
                "INSERT INTO history_decisions (node, seq, day, ts_ms, kind, model_id, "
                "recorded_ms) VALUES ('n', ?, '1970-01-01', ?, 'load', 'a', ?)",
                (i, ts_ms, ts_ms),
            )
    db = ProjectionDatabase(db_path)
    try:
        assert await prune_activity(db, days=1, now_ms=DAY_MS + 5_000, chunk=1) == 2
        assert await prune_activity(db, days=0, now_ms=10 * DAY_MS) == 0  # off: keep all
    finally:
        db.close()
    with sqlite3.connect(db_path) as conn:
        kept = conn.execute("SELECT request_id FROM history_requests ORDER BY ts_ms").fetchall()
        decisions = conn.execute("SELECT seq FROM history_decisions ORDER BY seq").fetchall()
    assert kept == [("h2",), ("h3",)]
    assert decisions == [(2,), (3,)]
