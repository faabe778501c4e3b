"""The replay commands on a log whose request events were packed (events/pack.py): every row
reads back identical, `replay verify` finds 0 divergences, and export → import carries the rows
out as before; also after retention pruned the packed log behind a snapshot."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

from llamaswap_es.events.reader import DatabaseReader
from llamaswap_es.events.writer import LogWriter
from tests.replay.conftest import run_replay


def _pack(db: Path, block: int) -> int:
    """What `EventStore.pack_through` does on a server, through the same writer, to the end."""
    writer = LogWriter.open(db)
    packed = 0
    try:
        while n := writer.pack_block(1 << 62, block, block):
            packed += n
    finally:
        writer.close()
    return packed


def _rows(db: Path) -> list[tuple[object, ...]]:
    with DatabaseReader(db) as reader:
        return list(reader.iter_rows())


def test_a_packed_log_reads_verifies_and_exports_as_before(long_log: Path, tmp_path: Path) -> None:
    before = _rows(long_log)
    packed_db = tmp_path / "packed.db"
    shutil.copy(long_log, packed_db)
    packed = _pack(packed_db, 1_000)
    assert packed >= 5_000  # requests amid many swaps and timers: 7,000 of ~17,000 rows
    assert _rows(packed_db) == before
    result = run_replay("verify", "--db", packed_db)
    assert result.rc == 0, result.out + result.err
    assert "recorded decisions are identical" in result.out
    bundle = tmp_path / "x.cbor.zst"
    exported = run_replay("export", "--db", packed_db, "-o", bundle)
    assert exported.rc == 0, exported.err
    assert f"exported seqs 1..{len(before)} ({len(before)} events" in exported.out
    imported = tmp_path / "imported.db"
    assert run_replay("import", "--bundle", bundle, "-o", imported).rc == 0
    assert _rows(imported) == before


def test_a_packed_log_pruned_behind_a_snapshot_still_verifies(long_log: Path) -> None:
    before = _rows(long_log)
    _pack(long_log, 500)
    with sqlite3.connect(long_log) as conn:
        anchor = [r[0] for r in conn.execute("SELECT seq FROM snapshots ORDER BY seq")][2]
    writer = LogWriter.open(long_log)
    try:
        while writer.prune_chunk(anchor, 5_000):
            pass
        writer.prune_packs(anchor)
        writer.prune_snapshots_before(anchor)
    finally:
        writer.close()
    assert _rows(long_log) == [row for row in before if row[0] > anchor]
    result = run_replay("verify", "--db", long_log)
    assert result.rc == 0, result.out + result.err
    assert f"from the snapshot at seq {anchor}" in result.out


def test_a_prune_stopped_after_one_chunk_leaves_a_packed_log_that_still_verifies(
    long_log: Path,
) -> None:
    """Shutdown cancels a prune between chunks (and kill -9 can stop it anywhere): every chunk
    leaves the log a contiguous suffix, its packed rows dropped with its plain ones."""
    before = _rows(long_log)
    _pack(long_log, 500)
    with sqlite3.connect(long_log) as conn:
        anchor = [r[0] for r in conn.execute("SELECT seq FROM snapshots ORDER BY seq")][-2]
    writer = LogWriter.open(long_log)
    try:
        assert writer.prune_chunk(anchor, 5_000) > 0  # one chunk, then the prune stops
    finally:
        writer.close()
    after = _rows(long_log)
    first = after[0][0]
    assert 1 < first <= anchor + 1
    assert after == [row for row in before if row[0] >= first]  # no hole, nothing reordered
    result = run_replay("verify", "--db", long_log)
    assert result.rc == 0, result.out + result.err
