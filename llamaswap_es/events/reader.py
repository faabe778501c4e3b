"""Synchronous, read-only access to a log: for tools, benchmarks and the store's read threads.

A `LogReader` scans in seq order, reads filtered, and finds the newest snapshot; `open_log` (in
`events/open_log.py`, above this module and `bundle.py`) picks the reader for a path. The
database is opened read-only (`mode=ro`, `query_only`), so a tool can never change a live
server's log. Scans page through the table with keyset queries (`seq >= ? ORDER BY seq LIMIT n`)
so no read transaction stays open for long: a reader that lingers would stop the writer's
checkpoints and grow the WAL (EVENT-LOG.md §2.4).
"""

from __future__ import annotations

import functools
import sqlite3
from collections.abc import Collection, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from llamaswap_es.events.codec import PayloadError
from llamaswap_es.events.errors import StoreError, translate_sqlite_error
from llamaswap_es.events.rows import (
    COLUMNS,
    PER_REQUEST_TYPES,
    TYPE_INDEX_WHERE,
    Row,
    decode_row,
)
from llamaswap_es.events.schema import schema_version
from llamaswap_es.events.types import Envelope, all_event_classes

SCAN_PAGE = 20_000


@dataclass(frozen=True, slots=True)
class Snapshot:
    """A cached reducer state at `seq`, usable only by the same `reducer_version`."""

    reducer_version: str
    seq: int
    digest: str
    state: bytes


class LogReader(Protocol):
    """What tools read from a log, whatever holds it (a database or a bundle)."""

    path: Path

    def iter_rows(self, from_seq: int = 1, to_seq: int | None = None) -> Iterator[Row]: ...

    def iter_envelopes(
        self, from_seq: int = 1, to_seq: int | None = None, validate: bool = False
    ) -> Iterator[Envelope]: ...

    def iter_inputs(self, from_seq: int = 1, to_seq: int | None = None) -> Iterator[Envelope]: ...

    def last_seq(self) -> int: ...

    def latest_snapshot(
        self, reducer_version: str, *, max_seq: int | None = None
    ) -> Snapshot | None: ...

    def close(self) -> None: ...


def connect_read_only(path: Path) -> sqlite3.Connection:
    """A read-only connection; raises a `StoreError` naming `path` if it cannot be read."""
    if not path.is_file():
        raise StoreError(f"{path}: no event log here (the file does not exist)")
    try:
        try:
            return _connect(path, "mode=ro")
        except sqlite3.OperationalError as exc:
            # A WAL database on a read-only medium (an archive, a ro mount): SQLite cannot create
            # its -shm file. With no -wal content there is no writer and nothing beyond the main
            # file, so reading it as immutable is exact.
            wal = path.with_name(path.name + "-wal")
            cannot_open = getattr(exc, "sqlite_errorcode", 0) & 0xFF == _SQLITE_CANTOPEN
            if not cannot_open or (wal.exists() and wal.stat().st_size > 0):
                raise
            return _connect(path, "immutable=1")
    except sqlite3.Error as exc:
        if "no such table" in str(exc):
            raise StoreError(f"{path}: this SQLite file holds no event log") from exc
        raise translate_sqlite_error(exc, path) from exc


_SQLITE_CANTOPEN = 14


def _connect(path: Path, query: str) -> sqlite3.Connection:
    conn = sqlite3.connect(f"{path.resolve().as_uri()}?{query}", uri=True, check_same_thread=False)
    try:
        conn.execute("PRAGMA query_only = 1")
        conn.execute("PRAGMA busy_timeout = 5000")
        conn.execute("SELECT 1 FROM events LIMIT 1").fetchall()
    except BaseException:
        conn.close()
        raise
    return conn


class RowsAsEnvelopes:
    """`iter_envelopes` for any reader that has `iter_rows`: decoded, failures named by file."""

    path: Path

    def iter_rows(self, from_seq: int = 1, to_seq: int | None = None) -> Iterator[Row]:
        raise NotImplementedError

    def iter_envelopes(
        self, from_seq: int = 1, to_seq: int | None = None, validate: bool = False
    ) -> Iterator[Envelope]:
        for row in self.iter_rows(from_seq, to_seq):
            yield decode_checked(row, self.path, validate)

    def iter_inputs(self, from_seq: int = 1, to_seq: int | None = None) -> Iterator[Envelope]:
        """The input events only, decoded; decision rows are skipped without being decoded
        (what recovery and replay reduce: about a fifth faster than decoding every row)."""
        decisions = decision_type_names()
        for row in self.iter_rows(from_seq, to_seq):
            if row[2] not in decisions:
                yield decode_checked(row, self.path, False)


class DatabaseReader(RowsAsEnvelopes):
    """A `LogReader` over an SQLite database, on one read-only connection."""

    def __init__(self, path: Path, conn: sqlite3.Connection | None = None):
        self.path = path
        self._conn = conn if conn is not None else connect_read_only(path)

    def __enter__(self) -> DatabaseReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._conn.close()

    def iter_rows(self, from_seq: int = 1, to_seq: int | None = None) -> Iterator[Row]:
        """Raw rows in seq order, a page per statement (the fast scan)."""
        upper = to_seq if to_seq is not None else (1 << 62)
        sql = f"SELECT {COLUMNS} FROM events WHERE seq >= ? AND seq <= ? ORDER BY seq LIMIT ?"
        next_seq = from_seq
        while True:
            try:
                page = self._conn.execute(sql, (next_seq, upper, SCAN_PAGE)).fetchall()
            except sqlite3.Error as exc:
                raise translate_sqlite_error(exc, self.path) from exc
            yield from page
            if len(page) < SCAN_PAGE:
                return
            next_seq = page[-1][0] + 1

    def read(
        self,
        *,
        from_seq: int = 1,
        to_seq: int | None = None,
        types: Collection[str] | None = None,
        key: str | None = None,
        limit: int | None = None,
        validate: bool = False,
        newest: bool = False,
    ) -> list[Envelope]:
        """Envelopes matching every given filter, in seq order, in one statement.

        `limit` keeps the oldest matches, or with `newest` the newest ones (still in seq order).
        """
        where = ["seq >= ?"]
        params: list[object] = [from_seq]
        if to_seq is not None:
            where.append("seq <= ?")
            params.append(to_seq)
        if types is not None:
            names = list(types)
            if not names:
                return []
            where.append(f"type IN ({', '.join('?' * len(names))})")
            params.extend(names)
            if PER_REQUEST_TYPES.isdisjoint(names):
                where.append(TYPE_INDEX_WHERE)  # lets SQLite use the partial events_by_type
        if key is not None:
            where.append("key = ?")
            params.append(key)
        order = "DESC" if newest else "ASC"
        sql = f"SELECT {COLUMNS} FROM events WHERE {' AND '.join(where)} ORDER BY seq {order}"
        if limit is not None:
            sql += " LIMIT ?"
            params.append(max(0, limit))
        try:
            rows = self._conn.execute(sql, params).fetchall()
        except sqlite3.Error as exc:
            raise translate_sqlite_error(exc, self.path) from exc
        if newest:
            rows.reverse()
        return [decode_checked(row, self.path, validate) for row in rows]

    def last_seq(self) -> int:
        try:
            row = self._conn.execute("SELECT max(seq) FROM events").fetchone()
        except sqlite3.Error as exc:
            raise translate_sqlite_error(exc, self.path) from exc
        return int(row[0] or 0)

    def first_seq(self) -> int:
        """The lowest seq still in the log (0 when empty; above 1 once retention pruned it)."""
        try:
            row = self._conn.execute("SELECT min(seq) FROM events").fetchone()
        except sqlite3.Error as exc:
            raise translate_sqlite_error(exc, self.path) from exc
        return int(row[0] or 0)

    def range_facts(self, from_seq: int, to_seq: int) -> tuple[int, list[str]]:
        """How many rows lie in `from_seq..to_seq`, and their boot ids in order of appearance."""
        try:
            count = self._conn.execute(
                "SELECT count(*) FROM events WHERE seq BETWEEN ? AND ?", (from_seq, to_seq)
            ).fetchone()[0]
            boots = self._conn.execute(
                "SELECT boot FROM events WHERE seq BETWEEN ? AND ? GROUP BY boot ORDER BY min(seq)",
                (from_seq, to_seq),
            ).fetchall()
        except sqlite3.Error as exc:
            raise translate_sqlite_error(exc, self.path) from exc
        return int(count), [b[0] for b in boots]

    def schema_version(self) -> int:
        """The highest migration applied to this database."""
        return schema_version(self._conn)

    def latest_snapshot(
        self, reducer_version: str, *, max_seq: int | None = None
    ) -> Snapshot | None:
        """The newest snapshot written by `reducer_version` at or below `max_seq`."""
        sql = (
            "SELECT reducer_version, seq, digest, state FROM snapshots "
            "WHERE reducer_version = ? AND seq <= ? ORDER BY seq DESC LIMIT 1"
        )
        upper = max_seq if max_seq is not None else (1 << 62)
        try:
            row = self._conn.execute(sql, (reducer_version, upper)).fetchone()
        except sqlite3.Error as exc:
            raise translate_sqlite_error(exc, self.path) from exc
        if row is None:
            return None
        return Snapshot(row[0], row[1], row[2], bytes(row[3]))

    def projected_through(self) -> int | None:
        """The lowest seq every projection has applied (`projection_checkpoints`); None when no
        projection has recorded one yet. Retention never prunes past it."""
        try:
            row = self._conn.execute(
                "SELECT min(seq), count(*) FROM projection_checkpoints"
            ).fetchone()
        except sqlite3.OperationalError:  # a log without the projections' tables
            return None
        except sqlite3.Error as exc:
            raise translate_sqlite_error(exc, self.path) from exc
        return int(row[0]) if row[1] else None

    def snapshots_older_than(self, reducer_version: str, ts_ms: int) -> list[int]:
        """Seqs of `reducer_version`'s snapshots whose event is older than `ts_ms`, newest first.

        A snapshot whose event is no longer in the log does not count (nothing to anchor on).
        """
        sql = (
            "SELECT s.seq FROM snapshots AS s JOIN events AS e ON e.seq = s.seq "
            "WHERE s.reducer_version = ? AND e.ts_ms < ? ORDER BY s.seq DESC"
        )
        try:
            rows = self._conn.execute(sql, (reducer_version, ts_ms)).fetchall()
        except sqlite3.Error as exc:
            raise translate_sqlite_error(exc, self.path) from exc
        return [int(r[0]) for r in rows]


@functools.cache
def decision_type_names() -> frozenset[str]:
    """The `type` names of decisions (every class registers at import of `events.types`)."""
    return frozenset(name for name, cls in all_event_classes().items() if cls.IS_DECISION)


def decode_checked(row: Row, path: Path, validate: bool) -> Envelope:
    """`decode_row`, with a failure named by file and seq instead of a bare codec error."""
    try:
        return decode_row(row, validate=validate)
    except (PayloadError, KeyError, TypeError, ValueError) as exc:
        raise StoreError(f"{path}: event seq {row[0]} ({row[2]}) cannot be read: {exc}") from exc
