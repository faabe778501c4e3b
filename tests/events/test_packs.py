"""Packed request events: a packed log reads exactly as the same log unpacked.

Random logs (requests, decisions with causes, process events, two boots, clocks that step
back) are written twice; one copy is packed in random blocks below random bounds, then every
read a server or tool makes (full and ranged scans, reads by type, key, range, limit, newest,
first/last seq, range facts) must give the same answer on both copies.
"""

from __future__ import annotations

import sqlite3
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from llamaswap_es.events import reader as reader_module
from llamaswap_es.events.errors import StoreError
from llamaswap_es.events.pack import decode_pack, encode_pack
from llamaswap_es.events.reader import DatabaseReader
from llamaswap_es.events.rows import PACKED_TYPES, encode_envelopes
from llamaswap_es.events.types import (
    Dispatch,
    Envelope,
    Event,
    ProcessReady,
    RequestFinished,
    RequestReceived,
)
from llamaswap_es.events.writer import LogWriter, prepare_pack
from tests.fixtures.event_store import open_booted_store

KEYS = [f"01J{i:023d}" for i in range(12)]


@st.composite
def logs(draw: st.DrawFn) -> list[Envelope]:
    n = draw(st.integers(1, 120))
    out: list[Envelope] = []
    ts = 1_000
    for i in range(n):
        ts += draw(st.integers(-3, 40))
        kind = draw(st.sampled_from(["recv", "dispatch", "finish", "ready"]))
        rid = draw(st.sampled_from(KEYS))
        boot = draw(st.sampled_from(["boot-a", "boot-b"]))
        body: Event
        cause = None
        if kind == "recv":
            body = RequestReceived(request_id=rid, model="m", path="/v1/chat", stream=i % 2 == 0)
        elif kind == "dispatch":
            body = Dispatch(request_id=rid, model="m", instance=1, address="http://x")
            cause = max(1, i - draw(st.integers(0, 3)))
        elif kind == "finish":
            body = RequestFinished(request_id=rid, model="m", status=200, metrics={"t": i})
        else:
            body = ProcessReady(model=draw(st.sampled_from(["m", "n"])), instance=1)
        out.append(Envelope(body=body, ts_ms=ts, boot=boot, cause=cause))
    return out


def _received(n: int) -> list[Envelope]:
    """`n` requests' RequestReceived, ids r000, r001, … (time-ordered, as real ids are)."""
    return [
        Envelope(body=RequestReceived(request_id=f"r{i:03d}", model="m"), ts_ms=1000 + i)
        for i in range(n)
    ]


def _write(path: Path, envelopes: list[Envelope]) -> LogWriter:
    writer = LogWriter.open(path)
    writer.append(encode_envelopes(envelopes, "boot-a"))
    return writer


def _all(reader: DatabaseReader) -> list[tuple[object, ...]]:
    return list(reader.iter_rows())


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(log=logs(), data=st.data())
def test_a_packed_log_reads_exactly_as_the_unpacked_one(
    log: list[Envelope], data: st.DataObject
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        plain_path, packed_path = Path(tmp) / "plain.db", Path(tmp) / "packed.db"
        pruned = data.draw(st.integers(0, len(log) // 2))  # retention pruned a prefix, or not
        plain_writer = _write(plain_path, log)
        try:
            while plain_writer.prune_chunk(pruned, 7):
                pass
        finally:
            plain_writer.close()
        writer = _write(packed_path, log)
        try:
            packed_rows = 0
            for _ in range(data.draw(st.integers(1, 4))):
                through = data.draw(st.integers(0, len(log) + 1))
                block = data.draw(st.integers(1, 20))
                keep = data.draw(st.integers(0, 5))
                while n := writer.pack_block(through, block, keep):
                    packed_rows += n
            while writer.prune_chunk(pruned, 7):  # drops packed rows of its stretch too
                pass
            writer.prune_packs(pruned)
        finally:
            writer.close()
        event("packed" if packed_rows else "nothing packed")
        page = data.draw(st.sampled_from([3, 7, reader_module.SCAN_PAGE]))
        saved, reader_module.SCAN_PAGE = reader_module.SCAN_PAGE, page  # scans cross windows
        try:
            _compare(plain_path, packed_path, log, data)
        finally:
            reader_module.SCAN_PAGE = saved
        with sqlite3.connect(packed_path) as conn:
            plain_left = conn.execute("SELECT count(*) FROM events").fetchone()[0]
            packed_left = conn.execute(
                "SELECT coalesce(sum(count), 0) FROM event_packs"
            ).fetchone()[0]
        assert plain_left + packed_left == len(log) - pruned  # every row in exactly one place


def _compare(plain_path: Path, packed_path: Path, log: list[Envelope], data: st.DataObject) -> None:
    with DatabaseReader(plain_path) as plain, DatabaseReader(packed_path) as packed:
        assert _all(packed) == _all(plain)
        assert packed.last_seq() == plain.last_seq()
        assert packed.first_seq() == plain.first_seq()
        for _ in range(6):
            lo = data.draw(st.integers(0, len(log) + 2))
            hi = data.draw(st.one_of(st.none(), st.integers(lo, len(log) + 2)))
            assert list(packed.iter_rows(lo, hi)) == list(plain.iter_rows(lo, hi))
            if hi is not None:
                assert packed.range_facts(lo, hi) == plain.range_facts(lo, hi)
            query = {
                "from_seq": lo,
                "to_seq": hi,
                "types": data.draw(
                    st.one_of(
                        st.none(),
                        st.lists(
                            st.sampled_from(
                                [
                                    "RequestReceived",
                                    "Dispatch",
                                    "RequestFinished",
                                    "ProcessReady",
                                ]
                            ),
                            max_size=3,
                        ),
                    )
                ),
                "key": data.draw(st.one_of(st.none(), st.sampled_from([*KEYS, "m", "zz"]))),
                "limit": data.draw(st.one_of(st.none(), st.integers(0, 8))),
                "newest": data.draw(st.booleans()),
            }
            assert packed.read(**query) == plain.read(**query), query


def test_a_pack_decodes_to_the_identical_rows() -> None:
    rows = [
        (5, 100, "RequestReceived", "r1", "b", 2, None, '{"model":"m","é":"ü\\n"}'),
        (7, 99, "Dispatch", "r1", "b", 1, 5, '{"instance":1}'),
        (9, 130, "QueuePositions", None, "c", 1, 8, "{}"),
    ]
    pack = encode_pack(rows)
    assert (pack.first_seq, pack.last_seq, pack.count) == (5, 9, 3)
    assert (pack.first_ts_ms, pack.last_ts_ms) == (99, 130)
    assert (pack.min_key, pack.max_key) == ("r1", "r1")
    assert decode_pack(pack.codec, pack.keys, pack.data) == rows


def test_every_request_keyed_type_is_packed() -> None:
    """A new request event type is packed with the others unless someone decides otherwise."""
    keyed = {name for name, cls in Event.REGISTRY.items() if cls.KEY_FIELD == "request_id"}
    assert keyed | {"QueuePositions"} == PACKED_TYPES


def test_packing_keeps_the_newest_rows_plain_and_needs_a_full_block(tmp_path: Path) -> None:
    log = _received(30)
    writer = _write(tmp_path / "events.db", log)
    try:
        assert writer.pack_block(30, 10, keep_plain=25) == 0  # would leave only 20 plain
        assert writer.pack_block(5, 10, keep_plain=0) == 0  # only 5 rows lie below the bound
        assert writer.pack_block(30, 10, keep_plain=10) == 10
        assert writer.pack_block(30, 10, keep_plain=10) == 10
        assert writer.pack_block(30, 10, keep_plain=10) == 0  # the newest 10 stay rows
        assert writer.count_rows("events") == 10
        assert writer.count_rows("event_packs") == 2
    finally:
        writer.close()


def test_pruning_drops_whole_packs_and_trims_the_one_that_straddles(tmp_path: Path) -> None:
    log = _received(30)
    path = tmp_path / "events.db"
    writer = _write(path, log)
    try:
        while writer.pack_block(30, 10, keep_plain=5):
            pass
        assert writer.prune_packs(14) == 14
    finally:
        writer.close()
    with DatabaseReader(path) as reader:
        assert [row[0] for row in reader.iter_rows()] == list(range(15, 31))
        assert reader.first_seq() == 15
        assert [e.body.request_id for e in reader.read(key="r014")] == ["r014"]


def test_a_damaged_pack_is_named_by_file_and_seqs(tmp_path: Path) -> None:
    log = _received(8)
    path = tmp_path / "events.db"
    writer = _write(path, log)
    try:
        writer.pack_block(8, 4, keep_plain=0)
    finally:
        writer.close()
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE event_packs SET data = x'00112233'")
    with DatabaseReader(path) as reader, pytest.raises(StoreError) as err:
        list(reader.iter_rows())
    assert str(path) in str(err.value) and "seqs 1..4" in str(err.value)


async def test_the_store_packs_and_prunes_and_retention_still_finds_its_snapshot(
    db_path: Path,
) -> None:
    store = await open_booted_store(db_path, ts_ms=500)
    try:
        await store.append_batch(_received(200))
        await store.save_snapshot(reducer_version="core-test", seq=150, digest="d", state=b"s")
        assert await store.pack_through(180, block_rows=64) == 128  # 2 blocks, 64 stay rows
        with DatabaseReader(db_path) as reader:
            assert reader.snapshots_older_than("core-test", 10_000) == [150]  # its row is packed
            story = reader.read(key="r100")
        assert [e.seq for e in story] == [102]
        assert await store.prune_through(150) == 150
        with DatabaseReader(db_path) as reader:
            assert reader.first_seq() == 151 and reader.last_seq() == 201
            assert [row[0] for row in reader.iter_rows()] == list(range(151, 202))
    finally:
        await store.close()


def test_a_pack_prepared_before_the_log_changed_is_not_stored(tmp_path: Path) -> None:
    """The store encodes a block off the writer thread; if the rows moved meanwhile (a prune,
    another block), the writer refuses the stale pack and changes nothing."""
    log = _received(30)
    path = tmp_path / "events.db"
    writer = _write(path, log)
    try:
        with DatabaseReader(path) as reader:
            before = list(reader.iter_rows())
        conn = sqlite3.connect(path)
        try:
            stale = prepare_pack(conn, 30, 10, 0)
        finally:
            conn.close()
        assert stale is not None
        while writer.prune_chunk(3, 100):
            pass
        assert writer.store_pack(stale) == 0
        assert writer.count_rows("event_packs") == 0 and writer.count_rows("events") == 27
    finally:
        writer.close()
    with DatabaseReader(path) as reader:
        assert list(reader.iter_rows()) == before[3:]
