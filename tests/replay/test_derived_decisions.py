"""A core-3 log holds QueuePositions (about two per queued request); since core-4 positions are
derived state and the reducer no longer decides them. `replay verify` on such a log gives 0
divergences (the recorded ones are derived, not compared) and timeline still shows them."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from llamaswap_es.events.rows import decode_row
from tests.replay.conftest import run_replay
from tests.replay.recording import Arrival, group_config, record

FIXTURE = Path(__file__).parent / "fixtures" / "core3_serial_queue.sql"
"""Recorded by tests/replay/recording.py at 27dcd7a (reducer core-3): serial, A and B in one
swap group, r1..r5 queued in a burst, r6 cancelled while it waits."""

ARRIVALS = [
    Arrival(0, "r1", "A", 200),
    Arrival(10, "r2", "B"),
    Arrival(20, "r3", "A"),
    Arrival(30, "r4", "B"),
    Arrival(40, "r5", "A"),
    Arrival(600, "r6", "B", cancel_after_ms=50),
]


def _core3_log(path: Path) -> Path:
    conn = sqlite3.connect(path)
    conn.executescript(FIXTURE.read_text())
    conn.close()
    return path


def _decisions(path: Path) -> list[object]:
    """Every decision but QueuePositions, decoded (the encoding of payloads changed since)."""
    with sqlite3.connect(path) as conn:
        rows = conn.execute(
            "SELECT seq, ts_ms, type, key, boot, v, cause, payload FROM events"
            " WHERE cause IS NOT NULL AND type != 'QueuePositions' ORDER BY seq"
        ).fetchall()
    return [decode_row(row).body for row in rows]


def test_verify_skips_recorded_queue_positions_and_finds_no_divergence(tmp_path: Path) -> None:
    old = _core3_log(tmp_path / "core3.db")
    result = run_replay("verify", "--db", old)
    assert result.rc == 0, result.out + result.err
    assert "recorded decisions are identical" in result.out
    assert "(9 of a derived type, e.g. QueuePositions, not compared)" in result.out


def test_the_reducer_now_decides_the_same_without_queue_positions(tmp_path: Path) -> None:
    old = _core3_log(tmp_path / "core3.db")
    new = tmp_path / "core4.db"
    record(new, group_config(("A", "B"), policy="serial"), ARRIVALS, load_ms=300)
    with sqlite3.connect(new) as conn:
        types = {t for (t,) in conn.execute("SELECT DISTINCT type FROM events")}
    assert "QueuePositions" not in types
    assert _decisions(new) == _decisions(old)


def test_timeline_still_shows_the_old_queue_positions(tmp_path: Path) -> None:
    old = _core3_log(tmp_path / "core3.db")
    result = run_replay("timeline", "--db", old)
    assert result.rc == 0, result.err
    assert "queue: r2 #1, r3 #2, r4 #3" in result.out
