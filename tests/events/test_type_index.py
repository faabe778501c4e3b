"""The `events_by_type` index leaves the per-request rows out (migration 0005), and a read of the
other types still finds them through it."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from llamaswap_es.events.reader import DatabaseReader
from llamaswap_es.events.rows import TYPE_INDEX_WHERE
from llamaswap_es.events.store import EventStore
from llamaswap_es.events.types import Envelope, ProcessExited, RequestFinished, RequestReceived


async def _log(path: Path, requests: int) -> None:
    store = await EventStore.open(path)
    try:
        for i in range(requests):
            rid = f"r-{i:04d}"
            await store.append_batch(
                [
                    Envelope(RequestReceived(request_id=rid, model="m"), ts_ms=1_000 + i),
                    Envelope(RequestFinished(request_id=rid, model="m", status=200), 1_000 + i),
                ]
            )
            if i % 50 == 0:
                await store.append_batch([Envelope(ProcessExited(model="m", instance=1), 1_000)])
    finally:
        await store.close()


async def test_per_request_rows_are_not_indexed_by_type(db_path: Path) -> None:
    await _log(db_path, 200)
    conn = sqlite3.connect(db_path)
    try:
        [(sql,)] = conn.execute(
            "SELECT sql FROM sqlite_master WHERE name = 'events_by_type'"
        ).fetchall()
        assert " ".join(sql.split()).endswith(f"WHERE {TYPE_INDEX_WHERE}")
        indexed = conn.execute(
            f"SELECT count(*) FROM events INDEXED BY events_by_type WHERE {TYPE_INDEX_WHERE}"
        ).fetchone()[0]
        total = conn.execute("SELECT count(*) FROM events").fetchone()[0]
    finally:
        conn.close()
    assert total > 400 and indexed == total - 400  # ServerStarted and the exits only


async def test_a_read_of_other_types_uses_the_index_and_finds_every_row(db_path: Path) -> None:
    await _log(db_path, 200)
    statements: list[str] = []
    with DatabaseReader(db_path) as reader:
        reader._conn.set_trace_callback(statements.append)
        exits = reader.read(types=["ProcessExited"], from_seq=1)
        requests = reader.read(types=["RequestReceived"], key="r-0007")
        reader._conn.set_trace_callback(None)
        [select] = [s for s in statements if "ProcessExited" in s]
        plan = reader._conn.execute(f"EXPLAIN QUERY PLAN {select}").fetchall()
    assert len(exits) == 4 and all(isinstance(e.body, ProcessExited) for e in exits)
    assert [e.body.request_id for e in requests] == ["r-0007"]
    assert any("USING INDEX events_by_type" in row[-1] for row in plan), plan
