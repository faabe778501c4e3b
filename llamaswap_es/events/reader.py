"""Synchronous, read-only access to a log: for tools, benchmarks and the store's read threads.

A `LogReader` scans in seq order, reads filtered, and finds the newest snapshot; `open_log` (in
`events/open_log.py`, above this module and `bundle.py`) picks the reader for a path. The
database is opened read-only (`mode=ro`, `query_only`), so a tool can never change a live
server's log. Scans page through the table with keyset queries (`seq >= ? ORDER BY seq LIMIT n`)
so no read transaction stays open for long: a reader that lingers would stop the writer's
checkpoints and grow the WAL (EVENT-LOG.md §2.4).
"""

from __future__ import annotations

import contextlib
import functools
import heapq
import sqlite3
from collections.abc import Collection, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from llamaswap_es.events.codec import PayloadError
from llamaswap_es.events.errors import StoreError, translate_sqlite_error
from llamaswap_es.events.pack_reader import PackedRows
from llamaswap_es.events.rows import (
    COLUMNS,
    PACKED_TYPES,
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
        self._packs = PackedRows(self._conn, path)

    def __enter__(self) -> DatabaseReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._conn.close()

    def iter_rows(self, from_seq: int = 1, to_seq: int | None = None) -> Iterator[Row]:
        """Raw rows in seq order, plain and packed merged, a page per read transaction (the fast
        scan). Above the packed part one statement reads a page; below it, a window of
        `SCAN_PAGE` seqs is read from both, in one transaction."""
        upper = to_seq if to_seq is not None else (1 << 62)
        plain_sql = f"SELECT {COLUMNS} FROM events WHERE seq >= ? AND seq <= ? ORDER BY seq LIMIT ?"
        next_seq = from_seq
        while next_seq <= upper:
            try:
                with self._consistent():
                    packed_through = self._packs.packed_through()
                    if next_seq > packed_through:
                        page = self._conn.execute(
                            plain_sql, (next_seq, upper, SCAN_PAGE)
                        ).fetchall()
                        window_end = upper if len(page) < SCAN_PAGE else page[-1][0]
                    else:
                        window_end = min(upper, next_seq + SCAN_PAGE - 1)
                        plain = self._conn.execute(
                            plain_sql, (next_seq, window_end, SCAN_PAGE)
                        ).fetchall()
                        packed = self._packs.rows_in(next_seq, window_end)
                        page = list(heapq.merge(plain, packed, key=_seq_of))
                        if not page:
                            window_end = self._skip_gap(window_end, upper)
            except sqlite3.Error as exc:
                raise translate_sqlite_error(exc, self.path) from exc
            yield from page
            next_seq = window_end + 1

    def _skip_gap(self, after: int, upper: int) -> int:
        """Where an empty window may jump to: just before the next plain row or pack above
        `after` (a pruned or fully packed stretch is not walked window by window)."""
        if self._packs.packs(after + 1, after + 1):
            return after
        plain = self._conn.execute("SELECT min(seq) FROM events WHERE seq > ?", (after,))
        candidates = [int(v) for v in (plain.fetchone()[0], self._packs.next_pack(after)) if v]
        return min([upper, *(c - 1 for c in candidates)])

    @contextlib.contextmanager
    def _consistent(self) -> Iterator[None]:
        """One read transaction around several statements, so that a block packed meanwhile
        is seen either as rows or as its pack, never both or neither."""
        if not self._packs.present or self._conn.in_transaction:
            yield
            return
        self._conn.execute("BEGIN")
        try:
            yield
        finally:
            self._conn.execute("COMMIT")

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
        """Envelopes matching every given filter, in seq order (packed rows included).

        `limit` keeps the oldest matches, or with `newest` the newest ones (still in seq order).
        """
        where = ["seq >= ?"]
        params: list[object] = [from_seq]
        if to_seq is not None:
            where.append("seq <= ?")
            params.append(to_seq)
        names: list[str] | None = None
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
            with self._consistent():
                rows = self._conn.execute(sql, params).fetchall()
                packed: list[Row] = []
                if self._packs.present and (names is None or not PACKED_TYPES.isdisjoint(names)):
                    packed_through = self._packs.packed_through()
                    if from_seq <= packed_through:
                        hi = packed_through if to_seq is None else min(to_seq, packed_through)
                        packed = self._packs.matching(
                            from_seq, hi, types=names, key=key,
                            limit=None if limit is None else max(0, limit), newest=newest,
                        )  # fmt: skip
        except sqlite3.Error as exc:
            raise translate_sqlite_error(exc, self.path) from exc
        if newest:
            rows.reverse()
        if packed:
            rows = list(heapq.merge(rows, packed, key=_seq_of))
            if limit is not None:
                rows = rows[-limit:] if newest and limit > 0 else rows[: max(0, limit)]
        return [decode_checked(row, self.path, validate) for row in rows]

    def last_seq(self) -> int:
        try:
            with self._consistent():
                row = self._conn.execute("SELECT max(seq) FROM events").fetchone()
                packed = self._packs.packed_through()
        except sqlite3.Error as exc:
            raise translate_sqlite_error(exc, self.path) from exc
        return max(int(row[0] or 0), packed)

    def first_seq(self) -> int:
        """The lowest seq still in the log (0 when empty; above 1 once retention pruned it)."""
        try:
            with self._consistent():
                row = self._conn.execute("SELECT min(seq) FROM events").fetchone()
                packed = self._packs.first_packed()
        except sqlite3.Error as exc:
            raise translate_sqlite_error(exc, self.path) from exc
        found = [v for v in (int(row[0] or 0), packed) if v]
        return min(found) if found else 0

    def range_facts(self, from_seq: int, to_seq: int) -> tuple[int, list[str]]:
        """How many rows lie in `from_seq..to_seq`, and their boot ids in order of appearance."""
        try:
            with self._consistent():
                count = self._conn.execute(
                    "SELECT count(*) FROM events WHERE seq BETWEEN ? AND ?", (from_seq, to_seq)
                ).fetchone()[0]
                boots = self._conn.execute(
                    "SELECT boot, min(seq) FROM events WHERE seq BETWEEN ? AND ? GROUP BY boot",
                    (from_seq, to_seq),
                ).fetchall()
                first_by_boot = {boot: int(seq) for boot, seq in boots}
                for info in self._packs.packs(from_seq, to_seq):
                    rows = self._packs.rows(info, from_seq, to_seq)
                    count += len(rows)
                    for row in rows:
                        if row[4] not in first_by_boot or row[0] < first_by_boot[row[4]]:
                            first_by_boot[row[4]] = row[0]
        except sqlite3.Error as exc:
            raise translate_sqlite_error(exc, self.path) from exc
        return int(count), sorted(first_by_boot, key=first_by_boot.__getitem__)

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
        try:
            with self._consistent():
                snaps = self._conn.execute(
                    "SELECT DISTINCT seq FROM snapshots WHERE reducer_version = ? "
                    "ORDER BY seq DESC",
                    (reducer_version,),
                ).fetchall()
                out = []
                for (seq,) in snaps:
                    found = self._conn.execute(
                        "SELECT ts_ms FROM events WHERE seq = ?", (seq,)
                    ).fetchone()
                    event_ts = found[0] if found else self._packs.ts_of(seq)
                    if event_ts is not None and event_ts < ts_ms:
                        out.append(int(seq))
        except sqlite3.Error as exc:
            raise translate_sqlite_error(exc, self.path) from exc
        return out


def _seq_of(row: Row) -> int:
    return row[0]


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
