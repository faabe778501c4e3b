"""The activity table from a hand-written log: waits, tokens, what is recorded, checkpoints,
rebuilds. The log is written with the real store; the projection writes the real database."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from llamaswap_es.events.open_log import open_log
from llamaswap_es.events.types import PeerRequestFinished
from llamaswap_es.projections.activity import ActivityProjection
from llamaswap_es.projections.database import ProjectionDatabase, connect_writer
from llamaswap_es.projections.rebuild import rebuild_projections
from tests.fixtures.event_store import open_booted_store
from tests.projections.logs import EXPECTED_WAITS, STORY, write_story


def rows(db_path: Path) -> list[tuple]:
    with sqlite3.connect(db_path) as conn:
        return conn.execute("SELECT * FROM activity ORDER BY id").fetchall()


def by_request(db_path: Path) -> dict[str, dict]:
    with sqlite3.connect(db_path) as conn:
        conn.row_factory = sqlite3.Row
        return {r["request_id"]: dict(r) for r in conn.execute("SELECT * FROM activity")}


def apply_all(db_path: Path, chunk: int = 1000, stop_after: int | None = None) -> None:
    """Fold the log into the table the way the runner does: batches on a fresh projection."""
    conn = connect_writer(db_path)
    projection = ActivityProjection(db_path)
    try:
        with open_log(db_path) as reader:
            envelopes = list(reader.iter_envelopes())
        if stop_after is not None:
            envelopes = envelopes[:stop_after]
        for i in range(0, len(envelopes), chunk):
            projection.apply(conn, envelopes[i : i + chunk])
    finally:
        conn.close()


async def test_rows_carry_queue_and_swap_waits_and_the_reported_tokens(db_path: Path) -> None:
    await write_story(db_path)
    apply_all(db_path, chunk=3)
    found = by_request(db_path)
    assert sorted(found) == ["r1", "r2", "r3", "r4", "r5"]  # no GET, no unknown model
    for rid, (queue_wait, swap_wait) in EXPECTED_WAITS.items():
        assert (found[rid]["queue_wait_ms"], found[rid]["swap_wait_ms"]) == (queue_wait, swap_wait)
    r1 = found["r1"]
    assert (r1["input_tokens"], r1["output_tokens"], r1["cache_tokens"]) == (11, 20, 3)
    assert (r1["prompt_per_second"], r1["tokens_per_second"]) == (110.0, 50.0)
    assert (r1["draft_tokens"], r1["draft_acc_tokens"]) == (-1, -1)
    assert r1["duration_ms"] == 3000 + 400  # includes the wait, as llama-swap's does
    assert (r1["ts_created"], r1["ts_ms"], r1["model_id"]) == (4, 4500, "a")
    assert (r1["requested_model"], r1["ttfb_ms"], r1["bytes_out"]) == ("a-alias", 40, 1234)
    assert r1["metadata_json"] == '{"session_id": "s-1"}'
    r5 = found["r5"]
    assert (r5["resp_status_code"], r5["error_msg"], r5["queue_wait_ms"]) == (
        429,
        "Too many requests",
        None,
    )
    assert [found[r]["id"] for r in ("r1", "r2", "r3", "r4", "r5")] == [1, 2, 3, 4, 5]


@pytest.mark.parametrize("chunk", [1, 4, 1000])
async def test_any_batching_gives_the_same_table(db_path: Path, chunk: int) -> None:
    await write_story(db_path)
    apply_all(db_path, chunk=chunk)
    live = rows(db_path)
    rebuild_projections(db_path)
    assert rows(db_path) == live


async def test_a_restart_resumes_from_the_checkpoint_without_counting_twice(db_path: Path) -> None:
    await write_story(db_path)
    apply_all(db_path, chunk=2, stop_after=7)  # r1 and r2 are dispatched, not finished yet
    with sqlite3.connect(db_path) as conn:
        seq, state = conn.execute(
            "SELECT seq, state FROM projection_checkpoints WHERE name = 'activity'"
        ).fetchone()
    assert seq == 7 and '"r1"' in state  # r1's receipt and dispatch survive in the checkpoint
    # A new server: a fresh projection object reads the checkpoint and gets the whole log again.
    apply_all(db_path, chunk=5)
    resumed = rows(db_path)
    assert len(resumed) == 5
    assert by_request(db_path)["r1"]["queue_wait_ms"] == 3000
    rebuild_projections(db_path)
    assert rows(db_path) == resumed


async def test_the_rebuild_command_reports_what_it_did(db_path: Path, capsys) -> None:
    from llamaswap_es.cli import main

    await write_story(db_path)
    assert main(["rebuild-projections", "--db", str(db_path)]) == 0
    out = capsys.readouterr().out
    assert "from 28 events (seq 1..28)" in out and "activity: 5 rows" in out
    assert len(rows(db_path)) == 5


async def test_the_rebuild_command_refuses_while_a_server_holds_the_log(db_path: Path) -> None:
    from llamaswap_es.events.errors import StoreLockedError

    async with await open_booted_store(db_path):
        with pytest.raises(StoreLockedError, match="in use by another llamaswap-es server"):
            rebuild_projections(db_path)


async def test_the_projection_database_writes_off_the_event_loop(db_path: Path) -> None:
    await write_story(db_path)
    db = ProjectionDatabase(db_path)
    try:
        projection = ActivityProjection(db.path)
        with open_log(db_path) as reader:
            envelopes = list(reader.iter_envelopes())
        applied = await db.run(lambda conn: projection.apply(conn, envelopes))
        assert [(r.id, r.request_id) for r in applied][:2] == [(1, "r1"), (2, "r2")]
        count = await db.query(
            lambda conn: conn.execute("SELECT count(*) FROM activity").fetchone()
        )
        assert count == (5,)
        assert await db.run(lambda conn: projection.apply(conn, envelopes)) == []  # all seen
    finally:
        db.close()


def _peer(rid: str, status: int = 200, method: str = "POST", **fields) -> PeerRequestFinished:
    return PeerRequestFinished(
        request_id=rid, model="p1/remote", peer="p1", path="/v1/chat/completions",
        method=method, stream=True, status=status, received_ms=9_000, duration_ms=450,
        ttfb_ms=30, bytes_out=800, content_type="text/event-stream", **fields,
    )  # fmt: skip


async def test_peer_requests_are_rows_under_the_requested_name_without_scheduler_waits(
    db_path: Path,
) -> None:
    metrics = {"input_tokens": 5, "output_tokens": 9, "cache_tokens": -1, "duration_ms": 400}
    story = [
        *STORY[:12],  # r1..r3 served locally
        (9_450, _peer("p-ok", metrics=metrics, metadata={"selector": "s"})),
        (9_500, _peer("p-down", status=502, error="peer proxy error: unreachable")),
        (9_600, _peer("p-get", method="GET")),
    ]
    await write_story(db_path, story)
    apply_all(db_path, chunk=2)
    found = by_request(db_path)
    assert sorted(found) == ["p-down", "p-ok", "r1", "r2", "r3"]  # a GET is not recorded
    ok = found["p-ok"]
    assert (ok["model_id"], ok["requested_model"], ok["req_path"]) == (
        "p1/remote", "p1/remote", "/v1/chat/completions",
    )  # fmt: skip
    assert (ok["input_tokens"], ok["output_tokens"], ok["cache_tokens"]) == (5, 9, -1)
    assert (ok["duration_ms"], ok["ttfb_ms"], ok["bytes_out"], ok["stream"]) == (450, 30, 800, 1)
    assert (ok["received_ms"], ok["ts_ms"], ok["resp_status_code"]) == (9_000, 9_450, 200)
    assert (ok["dispatched_ms"], ok["queue_wait_ms"], ok["swap_wait_ms"]) == (None, None, None)
    assert ok["metadata_json"] == '{"selector": "s"}'
    down = found["p-down"]
    assert (down["resp_status_code"], down["error_msg"]) == (502, "peer proxy error: unreachable")
    assert (down["input_tokens"], down["output_tokens"]) == (0, 0)
    live = rows(db_path)
    rebuild_projections(db_path)
    assert rows(db_path) == live
