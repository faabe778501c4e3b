"""The replay commands on a log that retention pruned: it replays from the snapshot it kept,
and says plainly when no snapshot this code can restore covers its start."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from llamaswap_es import core
from llamaswap_es.events.writer import LogWriter
from tests.replay.conftest import run_replay


def _snapshot_seqs(db: Path) -> list[int]:
    with sqlite3.connect(db) as conn:
        return [r[0] for r in conn.execute("SELECT seq FROM snapshots ORDER BY seq")]


def _prune(db: Path, through: int) -> None:
    """What `EventStore.prune_through` does, through the same writer (no server run needed)."""
    writer = LogWriter.open(db)
    try:
        while writer.prune_chunk(through, 5_000):
            pass
        writer.prune_snapshots_before(through)
    finally:
        writer.close()


def test_a_pruned_log_replays_from_the_snapshot_it_kept(long_log: Path, tmp_path: Path) -> None:
    anchor = _snapshot_seqs(long_log)[1]
    _prune(long_log, anchor)
    result = run_replay("verify", "--db", long_log)
    assert result.rc == 0, result.out + result.err
    assert f"seqs {anchor + 1}.." in result.out
    assert f"from the snapshot at seq {anchor}" in result.out
    assert "all" in result.out and "recorded decisions are identical" in result.out
    timeline = run_replay("timeline", "--db", long_log, "--model", "a")
    assert timeline.rc == 0 and timeline.out
    exported = run_replay("export", "--db", long_log, "-o", tmp_path / "x.cbor.zst")
    assert exported.rc == 0
    assert f"the log itself starts at seq {anchor + 1} (older events were pruned)" in exported.err


def test_without_a_snapshot_of_this_reducer_the_error_says_why(long_log: Path) -> None:
    anchor = _snapshot_seqs(long_log)[1]
    _prune(long_log, anchor)
    with sqlite3.connect(long_log) as conn:  # as if written by an older reducer
        conn.execute("UPDATE snapshots SET reducer_version = 'core-0'")
    result = run_replay("verify", "--db", long_log)
    assert result.rc == 2
    assert f"starts at seq {anchor + 1}" in result.err
    assert f"no snapshot of reducer {core.REDUCER_VERSION} covers it" in result.err
    assert "pruned (eventRetentionDays)" in result.err


def test_a_later_snapshot_still_verifies_the_rest(long_log: Path) -> None:
    first, later = _snapshot_seqs(long_log)[1:3]
    _prune(long_log, first)
    with sqlite3.connect(long_log) as conn:  # the anchor is unusable, a later snapshot is not
        conn.execute("UPDATE snapshots SET reducer_version = 'core-0' WHERE seq = ?", (first,))
    whole = run_replay("verify", "--db", long_log)
    assert whole.rc == 0, whole.out + whole.err
    assert f"note: seqs {first + 1}..{later} are not verified" in whole.out
    assert f"from the snapshot at seq {later}" in whole.out
    asked = run_replay("verify", "--db", long_log, "--from", str(first + 1))
    assert asked.rc == 2
    assert f"the first seq that can be replayed is {later + 1}" in asked.err
    assert f"`--from {later + 1}`" in asked.err
