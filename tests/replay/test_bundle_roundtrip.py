"""export → import → verify, and every command reading a bundle in place of a database."""

from __future__ import annotations

from pathlib import Path

from tests.replay.conftest import run_replay


def test_export_import_verify_round_trip(abc_log: Path, tmp_path: Path) -> None:
    bundle = tmp_path / "bug.cbor.zst"
    exported = run_replay("export", "--db", abc_log, "-o", bundle)
    assert exported.rc == 0, exported.err
    assert f"exported seqs 1..33 (33 events, 1 server run(s)) to {bundle}" in exported.out
    on_bundle = run_replay("verify", "--db", bundle)
    assert on_bundle.rc == 0 and "all 14 recorded decisions are identical" in on_bundle.out
    imported_db = tmp_path / "imported.db"
    imported = run_replay("import", "--bundle", bundle, "-o", imported_db)
    assert imported.rc == 0 and "imported seqs 1..33 (33 events)" in imported.out
    again = run_replay("verify", "--db", imported_db)
    assert again.rc == 0, again.out
    assert run_replay("import", "--bundle", bundle, "-o", imported_db).rc == 2  # not twice


def test_a_bundle_cut_from_the_middle_cannot_be_verified_and_says_why(
    abc_log: Path, tmp_path: Path
) -> None:
    bundle = tmp_path / "middle.cbor.zst"
    assert run_replay("export", "--db", abc_log, "--from", "10", "-o", bundle).rc == 0
    result = run_replay("verify", "--db", bundle)
    assert result.rc == 2
    assert "starts at seq 10" in result.err and "export the log from seq 1" in result.err
    timeline = run_replay("timeline", "--db", bundle, "--model", "C")
    assert timeline.rc == 0 and "C ready (instance 1) after 500 ms loading" in timeline.out
