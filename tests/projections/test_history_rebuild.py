"""`rebuild-projections` and the local history's `history_decisions`: after a rebuild the table
holds what one fold of the log gives (stale, missing and invented rows corrected), on a whole
log and on one retention pruned, under the node name the server wrote; other nodes' rows and a
history the file does not follow are left alone."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from llamaswap_es.cli import main
from llamaswap_es.events.open_log import open_log
from llamaswap_es.projections.database import connect_writer
from llamaswap_es.projections.history.fold import DecisionFold
from llamaswap_es.projections.history.local import DecisionProjection
from llamaswap_es.projections.history.local_rebuild import DecisionsRebuild
from llamaswap_es.projections.rebuild import rebuild_projections
from tests.projections.logs import write_story
from tests.projections.test_activity_retention import _prune_log
from tests.projections.test_history_local_view import _query, _start_local_history

ROW = "node, seq, day, ts_ms, kind, model_id, instance, reason, detail, duration_ms"


def _fold_the_log(path: Path, node: str) -> list[tuple]:
    """The rows one fold of the whole log gives, as the server's projection stamps them."""
    fold = DecisionFold()
    with open_log(path) as reader:
        rows = [row for env in reader.iter_envelopes() if (row := fold.step(env)) is not None]
    columns = ROW.split(", ")
    return [tuple({**r, "node": node}[c] for c in columns) for r in rows]


def _decisions(path: Path, where: str = "") -> list[tuple]:
    return _query(path, f"SELECT {ROW} FROM history_decisions {where} ORDER BY node, seq")


async def _served(path: Path, node: str) -> None:
    """The log, and the local history a server named `node` wrote from it."""
    await write_story(path)
    assert await _start_local_history(path, node)
    conn = connect_writer(path)
    try:
        projection = DecisionProjection(path, node)
        with open_log(path) as reader:
            envelopes = list(reader.iter_envelopes())
        for i in range(0, len(envelopes), 3):
            projection.apply(conn, envelopes[i : i + 3])
    finally:
        conn.close()


def _damage(path: Path, node: str) -> None:
    """Rows as a bug (or a hand) could leave them: one stale, one missing, one invented."""
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE history_decisions SET detail = 'stale' WHERE kind = 'stopped'")
        conn.execute("DELETE FROM history_decisions WHERE kind = 'ready' AND model_id = 'b'")
        conn.execute(
            "INSERT INTO history_decisions (node, seq, day, ts_ms, kind, model_id, instance, "
            "reason, detail, recorded_ms) VALUES (?, 999, '2026-12-07', 1, 'load', 'ghost', 1, "
            "'', '', 1)",
            (node,),
        )


async def test_a_rebuild_refolds_the_decisions_as_one_fold_of_the_log(db_path: Path) -> None:
    await _served(db_path, "node-a")
    live = _decisions(db_path)
    assert live == _fold_the_log(db_path, "node-a") and len(live) == 8
    with sqlite3.connect(db_path) as conn:  # another node's rows, written through its sink
        conn.execute(
            "INSERT INTO history_checkpoints (node, log_id, seq, state, updated_ms) "
            "VALUES ('gpu-b', 'another-log', 1, '{}', 0)"
        )
        conn.execute(
            "INSERT INTO history_decisions (node, seq, day, ts_ms, kind, model_id, instance, "
            "reason, detail, recorded_ms) VALUES ('gpu-b', 3, '2026-12-07', 1, 'load', 'm', 1, "
            "'', '', 1)"
        )
    others = _decisions(db_path, "WHERE node = 'gpu-b'")
    _damage(db_path, "node-a")

    report = rebuild_projections(db_path)

    assert _decisions(db_path, "WHERE node = 'node-a'") == live
    assert _decisions(db_path, "WHERE node = 'gpu-b'") == others
    assert report.decisions is not None
    assert (report.decisions.node, report.decisions.rows) == ("node-a", 8)
    last_seq = _query(db_path, "SELECT max(seq) FROM events")[0][0]
    assert _query(
        db_path, "SELECT seq FROM projection_checkpoints WHERE name = 'history_decisions'"
    ) == [(last_seq,)]  # the next server start continues after the log, adding nothing twice


async def test_a_pruned_log_keeps_the_older_decisions_and_their_durations(db_path: Path) -> None:
    """Through seq 16 (a's StopProcess) the events are gone: its row stays, and the stop it
    began still gives a's `stopped` row its duration (500 ms) when that row is refolded."""
    await _served(db_path, "node-a")
    live = _decisions(db_path)
    await _prune_log(db_path, through=16)
    _damage(db_path, "node-a")

    report = rebuild_projections(db_path)

    assert _decisions(db_path) == live
    assert ("stopped", "a", 500) in _query(
        db_path, "SELECT kind, model_id, duration_ms FROM history_decisions"
    )
    assert report.decisions is not None
    assert (report.decisions.rows, report.decisions.kept) == (3, 5)


async def test_the_command_says_which_node_and_can_be_given_another(
    db_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    await _served(db_path, "node-a")

    assert main(["rebuild-projections", "--db", str(db_path)]) == 0
    out = capsys.readouterr().out
    assert "history_decisions: 8 rows, node node-a (the node its rows name)" in out, out

    # The server's nodeName changed: a fresh fold would stamp every row with the new name.
    assert main(["rebuild-projections", "--db", str(db_path), "--node", "renamed"]) == 0
    assert "history_decisions: 8 rows, node renamed (--node)" in capsys.readouterr().out
    assert _decisions(db_path) == _fold_the_log(db_path, "renamed")


async def test_a_node_name_another_log_writes_under_is_refused(
    db_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    await _served(db_path, "node-a")
    with sqlite3.connect(db_path) as conn:
        conn.execute(
            "INSERT INTO history_checkpoints (node, log_id, seq, state, updated_ms) "
            "VALUES ('gpu-b', 'another-log', 1, '{}', 0)"
        )
    before = _decisions(db_path)

    assert main(["rebuild-projections", "--db", str(db_path), "--node", "gpu-b"]) == 1
    err = capsys.readouterr().err
    assert 'node "gpu-b"' in err and "another event log" in err and "--node" in err, err
    assert _decisions(db_path) == before


async def test_a_history_this_file_does_not_follow_is_left_as_it_is(
    db_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """historySink off (or the history elsewhere) released the projection's checkpoint: the
    table is no projection of this log any more, and a server start does not fold into it."""
    await _served(db_path, "node-a")
    _damage(db_path, "node-a")
    with sqlite3.connect(db_path) as conn:
        conn.execute("DELETE FROM projection_checkpoints WHERE name = 'history_decisions'")
    before = _decisions(db_path)

    assert main(["rebuild-projections", "--db", str(db_path)]) == 0
    out = capsys.readouterr().out
    assert "history_decisions: not followed in this file" in out, out
    assert _decisions(db_path) == before


async def test_a_rebuild_stopped_before_its_first_page_is_redone_by_the_next(
    db_path: Path,
) -> None:
    """Emptying the decisions is committed before the fold writes its first page: a rebuild
    stopped there (Ctrl-C, a failure) must leave the file still following the local history,
    so the next rebuild refolds it instead of leaving it empty."""
    await _served(db_path, "node-a")
    live = _decisions(db_path)
    conn = connect_writer(db_path)
    try:
        DecisionsRebuild.start(conn, db_path, first_seq=1, node=None)  # and then it stops
    finally:
        conn.close()
    assert _decisions(db_path) == []

    rebuild_projections(db_path, node="node-a")  # no row is left to take the name from

    assert _decisions(db_path) == live
