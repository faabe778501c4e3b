"""Pruning the log behind a snapshot: what goes, what stays, and appends carrying on meanwhile."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from llamaswap_es.events.errors import StoreError
from llamaswap_es.events.open_log import open_log
from llamaswap_es.events.store import EventStore
from llamaswap_es.events.types import Envelope, RequestReceived
from tests.fixtures.event_store import open_booted_store


def _reqs(first: int, n: int) -> list[Envelope]:
    return [
        Envelope(body=RequestReceived(request_id=f"r{i}", model="m"), ts_ms=1000 + i)
        for i in range(first, first + n)
    ]


def _seqs(path: Path, table: str) -> list[int]:
    with sqlite3.connect(path) as conn:
        return [r[0] for r in conn.execute(f"SELECT seq FROM {table} ORDER BY seq")]


async def _snapshot(store: EventStore, seq: int, version: str = "core-test") -> None:
    await store.save_snapshot(reducer_version=version, seq=seq, digest=f"d{seq}", state=b"s")


async def test_prune_deletes_through_the_snapshot_and_keeps_it(store: EventStore) -> None:
    await store.append_batch(_reqs(0, 99))  # seqs 2..100 after ServerStarted at 1
    for seq in (10, 40, 70):
        await _snapshot(store, seq)
    await _snapshot(store, 20, version="core-old")
    deleted = await store.prune_through(40, chunk=7)
    assert deleted == 40
    assert _seqs(store.path, "events") == list(range(41, 101))
    assert _seqs(store.path, "snapshots") == [40, 70]  # older ones, of every version, are gone
    assert await store.append_batch(_reqs(200, 2)) == [101, 102]
    with open_log(store.path) as reader:
        assert [e.seq for e in reader.iter_envelopes()] == list(range(41, 103))
        assert reader.first_seq() == 41 and reader.last_seq() == 102


async def test_seqs_are_not_reused_after_a_prune_and_a_reopen(db_path: Path) -> None:
    store = await open_booted_store(db_path)
    await store.append_batch(_reqs(0, 9))
    await _snapshot(store, 5)
    await store.prune_through(5)
    await store.close()
    reopened = await open_booted_store(db_path)
    try:
        assert await reopened.last_seq() == 11  # its ServerStarted follows seq 10
        assert _seqs(db_path, "events") == list(range(6, 12))
    finally:
        await reopened.close()


async def test_prune_refuses_a_seq_without_snapshot_or_at_the_end(store: EventStore) -> None:
    await store.append_batch(_reqs(0, 9))
    with pytest.raises(StoreError, match="no snapshot is stored there"):
        await store.prune_through(5)
    await _snapshot(store, 10)
    with pytest.raises(StoreError, match="the newest event"):
        await store.prune_through(10)
    assert _seqs(store.path, "events") == list(range(1, 11))  # nothing was touched


async def test_appends_are_committed_between_prune_chunks(store: EventStore) -> None:
    await store.append_batch(_reqs(0, 2999))  # seqs 2..3000
    await _snapshot(store, 2500)
    writer = store._writer
    order: list[str] = []
    loop = asyncio.get_running_loop()
    first_chunk_done = asyncio.Event()
    prune_chunk, commit = writer.prune_chunk, writer.commit

    def spy_prune(through: int, limit: int) -> int:  # runs on the writer thread
        n = prune_chunk(through, limit)
        order.append("prune")
        loop.call_soon_threadsafe(first_chunk_done.set)
        return n

    def spy_commit(rows):  # type: ignore[no-untyped-def]
        order.append("append")
        return commit(rows)

    writer.prune_chunk, writer.commit = spy_prune, spy_commit  # type: ignore[method-assign]
    pruning = asyncio.create_task(store.prune_through(2500, chunk=50))
    await asyncio.wait_for(first_chunk_done.wait(), 10)
    assert await store.append_batch(_reqs(5000, 1)) == [3001]
    assert await asyncio.wait_for(pruning, 30) == 2500
    assert order.count("append") == 1
    at = order.index("append")
    assert 0 < at < len(order) - 1, order  # chunks ran both before and after the append
    assert _seqs(store.path, "events") == list(range(2501, 3002))


async def test_a_prune_stops_between_chunks_when_told(store: EventStore) -> None:
    # A reload that turns retention off while a prune runs: what is done stays, the rest too.
    await store.append_batch(_reqs(0, 99))
    await _snapshot(store, 40)
    answers = iter([True, False])
    deleted = await store.prune_through(40, chunk=7, keep_going=lambda: next(answers))
    assert deleted == 7
    assert _seqs(store.path, "events")[0] == 8
    assert _seqs(store.path, "snapshots") == [40]
