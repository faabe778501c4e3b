"""The history sink on real logs and real databases (an SQLite file, a real PostgreSQL).

Exactly once: every request and decision of the log lands once, a restart adds nothing, a
checkpoint set back writes nothing twice, an outage is waited out and caught up without a gap; a
second log under the same node name is refused; the run loop's buffer stays bounded meanwhile.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from sqlalchemy import text

from llamaswap_es.events.store import EventStore
from llamaswap_es.events.types import Envelope, Event, RequestFinished, RequestReceived
from llamaswap_es.projections.history.engine import HistoryDatabase, open_history_database
from llamaswap_es.projections.history.sink import HistorySink
from llamaswap_es.projections.history.writer import HistoryWriter
from tests.fixtures.event_store import open_booted_store
from tests.fixtures.postgres import PostgresServer
from tests.projections.logs import EXPECTED_WAITS, write_story

DEADLINE_S = 20.0


def log_id_of(db_path: Path) -> str:
    with sqlite3.connect(db_path) as conn:
        return str(conn.execute("SELECT id FROM log_identity").fetchone()[0])


async def until(condition: Callable[[], bool], what: str, timeout_s: float = DEADLINE_S) -> None:
    """Wait for `condition` (checked as the loop turns), failing with `what` at the deadline."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not condition():
        if asyncio.get_running_loop().time() > deadline:
            pytest.fail(f"timed out after {timeout_s}s waiting for: {what}")
        await asyncio.sleep(0.02)


class Node:
    """One node: its real event log and a history sink on a database (reopened per sink)."""

    def __init__(self, store: EventStore, url: str, name: str = "node-a") -> None:
        self.store = store
        self.url = url
        self.name = name
        self.sinks: list[HistorySink] = []

    def sink(self, **options: object) -> HistorySink:
        db = open_history_database(self.url, self.store.path)
        writer = HistoryWriter(db, node=self.name, log_id=log_id_of(self.store.path))
        sink = HistorySink(writer, self.store, write_interval_s=0, **options)  # type: ignore[arg-type]
        self.sinks.append(sink)
        return sink

    async def append(self, events: list[Event], ts_ms: int, *sinks: HistorySink) -> int:
        """Commit `events` and hand them to `sinks` as the run loop would; the last seq."""
        seqs = await self.store.append_batch([Envelope(body=e, ts_ms=ts_ms) for e in events])
        committed = [
            Envelope(body=e, ts_ms=ts_ms, seq=s) for e, s in zip(events, seqs, strict=True)
        ]
        for sink in sinks:
            sink.on_committed(committed)
        return seqs[-1]

    async def close(self) -> None:
        for sink in self.sinks:
            await sink.stop(flush_timeout_s=1)
            await sink.writer.db.close()


@pytest.fixture
async def node(db_path: Path, history_url: str) -> AsyncIterator[Node]:
    await write_story(db_path)
    store = await open_booted_store(db_path)
    node = Node(store, history_url)
    try:
        yield node
    finally:
        await node.close()
        await store.close()


async def rows(db: HistoryDatabase, sql: str) -> list[tuple]:
    async with db.engine.connect() as conn:
        return [tuple(r) for r in (await conn.execute(text(sql))).all()]


def request(rid: str, model: str = "b") -> list[Event]:
    return [
        RequestReceived(request_id=rid, model=model, path="/v1/chat/completions"),
        RequestFinished(request_id=rid, model=model, status=200, duration_ms=5),
    ]


async def test_every_request_and_decision_lands_once_and_a_restart_adds_nothing(
    node: Node,
) -> None:
    sink = node.sink()
    await sink.start()
    await sink.flush()
    db = sink.writer.db
    got = await rows(
        db,
        "SELECT request_id, node, model_id, resp_status_code, queue_wait_ms, swap_wait_ms, peer "
        "FROM history_requests ORDER BY seq",
    )
    assert [r[0] for r in got] == ["r1", "r2", "r3", "r4", "r5"]  # r6 is a GET, r7 unknown
    assert {r[0]: (r[4], r[5]) for r in got if r[0] in EXPECTED_WAITS} == EXPECTED_WAITS
    assert {r[1] for r in got} == {"node-a"} and got[4][3] == 429 and {r[6] for r in got} == {""}
    decisions = await rows(
        db, "SELECT kind, model_id, reason, detail, duration_ms FROM history_decisions ORDER BY seq"
    )
    assert decisions == [
        ("swap", "a", "", "", None),
        ("load", "a", "", "", None),
        ("ready", "a", "", "", 3000),
        ("swap", "b", "", "a", None),
        ("stop", "a", "evict", "", None),
        ("stopped", "a", "", "", 500),
        ("load", "b", "", "", None),
        ("ready", "b", "", "", 1500),
    ]
    assert sink.status().state == "current" and sink.status().lag_events == 0
    await sink.stop()

    again = node.sink()  # a restart: same database, same log
    await again.start()
    await again.flush()
    last = await node.append(request("x1"), 20_000, again)
    await again.wait_for(last)
    assert await rows(again.writer.db, "SELECT count(*) FROM history_requests") == [(6,)]
    assert await rows(again.writer.db, "SELECT count(*) FROM history_decisions") == [(8,)]
    assert await rows(again.writer.db, "SELECT seq FROM history_checkpoints") == [(last,)]


async def test_a_checkpoint_set_back_writes_nothing_twice(node: Node) -> None:
    sink = node.sink()
    await sink.start()
    await sink.flush()
    await sink.stop()
    async with sink.writer.db.engine.begin() as conn:  # as if the last commits were forgotten
        await conn.execute(text("UPDATE history_checkpoints SET seq = 0, state = '{}'"))
    again = node.sink()
    await again.start()
    await again.flush()
    db = again.writer.db
    assert await rows(db, "SELECT count(*), count(DISTINCT request_id) FROM history_requests") == [
        (5, 5)
    ]
    assert await rows(db, "SELECT count(*) FROM history_decisions") == [(8,)]
    assert again.requests_written == 5  # it did try: the keys kept them out


async def test_a_second_log_under_the_same_node_name_is_refused(node: Node, tmp_path: Path) -> None:
    first = node.sink()
    await first.start()
    await first.flush()
    other_path = tmp_path / "other.db"
    await write_story(other_path)
    other_store = await open_booted_store(other_path)
    other = Node(other_store, node.url, name="node-a")
    try:
        second = other.sink()
        await second.start()
        await until(lambda: second.status().state == "failing", "the second log to be refused")
        error = second.status().last_error or ""
        assert 'already holds node "node-a" written by another event log' in error
        assert "llamaswap-es.nodeName" in error
        assert await rows(first.writer.db, "SELECT count(*) FROM history_requests") == [(5,)]
    finally:
        await other.close()
        await other_store.close()


async def test_memory_stays_bounded_while_the_database_is_down_and_nothing_is_lost(
    db_path: Path, tmp_path: Path
) -> None:
    """An SQLite history file in a directory that does not exist yet: every write fails."""
    missing = tmp_path / "not-yet"
    store = await open_booted_store(db_path)
    node = Node(store, f"sqlite:///{missing / 'history.db'}")
    try:
        sink = node.sink(max_buffer=10)
        await sink.start()
        await until(lambda: sink.status().state == "failing", "the sink to report the fault")
        last = 0
        for i in range(30):  # far more than the buffer holds: it overflows, it never grows
            last = await node.append(request(f"q{i}"), 30_000 + i, sink)
            assert len(sink._buffer) <= 10
        status = sink.status()
        assert status.state == "failing" and status.lag_events >= 60
        assert "unable to open database file" in (status.last_error or "")
        missing.mkdir()  # the fault passes: the sink catches up from the log, exactly once
        await sink.wait_for(last)
        got = await rows(sink.writer.db, "SELECT request_id FROM history_requests ORDER BY seq")
        assert [r[0] for r in got] == [f"q{i}" for i in range(30)]
        assert sink.status().state in ("current", "behind") and sink.status().last_error is None
    finally:
        await node.close()
        await store.close()


async def test_postgresql_going_down_and_up_again_loses_and_repeats_nothing(
    db_path: Path, own_postgres: PostgresServer
) -> None:
    store = await open_booted_store(db_path)
    database = own_postgres.create_database()
    node = Node(store, own_postgres.url(database))
    try:
        sink = node.sink()
        await sink.start()
        last = await node.append(request("before"), 10_000, sink)
        await sink.wait_for(last)
        own_postgres.stop()
        during = [f"during-{i}" for i in range(20)]
        for i, rid in enumerate(during):
            last = await node.append(request(rid), 11_000 + i, sink)
        await until(lambda: sink.status().state == "failing", "the outage to be reported")
        assert sink.status().lag_events > 0 and sink.status().written_seq is not None
        own_postgres.start()
        await sink.wait_for(last, timeout_s=DEADLINE_S)
        after = await node.append(request("after"), 12_000, sink)
        await sink.wait_for(after)
    finally:
        await node.close()
        await store.close()
    got = own_postgres.query(database, "SELECT request_id FROM history_requests ORDER BY seq")
    assert [r[0] for r in got] == ["before", *during, "after"]
    (checkpoint,) = own_postgres.query(database, "SELECT seq FROM history_checkpoints")
    assert checkpoint == (after,)
