"""The runner: catches up from the log in pages, follows commits, survives a buffer overflow."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from prometheus_client import CollectorRegistry

from llamaswap_es.errors import StoreError
from llamaswap_es.events.store import EventStore
from llamaswap_es.events.types import Envelope, RequestFinished, RequestReceived
from llamaswap_es.projections.activity import ActivityProjection
from llamaswap_es.projections.database import ProjectionDatabase
from llamaswap_es.projections.history.local import LocalHistory
from llamaswap_es.projections.metrics import ModelMetrics
from llamaswap_es.projections.runner import ProjectionRunner
from tests.fixtures.event_store import open_booted_store
from tests.projections.logs import write_story


def request_ids(db_path: Path) -> list[str]:
    with sqlite3.connect(db_path) as conn:
        return [r[0] for r in conn.execute("SELECT request_id FROM activity ORDER BY id")]


async def test_catch_up_then_overflow_then_live_without_gaps_or_repeats(db_path: Path) -> None:
    await write_story(db_path)  # 5 rows' worth, read back in pages of 4 events at start
    store = await open_booted_store(db_path)
    db = ProjectionDatabase(db_path)
    metrics = ModelMetrics(CollectorRegistry())
    runner = ProjectionRunner(
        db, store, activity=ActivityProjection(db.path), memory=[metrics], max_buffer=3, page=4
    )
    published: list[int] = []

    def broken_listener(rows: list) -> None:
        raise RuntimeError("a listener bug must not stop the projections")

    runner.add_row_listener(lambda rows: published.extend(r.id for r in rows))
    runner.add_row_listener(broken_listener)
    try:
        await runner.start()
        await runner.flush()
        assert request_ids(db_path) == ["r1", "r2", "r3", "r4", "r5"]
        # More traffic than the buffer holds: the runner reads the missed seqs from the log.
        events = []
        for i in range(4):
            events += [
                RequestReceived(request_id=f"x{i}", model="b", path="/v1/completions"),
                RequestFinished(request_id=f"x{i}", model="b", status=200),
            ]
        seqs = await store.append_batch([Envelope(body=e, ts_ms=20_000) for e in events])
        runner.on_committed(
            [Envelope(body=e, ts_ms=20_000, seq=s) for e, s in zip(events, seqs, strict=True)]
        )
        await runner.flush()
        assert request_ids(db_path)[5:] == ["x0", "x1", "x2", "x3"]
        # Live: one small batch that fits, delivered by the listener alone.
        more = (
            RequestReceived(request_id="y", model="a"),
            RequestFinished(request_id="y", model="a", status=200),
        )
        seqs = await store.append_batch([Envelope(body=e, ts_ms=21_000) for e in more])
        runner.on_committed(
            [Envelope(body=e, ts_ms=21_000, seq=s) for e, s in zip(more, seqs, strict=True)]
        )
        runner.on_committed(  # a repeat of what was already applied is ignored
            [Envelope(body=e, ts_ms=21_000, seq=s) for e, s in zip(more, seqs, strict=True)]
        )
        await runner.flush()
        assert await runner.lag() == 0
    finally:
        await runner.stop()
        db.close()
        await store.close()
    assert request_ids(db_path)[-1:] == ["y"] and len(request_ids(db_path)) == 10
    assert published == list(range(1, 11))
    assert metrics.seq == runner.applied_seq


async def _serve_one(store: EventStore, runner: ProjectionRunner, request_id: str) -> None:
    """One request's received and finished events, committed and handed to the runner live."""
    events = (
        RequestReceived(request_id=request_id, model="m"),
        RequestFinished(request_id=request_id, model="m", status=200),
    )
    seqs = await store.append_batch([Envelope(body=e, ts_ms=1_000) for e in events])
    runner.on_committed(
        [Envelope(body=e, ts_ms=1_000, seq=s) for e, s in zip(events, seqs, strict=True)]
    )
    await runner.flush()


class _FailsOnce:
    """A table projection whose first write meets a store fault (a full disk, a lock held too
    long), after the activity rows of the same batch have committed."""

    name = "fails_once"

    def __init__(self) -> None:
        self.failed = False

    def load(self, conn: sqlite3.Connection) -> int:
        return 0

    def apply(self, conn: sqlite3.Connection, envelopes: object) -> None:
        if not self.failed:
            self.failed = True
            raise StoreError("the disk holding the event log is full")


async def test_rows_written_before_a_table_fails_are_published_once_after_the_retry(
    db_path: Path,
) -> None:
    store = await open_booted_store(db_path)
    db = ProjectionDatabase(db_path)
    table = _FailsOnce()
    runner = ProjectionRunner(db, store, activity=ActivityProjection(db.path), tables=[table])
    published: list[str] = []
    runner.add_row_listener(lambda rows: published.extend(r.request_id for r in rows))
    try:
        await runner.start()
        await _serve_one(store, runner, "a")
    finally:
        await runner.stop()
        db.close()
        await store.close()
    assert table.failed
    assert request_ids(db_path) == ["a"]
    assert published == ["a"]


class _Broken:
    """A table projection with a bug: every write raises."""

    def __init__(self, name: str) -> None:
        self.name = name

    def load(self, conn: sqlite3.Connection) -> int:
        return 0

    def apply(self, conn: sqlite3.Connection, envelopes: object) -> None:
        raise KeyError("a bug in the fold")


async def test_a_bug_in_one_table_projection_stops_it_alone_and_activity_goes_on(
    db_path: Path,
) -> None:
    store = await open_booted_store(db_path)
    db = ProjectionDatabase(db_path)
    local = LocalHistory(db, "box-1")
    broken = _Broken(local.projection.name)  # the local history's decisions, with a bug
    runner = ProjectionRunner(db, store, activity=ActivityProjection(db.path), tables=[broken])
    local.follow(runner)
    try:
        await runner.start()
        for rid in ("a", "b"):
            await _serve_one(store, runner, rid)
        status = local.status()
    finally:
        await runner.stop()
        db.close()
        await store.close()
    assert runner.failure is None and list(runner.table_failures) == [broken.name]
    assert request_ids(db_path) == ["a", "b"]
    assert status.state == "stopped" and "a bug in the fold" in (status.last_error or "")
