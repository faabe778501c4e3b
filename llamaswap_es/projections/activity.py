"""The `activity` table: one row per finished request, kept up to date from the event log.

`ActivityProjection.apply(conn, envelopes)` runs on the projections' write thread: it skips what
its checkpoint says it already applied, folds the rest (`ActivityFold`), and writes the new rows
together with the checkpoint in one transaction, so a crash between the two is impossible and a
restart never counts a request twice. `rebuild` empties the table and folds the whole log again;
ids are assigned in log order, so a rebuilt table equals the live one row for row. On a log that
retention pruned, `rebuild` keeps the rows the remaining events cannot recompute and refolds
only the rest.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llamaswap_es.events.pack_reader import PackedRows
from llamaswap_es.events.types import Envelope
from llamaswap_es.projections.activity_fold import ROW_COLUMNS, ActivityFold
from llamaswap_es.projections.database import read_checkpoint, write_checkpoint, write_transaction

NAME = "activity"
_STARTS = ("RequestReceived", "PeerRequestFinished")
"""The events that start an activity row: a rebuild from a seq redoes the rows they began."""
IDLE_CHECKPOINT_EVERY = 5_000
"""Batches that change nothing skip the write; the checkpoint still moves every this many seqs so
a restart does not re-read a long quiet tail."""

_INSERT = (
    f"INSERT INTO activity ({', '.join(ROW_COLUMNS)}) VALUES ({', '.join('?' * len(ROW_COLUMNS))})"
)


@dataclass(frozen=True, slots=True)
class AppliedRow:
    """A row just written: its activity id and our request id (for the `activity` SSE event)."""

    id: int
    request_id: str
    model: str
    row: dict[str, Any] = field(default_factory=dict, repr=False)
    """Every column of the row (what `/metrics` counts)."""


class ActivityProjection:
    name = NAME

    def __init__(self, path: Path) -> None:
        self.path = path
        self.fold: ActivityFold | None = None
        self.seq = 0
        self._written_seq = 0
        self._keep: frozenset[str] = frozenset()
        """Request ids whose kept row a pruned-log rebuild must not write again."""

    def load(self, conn: sqlite3.Connection) -> int:
        """Read the checkpoint (once); returns the last seq applied."""
        if self.fold is None:
            checkpoint = read_checkpoint(conn, NAME)
            self.fold = ActivityFold.from_state(checkpoint.state)
            self.seq = self._written_seq = checkpoint.seq
        return self.seq

    def apply(self, conn: sqlite3.Connection, envelopes: Sequence[Envelope]) -> list[AppliedRow]:
        """Fold `envelopes` (any already applied are skipped) and write the new rows."""
        self.load(conn)
        assert self.fold is not None
        rows: list[dict[str, Any]] = []
        last = self.seq
        touched = False
        for env in envelopes:
            if env.seq <= last:
                continue
            last = env.seq
            row = self.fold.step(env)
            touched = touched or _matters(env)
            if row is not None and row["request_id"] not in self._keep:
                rows.append(row)
        if last == self.seq:
            return []
        if not touched and last - self._written_seq < IDLE_CHECKPOINT_EVERY:
            self.seq = last  # nothing changed: re-reading these after a restart is harmless
            return []
        try:
            applied = self._write(conn, rows, last)
        except BaseException:
            self.fold = None  # the transaction rolled back: the next apply re-reads the checkpoint
            raise
        self.seq = self._written_seq = last
        return applied

    def _write(
        self, conn: sqlite3.Connection, rows: list[dict[str, Any]], last: int
    ) -> list[AppliedRow]:
        assert self.fold is not None
        applied: list[AppliedRow] = []
        with write_transaction(conn, self.path):
            for row in rows:
                cursor = conn.execute(_INSERT, [row[c] for c in ROW_COLUMNS])
                row_id = int(cursor.lastrowid or 0)
                applied.append(AppliedRow(row_id, row["request_id"], row["model_id"], row))
            write_checkpoint(conn, NAME, last, self.fold.to_state())
        return applied

    def reset(self, conn: sqlite3.Connection) -> None:
        """Empty the table and the checkpoint (ids start from 1 again)."""
        with write_transaction(conn, self.path):
            conn.execute("DELETE FROM activity")
            conn.execute("DELETE FROM sqlite_sequence WHERE name = 'activity'")
            conn.execute("DELETE FROM projection_checkpoints WHERE name = ?", (NAME,))
        self.fold = ActivityFold()
        self.seq = self._written_seq = 0

    def reset_from(self, conn: sqlite3.Connection, first_seq: int) -> int:
        """Prepare a rebuild of a log that starts at `first_seq` (retention pruned the rest).

        Deletes only the rows the remaining events will write again: those ended at or after
        `first_seq` whose request was received (or, from a peer, recorded) there too. Rows of
        requests whose start was pruned are kept as they are, and so are all older rows; the
        fold starts empty just before `first_seq`. Returns the rows kept.
        """
        with write_transaction(conn, self.path):
            conn.execute(
                "DELETE FROM activity WHERE seq >= ? AND request_id IN (SELECT key FROM events "
                f"WHERE seq >= ? AND type IN ('{_STARTS[0]}', '{_STARTS[1]}'))",
                (first_seq, first_seq),
            )
            packed = PackedRows(conn, self.path)  # the same, for request events in packs
            started = packed.matching(
                first_seq, packed.packed_through(), types=_STARTS, key=None, limit=None,
                newest=False,
            )  # fmt: skip
            conn.executemany(
                "DELETE FROM activity WHERE seq >= ? AND request_id = ?",
                [(first_seq, row[3]) for row in started],
            )
            conn.execute(
                "UPDATE sqlite_sequence SET seq = (SELECT coalesce(max(id), 0) FROM activity) "
                "WHERE name = 'activity'"
            )
            conn.execute("DELETE FROM projection_checkpoints WHERE name = ?", (NAME,))
            kept = int(conn.execute("SELECT count(*) FROM activity").fetchone()[0])
            boundary = conn.execute("SELECT request_id FROM activity WHERE seq >= ?", (first_seq,))
            self._keep = frozenset(r[0] for r in boundary)
        self.fold = ActivityFold()
        self.seq = self._written_seq = first_seq - 1
        return kept

    def rebuild(
        self,
        conn: sqlite3.Connection,
        envelopes: Iterable[Envelope],
        page: int = 5_000,
        *,
        first_seq: int = 1,
    ) -> int:
        """Fold `envelopes` (the whole log, from `first_seq`) again; returns rows written.

        From seq 1 the table is emptied first; a pruned log (`first_seq` > 1) keeps the rows
        it cannot recompute (`reset_from`).
        """
        if first_seq > 1:
            self.reset_from(conn, first_seq)
        else:
            self.reset(conn)
        try:
            return self._fold_all(conn, envelopes, page)
        finally:
            self._keep = frozenset()

    def _fold_all(self, conn: sqlite3.Connection, envelopes: Iterable[Envelope], page: int) -> int:
        written = 0
        batch: list[Envelope] = []
        for env in envelopes:
            batch.append(env)
            if len(batch) >= page:
                written += len(self.apply(conn, batch))
                batch.clear()
        written += len(self.apply(conn, batch))
        if self.seq > self._written_seq:  # a quiet tail: record how far the rebuild read
            with write_transaction(conn, self.path):
                write_checkpoint(conn, NAME, self.seq, self.fold.to_state() if self.fold else {})
            self._written_seq = self.seq
        return written


_RELEVANT = frozenset(
    {
        "RequestReceived", "RequestFinished", "RequestCancelled", "RequestAbandoned", "Reject",
        "PeerRequestFinished",
        "Dispatch", "SwapPlanned", "StartProcess", "ProcessReady", "ProcessStartFailed",
        "ProcessStopped", "ProcessExited",
    }
)  # fmt: skip


def _matters(env: Envelope) -> bool:
    return env.type in _RELEVANT
