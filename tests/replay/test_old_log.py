"""`llamaswap-es replay verify` on a log written by llamaswap-es 0.1.0, whose payloads carry every
field (tests/events/fixtures/log_written_by_0_1.sql): no divergence, as a user runs it."""

from __future__ import annotations

from pathlib import Path

from tests.events.test_old_payloads import old_log
from tests.replay.conftest import run_replay


def test_replay_verify_on_a_log_written_by_0_1_finds_no_divergence(tmp_path: Path) -> None:
    db = old_log(tmp_path / "old.db")
    result = run_replay("verify", "--db", db)
    assert result.rc == 0, result.out + result.err
    assert "all" in result.out and "recorded decisions are identical" in result.out
