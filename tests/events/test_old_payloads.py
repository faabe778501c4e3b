"""Logs written before payloads left out their null and empty fields still read the same.

The fixture is a log written by llamaswap-es 0.1.0 (`bench/run.py logsize --requests 40`, its
captures deleted, dumped with `sqlite3 .dump`): every field of every payload written out.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from llamaswap_es.events import codec
from llamaswap_es.events.open_log import open_log
from llamaswap_es.events.rows import TYPE_INDEX_WHERE, decode_row
from llamaswap_es.events.schema import code_schema_version
from llamaswap_es.events.types import RequestReceived, ServerStarted
from llamaswap_es.replay.verify import verify
from tests.fixtures.event_store import open_booted_store

FIXTURE = Path(__file__).parent / "fixtures" / "log_written_by_0_1.sql"


def old_log(path: Path) -> Path:
    """The fixture as a database file at `path`."""
    conn = sqlite3.connect(path)
    conn.executescript(FIXTURE.read_text())
    conn.close()
    return path


def _rows(path: Path) -> list[tuple]:
    conn = sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True)
    try:
        return conn.execute(
            "SELECT seq, ts_ms, type, key, boot, v, cause, payload FROM events ORDER BY seq"
        ).fetchall()
    finally:
        conn.close()


def test_every_old_payload_decodes_to_what_its_new_text_decodes_to(tmp_path: Path) -> None:
    rows = _rows(old_log(tmp_path / "old.db"))
    assert {row[2] for row in rows} >= {"RequestReceived", "Dispatch", "RequestFinished"}
    shorter = 0
    for row in rows:
        old = decode_row(row, validate=True)
        assert decode_row(row) == old  # the trusted path agrees with the validating one
        text = codec.encode_payload(old.body)
        new_row = (*row[:7], text)
        assert decode_row(new_row, validate=True) == old, row
        assert decode_row(new_row) == old, row
        # Fields added since (ProcessReady/Dispatch `address`) are written with their "" default,
        # as every `""` default is (json_extract shows it); nothing else may grow.
        added = set(codec.loads(text)) - set(codec.loads(row[7]))
        assert all(getattr(old.body, name) == "" for name in added), (row, added)
        grown_by = sum(len(f'"{name}":"",') for name in added)
        assert len(text) - grown_by <= len(row[7])
        shorter += len(text) - grown_by < len(row[7])
    assert shorter >= 40  # every request's RequestReceived lost its null fields at least


def test_a_null_or_empty_field_is_left_out_and_read_back() -> None:
    body = RequestReceived(request_id="r-1", model="m")
    text = codec.encode_payload(body)
    assert codec.loads(text) == {
        "method": "POST",
        "model": "m",
        "path": "",
        "request_id": "r-1",
        "requested_model": "",
        "stream": False,
    }  # metadata {}, priority and ttl_override_ms None: left out; "" and false stay
    assert codec.decode_payload("RequestReceived", body.VERSION, text) == body
    with_values = RequestReceived(
        request_id="r-1", model="m", metadata={"k": "v"}, priority=0, ttl_override_ms=0
    )
    assert codec.decode_trusted("RequestReceived", 1, codec.encode_payload(with_values)) == (
        with_values
    )


def test_replay_verify_on_an_old_log_finds_no_divergence(tmp_path: Path) -> None:
    with open_log(old_log(tmp_path / "old.db")) as reader:
        report = verify(reader)
    assert report.ok, report.to_text()
    assert report.decisions > 40


async def test_an_old_log_opened_by_this_code_keeps_its_rows_and_verifies(tmp_path: Path) -> None:
    path = old_log(tmp_path / "old.db")
    before = _rows(path)
    store = await open_booted_store(path)  # as a server's boot leaves it
    try:
        [started] = await store.read(from_seq=before[-1][0] + 1, types=["ServerStarted"])
        assert isinstance(started.body, ServerStarted)
    finally:
        await store.close()
    after = _rows(path)
    assert after[: len(before)] == before  # old rows are read as they are, never rewritten
    conn = sqlite3.connect(path)
    try:  # migrated: the type index now leaves the per-request rows out (0005)
        [(index_sql,)] = conn.execute(
            "SELECT sql FROM sqlite_master WHERE name = 'events_by_type'"
        ).fetchall()
        [(version,)] = conn.execute("SELECT max(version) FROM schema_migrations").fetchall()
    finally:
        conn.close()
    assert version == code_schema_version()
    assert " ".join(index_sql.split()).endswith(TYPE_INDEX_WHERE)
    with open_log(path) as reader:
        report = verify(reader)
    assert report.ok, report.to_text()
