"""The log survives kill -9 at random moments: nothing acknowledged is lost, nothing is torn."""

from __future__ import annotations

import os
import random
import sqlite3
from pathlib import Path

import pytest

from tests.events.crash_harness import crash_loop


@pytest.mark.slow
@pytest.mark.parametrize("synchronous", ["normal", "full"])
def test_sigkill_rounds_lose_no_acknowledged_event(tmp_path: Path, synchronous: str) -> None:
    seed = int(os.environ.get("CRASH_SEED", random.randrange(1 << 30)))
    try:
        totals = crash_loop(tmp_path / "events.db", rounds=12, seed=seed, synchronous=synchronous)
    except AssertionError as exc:
        raise AssertionError(f"crash loop failed with CRASH_SEED={seed}: {exc}") from exc
    assert totals["acked_events"] > 0
    assert totals["rows"] >= totals["acked_events"]


@pytest.mark.slow
def test_sigkill_while_packing_loses_nothing_and_tears_no_block(tmp_path: Path) -> None:
    """Kills land while blocks are packed beside the appends: every block is either rows or a
    pack, every acknowledged event reads back, checksums intact."""
    seed = int(os.environ.get("CRASH_SEED", random.randrange(1 << 30)))
    db = tmp_path / "events.db"
    try:
        totals = crash_loop(db, rounds=6, seed=seed, pack=True)
    except AssertionError as exc:
        raise AssertionError(f"crash loop failed with CRASH_SEED={seed}: {exc}") from exc
    assert totals["rows"] >= totals["acked_events"] > 0
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT count(*) FROM event_packs").fetchone()[0] > 0
