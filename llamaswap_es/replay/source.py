"""Opening a log for the replay tool, and the facts about it every command needs.

`open_source` takes an SQLite log or a `.cbor.zst` bundle (the reader layer tells them apart) and
turns every way of failing to open one into a `ReplayError` that names the path. `LogFacts` holds
the seq range and the versions that wrote it, so commands can check a `--seq` or `--from` against
the real range and say when the log comes from another reducer version.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from llamaswap_es.errors import StoreError
from llamaswap_es.events import codec
from llamaswap_es.events.reader import LogReader, connect_read_only
from llamaswap_es.events.types import Envelope
from llamaswap_es.replay.errors import ReplayError


def open_source(path: str | Path) -> LogReader:
    """A reader over `path` (database or bundle); `ReplayError` when it is not a readable log."""
    path = Path(path)
    if not path.exists():
        raise ReplayError(
            f"{path}: no such file (give an event log database or a .cbor.zst bundle)"
        )
    if path.is_dir():
        raise ReplayError(f"{path}: is a directory, not an event log")
    # imported here: a bundle's reader loads cbor2 and zstandard (~1 MiB), which the server
    # (web/log_api imports this module for `explain`) never needs at idle
    from llamaswap_es.events.open_log import open_log

    try:
        return open_log(path)
    except StoreError as exc:
        raise ReplayError(str(exc)) from exc


@dataclass(frozen=True, slots=True)
class LogFacts:
    """The seq range of a log and the reducer versions its snapshots were written by."""

    path: Path
    first_seq: int
    last_seq: int
    snapshot_versions: tuple[str, ...] = field(default=())
    """Reducer versions of the snapshots stored beside the events (databases only)."""

    @property
    def empty(self) -> bool:
        return self.last_seq == 0

    def check_seq(self, seq: int, flag: str = "--seq") -> None:
        if self.empty:
            raise ReplayError(f"{self.path}: the log holds no events")
        if not self.first_seq <= seq <= self.last_seq:
            raise ReplayError(
                f"{flag} {seq} is out of range: {self.path} holds seqs "
                f"{self.first_seq}..{self.last_seq}"
            )

    def window(self, from_seq: int | None, to_seq: int | None) -> tuple[int, int]:
        """`--from`/`--to` defaulted to the whole log, checked against it and each other."""
        lo = self.first_seq if from_seq is None else from_seq
        hi = self.last_seq if to_seq is None else to_seq
        self.check_seq(lo, "--from")
        self.check_seq(hi, "--to")
        if lo > hi:
            raise ReplayError(f"--from {lo} is after --to {hi}")
        return lo, hi


def log_facts(reader: LogReader) -> LogFacts:
    """First and last seq (one cheap read each) and the snapshot versions of a database."""
    try:
        rows = reader.iter_rows(1, None)
        first = next(rows, None)
        rows.close()  # type: ignore[attr-defined]
        last = reader.last_seq()
    except StoreError as exc:
        raise ReplayError(str(exc)) from exc
    return LogFacts(
        path=reader.path,
        first_seq=first[0] if first is not None else 0,
        last_seq=last,
        snapshot_versions=_snapshot_versions(reader.path),
    )


def _snapshot_versions(path: Path) -> tuple[str, ...]:
    if path.name.endswith(".zst"):
        return ()
    try:
        conn = connect_read_only(path)
    except StoreError:
        return ()
    try:
        rows = conn.execute(
            "SELECT reducer_version FROM snapshots GROUP BY reducer_version ORDER BY max(seq)"
        ).fetchall()
    except sqlite3.Error:
        return ()
    finally:
        conn.close()
    return tuple(r[0] for r in rows)


def iter_inputs(reader: LogReader, from_seq: int, to_seq: int | None) -> Iterator[Envelope]:
    """The input events of a range (`iter_inputs` of the reader), damage as a `ReplayError`."""
    try:
        yield from reader.iter_inputs(from_seq, to_seq)
    except StoreError as exc:
        raise ReplayError(str(exc)) from exc


def iter_all(reader: LogReader, from_seq: int, to_seq: int | None) -> Iterator[Envelope]:
    """Every envelope of a range; a damaged row becomes a `ReplayError` naming its seq."""
    try:
        yield from reader.iter_envelopes(from_seq, to_seq)
    except StoreError as exc:
        raise ReplayError(str(exc)) from exc


def read_one(reader: LogReader, seq: int) -> Envelope | None:
    for env in iter_all(reader, seq, seq):
        return env
    return None


envelope_json = codec.envelope_to_json
