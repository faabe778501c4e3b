"""The store as the run loop uses it: append, read, follow, snapshots, reopen."""

from __future__ import annotations

import asyncio
import os
import random
import sqlite3
from pathlib import Path

import pytest

from llamaswap_es.events.errors import StoreError
from llamaswap_es.events.open_log import open_log
from llamaswap_es.events.rows import COLUMNS, decode_row, encode_envelopes
from llamaswap_es.events.store import EventStore
from llamaswap_es.events.types import (
    Dispatch,
    Envelope,
    RequestReceived,
    ServerStarted,
    all_event_classes,
)
from llamaswap_es.events.writer import SeqMismatchError
from tests.events.test_types import _sample
from tests.fixtures.event_store import open_booted_store


def _req(i: int, model: str = "m") -> Envelope:
    return Envelope(body=RequestReceived(request_id=f"r{i}", model=model), ts_ms=1000 + i)


async def test_open_writes_nothing_the_boot_record_is_the_run_loops(db_path: Path) -> None:
    """Opening a log appends nothing: a server's `ServerStarted` is its run loop's first input."""
    store = await EventStore.open(db_path, boot_id="boot-a", version="9.9")
    try:
        assert await store.read() == [] and await store.last_seq() == 0
        assert store.server_started() == ServerStarted(
            boot_id="boot-a", pid=os.getpid(), version="9.9"
        )
    finally:
        await store.close()


async def test_a_booted_store_starts_with_its_server_started(store: EventStore) -> None:
    [env] = await store.read()
    assert isinstance(env.body, ServerStarted)
    assert env.body.boot_id == store.boot_id == env.boot
    assert env.seq == 1 and await store.last_seq() == 1


async def test_every_event_type_round_trips_through_the_store(store: EventStore) -> None:
    classes = sorted(all_event_classes().items())
    envelopes = [
        Envelope(body=_sample(cls), ts_ms=100 + i, cause=i if cls.IS_DECISION else None)
        for i, (_, cls) in enumerate(classes)
    ]
    seqs = await store.append_batch(envelopes)
    assert seqs == list(range(2, 2 + len(envelopes)))
    for validate in (False, True):
        back = await store.read(from_seq=2, validate=validate)
        assert [e.body for e in back] == [e.body for e in envelopes]
        assert [(e.ts_ms, e.cause, e.seq, e.boot) for e in back] == [
            (e.ts_ms, e.cause, s, store.boot_id) for e, s in zip(envelopes, seqs, strict=True)
        ]


@pytest.mark.parametrize("size", [63, 64, 65, 129, 1000])
async def test_a_batch_of_any_size_lands_whole_and_in_order(store: EventStore, size: int) -> None:
    # The writer binds up to 64 rows per INSERT: batches around and past that edge must land
    # complete, in order, with contiguous seqs.
    envelopes = [_req(i) for i in range(size)]
    seqs = await store.append_batch(envelopes)
    assert seqs == list(range(2, 2 + size))
    back = await store.read(from_seq=2)
    assert [(e.seq, e.body.request_id, e.ts_ms) for e in back] == [
        (s, f"r{i}", 1000 + i) for i, s in enumerate(seqs)
    ]


async def test_payload_is_queryable_json_in_plain_sql(store: EventStore) -> None:
    await store.append_batch([_req(7, model="llama-8b")])
    conn = sqlite3.connect(store.path)
    row = conn.execute(
        "SELECT key, json_extract(payload, '$.model') FROM events WHERE type='RequestReceived'"
    ).fetchone()
    conn.close()
    assert row == ("r7", "llama-8b")


async def test_concurrent_producers_get_contiguous_ordered_seqs(store: EventStore) -> None:
    rng = random.Random(7)

    async def producer(p: int) -> list[tuple[list[int], list[Envelope]]]:
        done = []
        for i in range(15):
            batch = [
                Envelope(body=RequestReceived(request_id=f"p{p}-{i}-{j}", model="m"), ts_ms=j)
                for j in range(rng.randint(1, 6))
            ]
            done.append((await store.append_batch(batch), batch))
        return done

    results = await asyncio.gather(*(producer(p) for p in range(40)))
    stored = {e.seq: e for e in await store.read(from_seq=2)}
    all_seqs = []
    for per_producer in results:
        previous = 0
        for seqs, batch in per_producer:
            assert seqs == list(range(seqs[0], seqs[0] + len(batch)))  # a batch is contiguous
            assert seqs[0] > previous  # a producer's batches keep their order
            previous = seqs[-1]
            assert [stored[s].body for s in seqs] == [e.body for e in batch]
            all_seqs += seqs
    assert sorted(all_seqs) == list(range(2, 2 + len(all_seqs)))


async def test_boot_is_filled_only_when_empty(store: EventStore) -> None:
    seqs = await store.append_batch(
        [_req(1), Envelope(body=RequestReceived(request_id="x", model="m"), ts_ms=1, boot="old")]
    )
    boots = [e.boot for e in await store.read(from_seq=seqs[0])]
    assert boots == [store.boot_id, "old"]


async def test_reads_filter_by_type_key_range_and_limit(store: EventStore) -> None:
    await store.append_batch([_req(i, model="a" if i % 2 else "b") for i in range(10)])
    await store.append_batch(
        [Envelope(body=Dispatch(request_id="r3", model="a", instance=1), ts_ms=5, cause=5)]
    )
    by_key = await store.read(key="r3")
    assert [e.type for e in by_key] == ["RequestReceived", "Dispatch"]
    assert by_key[1].cause == 5
    assert [e.seq for e in await store.read(types=["Dispatch"])] == [12]
    assert [e.seq for e in await store.read(from_seq=4, to_seq=6)] == [4, 5, 6]
    assert [e.seq for e in await store.read(from_seq=2, limit=2)] == [2, 3]
    assert await store.read(types=[]) == []


async def test_a_batch_that_does_not_continue_the_log_is_refused_unwritten(
    store: EventStore,
) -> None:
    """The run loop numbers its batches; one that skips or repeats a seq means two writers
    number rows for this log: refused before anything is written, and not as a disk fault."""
    [encoded] = encode_envelopes([_req(1)], store.boot_id)
    for seq in (1, 3):  # seq 1 is taken (ServerStarted); 3 would leave a hole at 2
        with pytest.raises(SeqMismatchError, match="next seq is 2"):
            await store.commit_rows([(seq, *encoded)])
    assert await store.last_seq() == 1 and [e.seq for e in await store.read()] == [1]
    await store.commit_rows([(2, *encoded)])
    assert [e.seq for e in await store.read()] == [1, 2]


async def test_a_write_whose_caller_is_cancelled_still_lands_and_the_next_continues(
    store: EventStore,
) -> None:
    """A thread job cannot be stopped: a write whose caller leaves is finished anyway, and the
    store keeps counting from it, so the next write continues the log instead of clashing; the
    outcome nobody waits for any more is dropped quietly (no error reaches the loop's handler)."""
    reported: list[dict[str, object]] = []
    asyncio.get_running_loop().set_exception_handler(lambda _, context: reported.append(context))
    left = asyncio.ensure_future(store.append_batch([_req(i) for i in range(1000)]))
    await asyncio.sleep(0)  # one turn: the write is handed to the writer thread
    left.cancel()
    with pytest.raises(asyncio.CancelledError):
        await left
    assert await store.append_batch([_req(5000)]) == [1002]
    assert [e.seq for e in await store.read()] == list(range(1, 1003))
    assert reported == []


async def test_follow_yields_history_then_wakes_on_new_commits(store: EventStore) -> None:
    await store.append_batch([_req(i) for i in range(5)])
    seen: list[int] = []
    history_done, enough = asyncio.Event(), asyncio.Event()

    async def consume() -> None:
        async for env in store.follow(3, batch=2):
            seen.append(env.seq)
            if env.seq == 6:  # 3..6 are history
                history_done.set()
            if env.seq == 9:
                enough.set()

    task = asyncio.create_task(consume())
    try:
        await asyncio.wait_for(history_done.wait(), timeout=10)
        assert seen == [3, 4, 5, 6]
        await store.append_batch([_req(10), _req(11), _req(12)])
        await asyncio.wait_for(enough.wait(), timeout=10)
        assert seen == [3, 4, 5, 6, 7, 8, 9]
    finally:
        task.cancel()


async def test_follow_ends_when_the_store_closes(db_path: Path) -> None:
    store = await open_booted_store(db_path)
    got: list[int] = []
    first = asyncio.Event()

    async def consume() -> None:
        async for env in store.follow():
            got.append(env.seq)
            first.set()

    task = asyncio.create_task(consume())
    await asyncio.wait_for(first.wait(), timeout=10)
    await store.close()
    await asyncio.wait_for(task, timeout=10)
    assert got == [1]


async def test_snapshots_by_reducer_version_and_seq(store: EventStore) -> None:
    assert await store.latest_snapshot("r1") is None
    await store.save_snapshot(reducer_version="r1", seq=10, digest="d10", state=b"\x00ten")
    await store.save_snapshot(reducer_version="r1", seq=20, digest="d20", state=b"twenty")
    await store.save_snapshot(reducer_version="r2", seq=30, digest="d30", state=b"other")
    latest = await store.latest_snapshot("r1")
    assert latest is not None and (latest.seq, latest.digest, latest.state) == (
        20,
        "d20",
        b"twenty",
    )
    older = await store.latest_snapshot("r1", max_seq=19)
    assert older is not None and older.state == b"\x00ten"
    with open_log(store.path) as reader:
        snap = reader.latest_snapshot("r2")
        assert snap is not None and snap.seq == 30


async def test_reopen_continues_seqs_with_a_new_boot(db_path: Path) -> None:
    first = await open_booted_store(db_path, boot_id="boot-a")
    await first.append_batch([_req(1), _req(2)])
    await first.close()
    with pytest.raises(StoreError, match="closed"):
        await first.append_batch([_req(3)])
    second = await open_booted_store(db_path, boot_id="boot-b", ts_ms=42)
    try:
        assert await second.last_seq() == 4
        [started] = await second.read(from_seq=4)
        assert started.body == ServerStarted(
            boot_id="boot-b", pid=started.body.pid, version="0.1.0"
        )
        assert started.ts_ms == 42
    finally:
        await second.close()


async def test_close_writes_what_is_queued(db_path: Path) -> None:
    store = await open_booted_store(db_path)
    pending = [asyncio.create_task(store.append_batch([_req(i)])) for i in range(20)]
    await asyncio.sleep(0)  # let the tasks queue their batches (no waiting on time)
    await store.close()
    assert sorted(s for t in pending for s in t.result()) == list(range(2, 22))


def test_sync_reader_scans_in_order(db_path: Path) -> None:
    async def fill() -> None:
        async with await open_booted_store(db_path) as s:
            for _ in range(3):
                await s.append_batch([_req(i) for i in range(10_000)])

    asyncio.run(fill())
    with open_log(db_path) as reader:
        assert reader.last_seq() == 30_001
        seqs = [e.seq for e in reader.iter_envelopes(from_seq=2, validate=False)]
        assert seqs == list(range(2, 30_002))
        tail = list(reader.iter_envelopes(from_seq=29_999, to_seq=30_000, validate=True))
        assert [e.body.request_id for e in tail] == ["r9997", "r9998"]


async def test_the_newest_matches_come_back_in_seq_order(store: EventStore) -> None:
    await store.append_batch([_req(i, model="m") for i in range(5)])
    newest = await store.read(types=["RequestReceived"], limit=2, newest=True)
    oldest = await store.read(types=["RequestReceived"], limit=2)
    assert [e.body.request_id for e in newest] == ["r3", "r4"]
    assert [e.body.request_id for e in oldest] == ["r0", "r1"]
    assert [e.body.request_id for e in await store.read(key="r2", newest=True)] == ["r2"]


async def test_the_request_id_is_stored_once_in_key_and_reads_back_in_the_payload(
    store: EventStore,
) -> None:
    """The KEY_FIELD is left out of the stored payload (the `key` column holds it) and filled
    back on reading, on the trusted and the validating path; SQL finds it in `key`."""
    await store.append_batch([_req(8, model="llama-8b")])
    conn = sqlite3.connect(store.path)
    key, payload = conn.execute(
        "SELECT key, payload FROM events WHERE type='RequestReceived'"
    ).fetchone()
    row = conn.execute(f"SELECT {COLUMNS} FROM events WHERE type='RequestReceived'").fetchone()
    conn.close()
    assert key == "r8" and "r8" not in payload and "request_id" not in payload
    for validate in (False, True):
        body = decode_row(row, validate=validate).body
        assert (body.request_id, body.model) == ("r8", "llama-8b")
