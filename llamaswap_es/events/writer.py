"""The one writing connection to a log, synchronous: opened, checked, migrated, then appended to.

`EventStore` drives it from a dedicated thread (the run loop's batches, snapshots, pruning);
bundle import and test or bench tools drive it directly. Opening takes the single-server lock
*before* anything touches the database, so two servers can never migrate or append at the same
time. Rows arrive with their seqs (on a running server the run loop assigns them, once) and must
continue the log exactly: `next_seq` only advances after COMMIT returns, so commit order is seq
order and a reader tailing `seq > last` can never skip a row (EVENT-LOG.md §1.8).
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import os
import sqlite3
import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

from llamaswap_es.events.errors import (
    StoreCorruptError,
    StoreError,
    translate_sqlite_error,
)
from llamaswap_es.events.lock import ServerLock
from llamaswap_es.events.pack import INSERT_SQL as PACK_INSERT_SQL
from llamaswap_es.events.pack import EncodedPack, decode_pack, encode_pack, packed_through
from llamaswap_es.events.rows import PACKED_TYPES, Row, UnsequencedRow
from llamaswap_es.events.schema import migrate
from llamaswap_es.events.write_gate import WriteGate

SYNCHRONOUS_LEVELS = ("normal", "full")

ROWS_PER_STATEMENT = 64
"""Rows bound into one multi-row INSERT (8 x 64 = 512 parameters, far below SQLite's limit).

One statement per 64 rows instead of one per row costs ~25% less writer time per row, and the
writer thread gives up and takes back the GIL once per statement instead of once per row."""


@functools.cache
def _insert(rows: int) -> str:
    """The INSERT for `rows` rows (at most ROWS_PER_STATEMENT distinct texts: sqlite3 keeps each
    prepared in its statement cache)."""
    values = ", ".join(["(?, ?, ?, ?, ?, ?, ?, ?)"] * rows)
    return f"INSERT INTO events (seq, ts_ms, type, key, boot, v, cause, payload) VALUES {values}"


_PACKED = sorted(PACKED_TYPES)


def prepare_pack(
    conn: sqlite3.Connection, through_seq: int, rows: int, keep_plain: int
) -> EncodedPack | None:
    """The next pack: the oldest `rows` packable rows at or below `through_seq`, encoded; None
    unless a full block lies there with at least `keep_plain` packable rows after it.

    Reads only (any connection to the log, e.g. a read-only one on a worker thread: encoding
    takes most of a block's time); `LogWriter.store_pack` checks and writes it."""
    marks = ", ".join("?" * len(_PACKED))
    start = packed_through(conn) + 1
    block = conn.execute(
        f"SELECT seq, ts_ms, type, key, boot, v, cause, payload FROM events "
        f"WHERE seq >= ? AND seq <= ? AND type IN ({marks}) ORDER BY seq LIMIT ?",
        (start, through_seq, *_PACKED, rows),
    ).fetchall()
    if not block or len(block) < rows:
        return None
    newer = conn.execute(
        f"SELECT count(*) FROM (SELECT 1 FROM events WHERE seq > ? AND type IN ({marks}) LIMIT ?)",
        (block[-1][0], *_PACKED, keep_plain),
    ).fetchone()[0]
    if newer < keep_plain:
        return None
    return encode_pack(block)


class SeqMismatchError(RuntimeError):
    """A batch's seqs do not continue the log: a programming error (two writers numbering rows),
    not a storage fault, so the run loop stops on it instead of retrying it as it would a full
    disk."""


class LogWriter:
    """Owns the write connection and the lock. Not thread-safe: one thread calls it at a time."""

    def __init__(self, path: Path, conn: sqlite3.Connection, lock: ServerLock):
        self.path = path
        self._gate = WriteGate(path)
        self._conn = conn
        self._lock = lock
        self.next_seq = self._read_next_seq()

    @classmethod
    def open(cls, path: str | Path, *, synchronous: str = "normal") -> LogWriter:
        """Create the directory, lock, check, configure and migrate the database at `path`."""
        level = synchronous.lower()
        if level not in SYNCHRONOUS_LEVELS:
            raise ValueError(
                f"synchronous must be one of {SYNCHRONOUS_LEVELS}, not {synchronous!r}"
            )
        path = Path(path).expanduser().absolute()
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise translate_sqlite_error(exc, path) from exc
        lock = ServerLock.acquire(path)
        try:
            conn = _connect(path, level)
            try:
                migrate(conn, path)
            except BaseException:
                conn.close()
                raise
            return cls(path, conn, lock)
        except BaseException:
            lock.release()
            raise

    def _read_next_seq(self) -> int:
        # sqlite_sequence remembers the highest seq ever used, even if the tail was deleted.
        used = self._conn.execute(
            "SELECT max(coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'events'), 0), "
            "coalesce((SELECT max(seq) FROM events), 0), "
            "coalesce((SELECT max(last_seq) FROM event_packs), 0))"
        ).fetchone()[0]
        return int(used) + 1

    def append(self, rows: Sequence[UnsequencedRow]) -> int:
        """Write `rows` in one transaction, numbered from `next_seq`; returns the first seq.

        For writers without a run loop (tools, tests, benches)."""
        first = self.next_seq
        self.commit([(first + i, *row) for i, row in enumerate(rows)])
        return first

    def commit(self, rows: Sequence[Row]) -> None:
        """Write rows that carry their seqs, in one transaction; they must continue the log.

        The run loop numbers its batch itself from the log's last seq at start; a batch that does
        not start at `next_seq` means a second writer numbered rows too (a bug, never a disk
        fault), so it is refused with `SeqMismatchError` before anything is written.
        """
        if not rows:
            return
        first, last = rows[0][0], rows[-1][0]
        if first != self.next_seq or last != first + len(rows) - 1:
            raise SeqMismatchError(
                f"{self.path}: a batch numbered {first}..{last} ({len(rows)} rows) does not "
                f"continue the log, whose next seq is {self.next_seq}: two writers are "
                "numbering events for this log"
            )
        if len(rows) <= ROWS_PER_STATEMENT:
            self._write_statement(rows)
        else:
            self._write(rows)
        self.next_seq = last + 1

    def _write_statement(self, rows: Sequence[Row]) -> None:
        """A batch that fits one INSERT, as its own transaction (autocommit): the same atomic,
        durable write as BEGIN IMMEDIATE … COMMIT, in one call into SQLite instead of three.

        Each call into SQLite gives up the GIL and takes it back; with the event loop busy,
        taking it back can wait for the loop's switch interval, on the path of every request
        (its batch is written before it is dispatched)."""
        if self._conn.in_transaction:  # left open by a failure: BEGIN IMMEDIATE says so loudly
            self._write(rows)
            return
        with self._gate.held():
            try:
                self._insert(rows)
            except sqlite3.Error as exc:
                self._rollback()
                raise translate_sqlite_error(exc, self.path) from exc

    def insert_all(self, rows: Iterable[Row]) -> None:
        """Write rows that already carry their seqs (bundle import), streamed, one transaction.

        Any error (a truncated bundle, a full disk) rolls everything back.
        """
        self._write(rows)
        self.next_seq = self._read_next_seq()

    def _write(self, rows: Iterable[Sequence[object]]) -> None:
        with self._transaction():
            chunk: list[Sequence[object]] = []
            for row in rows:  # may be a stream (bundle import): never materialised whole
                chunk.append(row)
                if len(chunk) == ROWS_PER_STATEMENT:
                    self._insert(chunk)
                    chunk = []
            if chunk:
                self._insert(chunk)

    def _insert(self, chunk: Sequence[Sequence[object]]) -> None:
        self._conn.execute(_insert(len(chunk)), list(itertools.chain.from_iterable(chunk)))

    def save_snapshot(self, *, reducer_version: str, seq: int, digest: str, state: bytes) -> None:
        with self._transaction():
            self._conn.execute(
                "INSERT OR REPLACE INTO snapshots "
                "(reducer_version, seq, digest, state, created_ms) VALUES (?, ?, ?, ?, ?)",
                (reducer_version, seq, digest, state, int(time.time() * 1000)),
            )

    def prune_chunk(self, through_seq: int, limit: int) -> int:
        """Delete the oldest events, at most `limit` of them and none above `through_seq`.

        One short transaction, so appends wait for one chunk at most (retention calls this
        repeatedly, see `EventStore.prune_through`). Returns the rows deleted; 0 when nothing
        at or below `through_seq` is left. Seqs are never reused: AUTOINCREMENT remembers them.
        """
        with self._transaction():
            first = self._conn.execute(
                "SELECT min(s) FROM (SELECT min(seq) AS s FROM events "
                "UNION ALL SELECT min(first_seq) FROM event_packs)"
            ).fetchone()[0]
            if first is None or first > through_seq:
                return 0
            upper = min(through_seq, first + max(1, limit) - 1)
            cursor = self._conn.execute(
                "DELETE FROM events WHERE seq >= ? AND seq <= ?", (first, upper)
            )
            # The packed rows of the same stretch go in the same transaction: a prune that stops
            # after any chunk (shutdown, kill -9) leaves the log a contiguous suffix, as before.
            return cursor.rowcount + self._drop_packs_through(upper)

    def pack_block(self, through_seq: int, rows: int, keep_plain: int) -> int:
        """Move the oldest `rows` packable rows at or below `through_seq` into one pack.

        Only when a full block lies there and at least `keep_plain` packable rows stay plain
        after it (the newest requests stay rows). Returns the rows packed (0: none). The store
        prepares the pack on another thread instead (`prepare_pack`), so that only
        `store_pack`'s short transaction runs on the writer thread.
        """
        pack = prepare_pack(self._conn, through_seq, rows, keep_plain)
        return 0 if pack is None else self.store_pack(pack)

    def store_pack(self, pack: EncodedPack) -> int:
        """Insert `pack` and delete its rows, in one transaction (a crash leaves either).

        Only if its rows are still exactly the oldest packable rows (nothing pruned or packed
        since it was prepared); returns its rows, or 0 when it no longer fits (nothing changed).
        """
        marks = ", ".join("?" * len(_PACKED))
        with self._transaction():
            start = packed_through(self._conn) + 1
            found = self._conn.execute(
                f"SELECT count(*), min(seq) FROM events WHERE seq >= ? AND seq <= ? "
                f"AND type IN ({marks})",
                (start, pack.last_seq, *_PACKED),
            ).fetchone()
            if (found[0], found[1]) != (pack.count, pack.first_seq):
                return 0
            self._conn.execute(PACK_INSERT_SQL, pack.as_params())
            deleted = self._conn.execute(
                f"DELETE FROM events WHERE seq >= ? AND seq <= ? AND type IN ({marks})",
                (pack.first_seq, pack.last_seq, *_PACKED),
            ).rowcount
            if deleted != pack.count:  # cannot happen with one writer; never lose a row to it
                raise StoreError(
                    f"{self.path}: packing seqs {pack.first_seq}..{pack.last_seq} would delete "
                    f"{deleted} rows, not the {pack.count} packed; nothing was changed"
                )
            return pack.count

    def prune_packs(self, through_seq: int) -> int:
        """Drop the packs wholly at or below `through_seq`; a pack that straddles it is written
        again without its rows at or below it. One transaction; returns the rows dropped."""
        with self._transaction():
            return self._drop_packs_through(through_seq)

    def _drop_packs_through(self, through_seq: int) -> int:
        """`prune_packs` inside the caller's transaction; returns the packed rows dropped."""
        dropped = self._conn.execute(
            "SELECT coalesce(sum(count), 0) FROM event_packs WHERE last_seq <= ?",
            (through_seq,),
        ).fetchone()[0]
        self._conn.execute("DELETE FROM event_packs WHERE last_seq <= ?", (through_seq,))
        straddling = self._conn.execute(
            "SELECT first_seq, codec, keys, data FROM event_packs "
            "WHERE first_seq <= ? AND last_seq > ?",
            (through_seq, through_seq),
        ).fetchone()
        if straddling is not None:
            rows = decode_pack(straddling[1], bytes(straddling[2]), bytes(straddling[3]))
            kept = [row for row in rows if row[0] > through_seq]
            self._conn.execute("DELETE FROM event_packs WHERE first_seq = ?", (straddling[0],))
            self._conn.execute(PACK_INSERT_SQL, encode_pack(kept).as_params())
            dropped += len(rows) - len(kept)
        return int(dropped)

    def prune_snapshots_before(self, seq: int) -> int:
        """Delete the snapshots below `seq` (of every reducer version); returns how many."""
        with self._transaction():
            return self._conn.execute("DELETE FROM snapshots WHERE seq < ?", (seq,)).rowcount

    def has_snapshot_at(self, seq: int) -> bool:
        row = self._conn.execute("SELECT 1 FROM snapshots WHERE seq = ? LIMIT 1", (seq,))
        return row.fetchone() is not None

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[None]:
        """BEGIN IMMEDIATE … COMMIT; any failure rolls back, SQLite's errors name the file."""
        conn = self._conn
        with self._gate.held():  # events/write_gate.py: turns with the projections' writer
            try:
                conn.execute("BEGIN IMMEDIATE")
                yield
                conn.execute("COMMIT")
            except sqlite3.Error as exc:
                self._rollback()
                raise translate_sqlite_error(exc, self.path) from exc
            except BaseException:
                self._rollback()
                raise

    def count_rows(self, table: str) -> int:
        return int(self._conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0])

    def _rollback(self) -> None:
        if self._conn.in_transaction:
            try:
                self._conn.execute("ROLLBACK")
            except sqlite3.Error:  # the connection is gone too; the next call reports it
                pass

    def close(self) -> None:
        """Checkpoint and truncate the WAL, close, then let the next server in."""
        try:
            try:
                self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            except sqlite3.Error:  # a full disk must not keep us from closing
                pass
            self._conn.close()
        finally:
            self._lock.release()


def _connect(path: Path, level: str) -> sqlite3.Connection:
    """Open, run quick_check, set the pragmas; every failure names `path` and its cause."""
    existed = path.exists()
    if existed and not os.access(path, os.R_OK):
        raise StoreError(f"{path}: the event log cannot be read (permission denied)")
    try:
        conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    except sqlite3.Error as exc:
        raise translate_sqlite_error(exc, path) from exc
    try:
        conn.execute("PRAGMA busy_timeout = 5000")
        result = [r[0] for r in conn.execute("PRAGMA quick_check").fetchall()]
        if result != ["ok"]:
            raise StoreCorruptError(path, "quick_check: " + "; ".join(result[:5]))
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise StoreError(f"{path}: SQLite refused WAL mode (journal_mode is {mode})")
        conn.execute(f"PRAGMA synchronous = {level.upper()}")
        conn.execute("PRAGMA journal_size_limit = 67108864")
        conn.execute("PRAGMA temp_store = MEMORY")
        conn.execute("PRAGMA cache_size = -32000")
        # Probe for write access now, so a read-only file fails at open, not at the first append.
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("ROLLBACK")
    except BaseException as exc:
        conn.close()
        if isinstance(exc, sqlite3.Error):
            raise translate_sqlite_error(exc, path) from exc
        raise
    return conn
