"""`replay verify`: real logs verify; one altered decision is reported at its exact seq."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from llamaswap_es import core
from llamaswap_es.events import codec
from llamaswap_es.events.open_log import open_log
from llamaswap_es.events.types import PeerRequestFinished
from llamaswap_es.events.writer import LogWriter
from llamaswap_es.replay.verify import verify
from tests.replay.conftest import ABC_ABC, run_replay
from tests.replay.recording import group_config, record


def _seq_of(path: Path, type_name: str, nth: int = 0) -> int:
    with sqlite3.connect(path) as conn:
        rows = conn.execute("SELECT seq FROM events WHERE type = ? ORDER BY seq", (type_name,))
        return [r[0] for r in rows][nth]


def _update(path: Path, sql: str, *params: object) -> None:
    conn = sqlite3.connect(path)
    try:
        assert conn.execute(sql, params).rowcount == 1
        conn.commit()
    finally:
        conn.close()


def test_a_long_simulated_run_verifies_from_the_start_and_from_snapshots(long_log: Path) -> None:
    with open_log(long_log) as reader:
        whole = verify(reader)
        last = reader.last_seq()
        window = verify(reader, last // 2, last // 2 + 2_000)
    assert whole.ok, whole.to_text()
    assert whole.inputs > 5_000 and whole.decisions > 5_000
    assert whole.to_text().startswith(f"verify {long_log}, seqs 1..{last}")
    assert window.ok and window.origin.startswith("from the snapshot at seq")


def test_an_altered_decision_is_reported_at_exactly_its_seq(long_log: Path) -> None:
    seq = _seq_of(long_log, "Dispatch", 500)
    _update(
        long_log,
        "UPDATE events SET payload = json_set(payload, '$.instance', 99) WHERE seq = ?",
        seq,
    )
    with open_log(long_log) as reader:
        report = verify(reader)
    assert not report.ok
    assert report.divergence is not None and report.divergence.seq == seq
    text = report.to_text()
    assert f"DIVERGENCE at seq {seq}" in text
    assert "instance: recorded 99" in text
    assert f">{seq:>9}" in text  # the row is marked among the events around it
    assert "state before seq" in text and "model a:" in text


def test_the_cli_exits_1_at_the_divergence_and_0_on_a_good_log(abc_log: Path) -> None:
    good = run_replay("verify", "--db", abc_log)
    assert good.rc == 0, good.err
    assert "all 14 recorded decisions are identical" in good.out
    seq = _seq_of(abc_log, "SwapPlanned", 1)
    _update(
        abc_log,
        "UPDATE events SET payload = json_set(payload, '$.rule', 'made up') WHERE seq = ?",
        seq,
    )
    bad = run_replay("verify", "--db", abc_log)
    assert bad.rc == 1
    assert f"DIVERGENCE at seq {seq}: the recorded decision differs" in bad.out
    assert "rule: recorded 'made up', now 'group g: swap=true evicts A'" in bad.out


def test_a_deleted_decision_is_a_decision_the_log_lacks(abc_log: Path) -> None:
    seq = _seq_of(abc_log, "StopProcess")
    _update(abc_log, "DELETE FROM events WHERE seq = ?", seq)
    with open_log(abc_log) as reader:
        report = verify(reader)
    assert report.divergence is not None and report.divergence.kind == "missing"
    assert "reducer now also decides: StopProcess model=A instance=1" in report.to_text()


def test_a_log_of_another_reducer_version_is_verified_and_says_so(abc_log: Path) -> None:
    writer = LogWriter.open(abc_log)
    try:
        writer.save_snapshot(reducer_version="core-0", seq=5, digest="x", state=b"{}")
    finally:
        writer.close()
    result = run_replay("verify", "--db", abc_log)
    assert result.rc == 0
    assert (
        f"snapshots of reducer version core-0 (this code is {core.REDUCER_VERSION})" in result.out
    )


def test_a_range_outside_the_log_is_a_clear_error(abc_log: Path) -> None:
    result = run_replay("verify", "--db", abc_log, "--from", "5", "--to", "500")
    assert result.rc == 2
    assert "--to 500 is out of range" in result.err and "holds seqs 1..33" in result.err
    missing = run_replay("verify", "--db", abc_log.parent / "nope.db")
    assert missing.rc == 2 and "no such file" in missing.err


def test_a_log_with_peer_request_records_verifies_with_the_same_decisions(tmp_path: Path) -> None:
    """Peer records between the scheduler's inputs change no decision, and verify accepts them."""
    records = [
        (offset, PeerRequestFinished(request_id=f"p{offset}", model="peer/m", peer="peer",
                                     status=200 if offset % 2 else 502))
        for offset in range(0, 3_000, 7)
    ]  # fmt: skip
    plain, mixed = tmp_path / "plain.db", tmp_path / "mixed.db"
    config = group_config(("A", "B", "C"))
    record(plain, config, ABC_ABC, load_ms=500)
    record(mixed, config, ABC_ABC, load_ms=500, extra=records)
    with open_log(mixed) as reader:
        report = verify(reader)
    assert report.ok, report.to_text()
    assert _decisions(mixed) == _decisions(plain)
    with sqlite3.connect(mixed) as conn:
        stored = conn.execute("SELECT count(*) FROM events WHERE type = 'PeerRequestFinished'")
        assert stored.fetchone()[0] == len(records)


def _decisions(path: Path) -> list[tuple[str, str]]:
    """Every decision in log order: its type and payload."""
    with open_log(path) as reader:
        return [
            (env.type, codec.encode_payload(env.body))
            for env in reader.iter_envelopes()
            if env.body.IS_DECISION
        ]
