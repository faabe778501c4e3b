"""The projections' own connections to the event log's database file, and their checkpoints.

Projections live in the same SQLite file as `events` (so plain SQL joins them) but never write
through the log's writer: they have one write connection of their own, driven from one thread
(`ProjectionDatabase.run`), so a projection write never blocks the event loop, and read-only
connections for the HTTP API. Write transactions are short and `BEGIN IMMEDIATE`; the log's writer
and this one take turns on SQLite's write lock (busy timeout 5 s, as everywhere).

The tables come from the migrations (0003_projections.sql), applied when the store opens.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from llamaswap_es.events.errors import StoreError, translate_sqlite_error
from llamaswap_es.events.schema import migrate
from llamaswap_es.events.worker_thread import WorkerThread
from llamaswap_es.events.write_gate import WriteGate

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """Where a projection stands: the last seq it applied and the state it continues from."""

    name: str
    seq: int
    state: dict[str, Any]


def connect_writer(path: Path) -> sqlite3.Connection:
    """A write connection in autocommit mode (transactions are explicit), migrated to date."""
    try:
        conn = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA busy_timeout = 5000")
        # Projections are rebuildable from the log: no fsync per commit (the log is NORMAL too).
        conn.execute("PRAGMA synchronous = NORMAL")
        migrate(conn, path)
    except sqlite3.Error as exc:
        raise translate_sqlite_error(exc, path) from exc
    return conn


def connect_reader(path: Path) -> sqlite3.Connection:
    """A read-only connection for queries (never holds a transaction across an await)."""
    if not path.is_file():
        raise StoreError(f"{path}: no event log here (the file does not exist)")
    try:
        uri = f"{path.resolve().as_uri()}?mode=ro"
        conn = sqlite3.connect(uri, uri=True, check_same_thread=False)
        conn.execute("PRAGMA query_only = 1")
        conn.execute("PRAGMA busy_timeout = 5000")
    except sqlite3.Error as exc:
        raise translate_sqlite_error(exc, path) from exc
    return conn


@contextmanager
def write_transaction(conn: sqlite3.Connection, path: Path) -> Iterator[sqlite3.Connection]:
    """`BEGIN IMMEDIATE … COMMIT`, rolled back on any error (named by file), holding the file's
    write gate (events/write_gate.py) so the log's writer waits on a lock, not a busy poll."""
    with WriteGate(path).held():
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise translate_sqlite_error(exc, path) from exc
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        try:
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise translate_sqlite_error(exc, path) from exc


def read_checkpoint(conn: sqlite3.Connection, name: str) -> Checkpoint:
    row = conn.execute(
        "SELECT seq, state FROM projection_checkpoints WHERE name = ?", (name,)
    ).fetchone()
    if row is None:
        return Checkpoint(name, 0, {})
    return Checkpoint(name, int(row[0]), json.loads(row[1] or "{}"))


def write_checkpoint(conn: sqlite3.Connection, name: str, seq: int, state: dict[str, Any]) -> None:
    """Record the checkpoint; call inside the transaction that wrote the projection's rows."""
    conn.execute(
        "INSERT INTO projection_checkpoints (name, seq, state, updated_ms) VALUES (?, ?, ?, ?) "
        "ON CONFLICT (name) DO UPDATE SET seq = excluded.seq, state = excluded.state, "
        "updated_ms = excluded.updated_ms",
        (name, seq, json.dumps(state, separators=(",", ":"), sort_keys=True), _now_ms()),
    )


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


class ProjectionDatabase:
    """One write connection on one thread, plus per-thread read connections for queries."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path).expanduser().absolute()
        self._write_thread = WorkerThread("projections-write")
        self._read_thread = WorkerThread("projections-read")
        self._writer: sqlite3.Connection | None = None
        self._read_local = threading.local()
        self._readers: list[sqlite3.Connection] = []
        self._closed = False

    # -- writing -------------------------------------------------------------------------

    def writer(self) -> sqlite3.Connection:
        """The write connection; only call from the write thread (or a synchronous tool)."""
        if self._writer is None:
            self._writer = connect_writer(self.path)
        return self._writer

    async def run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run `fn(write_connection)` on the write thread; SQLite's errors become store errors
        that name the file (a full disk is a `StoreFullError` the caller can wait out)."""
        if self._closed:
            raise StoreError(f"{self.path}: the projection database is closed")

        def call() -> T:
            try:
                return fn(self.writer())
            except (sqlite3.Error, OSError) as exc:
                raise translate_sqlite_error(exc, self.path) from exc

        return await self._write_thread.call(call)

    def run_sync(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """`run` for synchronous callers (the rebuild command, tests)."""
        return self._write_thread.call_blocking(lambda: fn(self.writer()))

    # -- reading -------------------------------------------------------------------------

    def reader(self) -> sqlite3.Connection:
        conn = getattr(self._read_local, "conn", None)
        if conn is None:
            conn = connect_reader(self.path)
            self._read_local.conn = conn
            self._readers.append(conn)
        return conn

    async def query(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run `fn(read_only_connection)` on the read thread; errors name the file."""
        if self._closed:
            raise StoreError(f"{self.path}: the projection database is closed")

        def call() -> T:
            try:
                return fn(self.reader())
            except sqlite3.Error as exc:
                raise translate_sqlite_error(exc, self.path) from exc

        return await self._read_thread.call(call)

    # -- closing -------------------------------------------------------------------------

    def close(self) -> None:
        """Close every connection (waits for work already queued on the threads)."""
        if self._closed:
            return
        self._closed = True
        self._write_thread.close()
        self._read_thread.close()
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        for conn in self._readers:
            conn.close()
        self._readers.clear()
