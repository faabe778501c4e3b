"""The write gate: the log's writer and the projections' writer take turns on one file through a
lock held across the whole transaction; a gate held too long fails like SQLite's busy timeout."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from llamaswap_es.events import write_gate
from llamaswap_es.events.errors import StoreError
from llamaswap_es.events.rows import UnsequencedRow
from llamaswap_es.events.write_gate import WriteGate
from llamaswap_es.events.writer import LogWriter
from llamaswap_es.projections.database import connect_writer, write_transaction


def _row(n: int) -> UnsequencedRow:
    return (1_000 + n, "ConfigLoaded", None, "boot-1", 1, None, "{}")


def test_a_log_commit_waits_for_a_projection_transaction_then_lands(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    writer = LogWriter.open(path)
    projections = connect_writer(path)
    inside = threading.Event()
    release = threading.Event()
    order: list[str] = []

    def projection_transaction() -> None:
        with write_transaction(projections, path) as conn:
            conn.execute(
                "INSERT INTO projection_checkpoints (name, seq, state, updated_ms) "
                "VALUES ('t', 1, '{}', 0)"
            )
            inside.set()
            assert release.wait(10)
            order.append("projection committed")

    thread = threading.Thread(target=projection_transaction)
    thread.start()
    try:
        assert inside.wait(10)
        appended = threading.Thread(target=lambda: (writer.append([_row(1)]), order.append("log")))
        appended.start()
        appended.join(0.2)
        assert appended.is_alive(), "the log's commit must wait while the projection writes"
        release.set()
        appended.join(10)
        thread.join(10)
        assert order == ["projection committed", "log"]
        assert writer.count_rows("events") >= 1
    finally:
        release.set()
        thread.join(10)
        projections.close()
        writer.close()


def test_a_gate_held_past_the_timeout_fails_the_commit_naming_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "events.db"
    monkeypatch.setattr(write_gate, "GATE_TIMEOUT_S", 0.2)
    writer = LogWriter.open(path)
    try:
        with WriteGate(path).held(), pytest.raises(StoreError, match="locked") as caught:
            writer.append([_row(1)])
        assert str(path) in str(caught.value)
        writer.append([_row(2)])  # the gate released, the log writes again
    finally:
        writer.close()


def test_every_spelling_of_a_path_shares_one_gate(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    path.touch()
    link = tmp_path / "link.db"
    os.symlink(path, link)
    other = tmp_path / "other.db"
    with WriteGate(path).held():
        for spelling in (link, tmp_path / "." / "events.db"):
            gate = WriteGate(spelling, timeout_s=0.05)
            with pytest.raises(StoreError, match="locked"), gate.held():
                pass
        with WriteGate(other, timeout_s=0.05).held():  # another file: its own gate
            pass
