"""The local history: the node's own event-log file as its history database, as a projection.

By default (`historyDatabase: ""`) the history lives in the event log's own file. There it needs
no sink of its own and no SQLAlchemy (~21 MiB resident): `history_requests` is a view over
`activity` (`local_view`), and `history_decisions` is one more table projection that the
projection runner applies on its write thread next to `activity` (`DecisionProjection`, folding
with the history fold's `DecisionFold`, the same rows the sink writes to a shared database). Its
checkpoint is an ordinary row in `projection_checkpoints` (`history_decisions`), so retention
already never prunes past it.

`history_checkpoints` keeps only other nodes' rows in this file (if any wrote here): this node's
row is derived from its projections' checkpoints when read (`queries.nodes_statement`), so it is
always current without a write per batch.

A file that an older version's sink wrote continues exactly where the sink stopped
(`prepare_local_history`): the projection starts from the sink's checkpoint (its seq and its
decision fold's state), and the sink's retention hold row (`history`) and checkpoint row go, in
the one transaction that writes the projection's checkpoint.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
import time
from collections import deque
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from llamaswap_es.events.types import Envelope
from llamaswap_es.projections.database import (
    ProjectionDatabase,
    read_checkpoint,
    write_checkpoint,
    write_transaction,
)
from llamaswap_es.projections.history.columns import DECISION_COLUMNS
from llamaswap_es.projections.history.fold import DecisionFold
from llamaswap_es.projections.history.local_view import use_activity_as_requests
from llamaswap_es.projections.history.migration_files import migrate_local_history
from llamaswap_es.projections.history.queries import Statement
from llamaswap_es.projections.history.status import HistoryStatus

if TYPE_CHECKING:
    from llamaswap_es.projections.activity import AppliedRow
    from llamaswap_es.projections.runner import ProjectionRunner

log = logging.getLogger("llamaswap_es.projections.history")

NAME = "history_decisions"
"""The decision projection's row in `projection_checkpoints`."""
SINK_HOLD = "history"
"""The retention hold row an older version's history sink kept in `projection_checkpoints`."""
IDLE_CHECKPOINT_EVERY = 5_000
"""Batches that add no decision skip the write; the checkpoint still moves every this many seqs."""
CURRENT_WITHIN_S = 1.0
"""As the sink: history whose oldest unapplied event is younger than this is `current`."""
READ_TIMEOUT_S = 10.0
MAX_PENDING = 100_000
"""Committed batches remembered for the lag's age (bounded: a stalled runner cannot grow it)."""

_INSERT = (
    f"INSERT INTO history_decisions ({', '.join(DECISION_COLUMNS)}) "
    f"VALUES ({', '.join('?' * len(DECISION_COLUMNS))}) ON CONFLICT (node, seq) DO NOTHING"
)


def wall_ms() -> int:
    return time.time_ns() // 1_000_000


def shown_database(path: Path) -> str:
    """How `/api/history` names the local history database: as it did while a SQLAlchemy
    engine wrote it (monitoring that compares the field keeps working)."""
    return f"sqlite+aiosqlite:///{path}"


def prepare_local_history(conn: sqlite3.Connection, path: Path, node: str, log_id: str) -> bool:
    """Migrate the history tables, make `history_requests` the view over activity and take over
    from an older version's sink; False when the file's `history_requests` table holds another
    log's rows (this node then writes through the sink, as before: `lifecycle`)."""
    migrate_local_history(conn, path)
    with write_transaction(conn, path):
        if not use_activity_as_requests(conn, node, log_id):
            conn.execute("DELETE FROM projection_checkpoints WHERE name = ?", (NAME,))
            return False
        if (
            conn.execute("SELECT 1 FROM projection_checkpoints WHERE name = ?", (NAME,)).fetchone()
            is None
        ):
            _continue_from_sink(conn, node, log_id)
        conn.execute("DELETE FROM history_checkpoints WHERE log_id = ?", (log_id,))
        conn.execute("DELETE FROM projection_checkpoints WHERE name = ?", (SINK_HOLD,))
    return True


def _continue_from_sink(conn: sqlite3.Connection, node: str, log_id: str) -> None:
    row = conn.execute(
        "SELECT log_id, seq, state FROM history_checkpoints WHERE node = ?", (node,)
    ).fetchone()
    if row is None or not row[1]:
        return  # nothing written yet: the projection backfills what the log still has
    if row[0] != log_id:
        log.warning(
            'history_checkpoints in %s names node "%s" written by another event log (log '
            "%s…): this node's decisions are written from the start of its own log, and the "
            "rows that other log wrote under this name stay",
            "this event-log file", node, str(row[0])[:12],
        )  # fmt: skip
        return
    state = json.loads(row[2] or "{}").get("decisions", {})
    write_checkpoint(conn, NAME, int(row[1]), state)
    log.info(
        "the local history continues from the history sink's checkpoint (seq %d) as a projection",
        row[1],
    )


class DecisionProjection:
    """`history_decisions` in the event log's own file, applied by the projection runner."""

    name = NAME

    def __init__(self, path: Path, node: str, clock_ms: Callable[[], int] = wall_ms) -> None:
        self.path = path
        self.node = node
        self._clock_ms = clock_ms
        self.fold: DecisionFold | None = None
        self.seq = 0
        self._written_seq = 0
        self.decisions_written = 0

    def load(self, conn: sqlite3.Connection) -> int:
        """Read the checkpoint (once); returns the last seq applied."""
        if self.fold is None:
            checkpoint = read_checkpoint(conn, NAME)
            self.fold = DecisionFold.from_state(checkpoint.state)
            self.seq = self._written_seq = checkpoint.seq
        return self.seq

    def apply(self, conn: sqlite3.Connection, envelopes: Sequence[Envelope]) -> int:
        """Fold `envelopes` (any already applied are skipped); returns the rows written."""
        self.load(conn)
        assert self.fold is not None
        rows: list[dict[str, Any]] = []
        last = self.seq
        for env in envelopes:
            if env.seq <= last:
                continue
            last = env.seq
            row = self.fold.step(env)
            if row is not None:
                rows.append(row)
        if last == self.seq:
            return 0
        if not rows and last - self._written_seq < IDLE_CHECKPOINT_EVERY:
            self.seq = last  # nothing changed: re-reading these after a restart adds nothing
            return 0
        stamp = {"node": self.node, "recorded_ms": self._clock_ms()}
        try:
            with write_transaction(conn, self.path):
                conn.executemany(
                    _INSERT, [[{**r, **stamp}[c] for c in DECISION_COLUMNS] for r in rows]
                )
                write_checkpoint(conn, NAME, last, self.fold.to_state())
        except BaseException:
            self.fold = None  # rolled back: the next apply re-reads the checkpoint
            raise
        self.seq = self._written_seq = last
        self.decisions_written += len(rows)
        return len(rows)

    def record_position(self, conn: sqlite3.Connection) -> None:
        """Write the checkpoint at the last seq applied if batches since skipped the write (a
        rebuild's quiet tail), so the next start does not read them again."""
        if self.fold is None or self.seq == self._written_seq:
            return
        with write_transaction(conn, self.path):
            write_checkpoint(conn, NAME, self.seq, self.fold.to_state())
        self._written_seq = self.seq


class LocalHistory:
    """The local history as the server runs it: its projection, status and reads."""

    def __init__(self, db: ProjectionDatabase, node: str) -> None:
        self.db = db
        self.node = node
        self.local_node: str | None = node
        """This node's `history_checkpoints` row is derived (see the module's docstring)."""
        self.shown = shown_database(db.path)
        self.projection = DecisionProjection(db.path, node)
        self._runner: ProjectionRunner | None = None
        self._log_seq = 0
        self._pending: deque[tuple[int, int]] = deque()
        """(last seq, first ts_ms) of each committed batch not yet known to be applied."""
        self._backlog: tuple[int, int] | None = None
        """(log seq, wall ms) at start: what the runner has to catch up to, of unknown age."""
        self.requests_written = 0

    # -- following ------------------------------------------------------------------------

    def follow(self, runner: ProjectionRunner) -> None:
        """Report the runner's progress (it applies `projection` with `activity`)."""
        self._runner = runner
        self._log_seq = max(self._log_seq, runner.applied_seq)
        runner.add_row_listener(self._count_rows)

    def _count_rows(self, rows: list[AppliedRow]) -> None:
        self.requests_written += len(rows)

    def on_committed_from(self, log_seq: int) -> None:
        """The log's last seq when the history starts (what the runner catches up to). Until
        the runner has applied it the history is `behind`, its lag counted from now (the age of
        those events is not known without reading them)."""
        self._log_seq = max(self._log_seq, log_seq)
        if log_seq > 0:
            self._backlog = (log_seq, wall_ms())

    def on_committed(self, envelopes: Sequence[Envelope]) -> None:
        """The run loop's listener: remember what is committed, for the lag (never raises)."""
        if not envelopes:
            return
        self._log_seq = max(self._log_seq, envelopes[-1].seq)
        if len(self._pending) < MAX_PENDING:
            self._pending.append((envelopes[-1].seq, envelopes[0].ts_ms))

    # -- what it says ---------------------------------------------------------------------

    def status(self) -> HistoryStatus:
        runner = self._runner
        applied = runner.applied_seq if runner is not None else None
        while self._pending and applied is not None and self._pending[0][0] <= applied:
            self._pending.popleft()
        lag_events = max(0, self._log_seq - (applied or 0))
        if self._backlog is not None and applied is not None and applied >= self._backlog[0]:
            self._backlog = None  # caught up with what the log held at start
        catching_up = self._backlog is not None and applied is not None
        oldest = self._pending[0][1] if self._pending and lag_events else None
        if catching_up:
            assert self._backlog is not None
            oldest = self._backlog[1] if oldest is None else min(oldest, self._backlog[1])
        lag_s = max(0.0, (wall_ms() - oldest) / 1000) if oldest is not None else 0.0
        failure = (
            (runner.failure or runner.table_failures.get(self.projection.name))
            if runner is not None
            else None
        )
        if failure is not None:
            state = "stopped"
        elif applied is None:
            state = "starting"
        elif catching_up:
            state = "behind"
        else:
            state = "current" if lag_s < CURRENT_WITHIN_S else "behind"
        return HistoryStatus(
            enabled=True, node=self.node, database=self.shown, shared=False, state=state,
            written_seq=applied, log_seq=self._log_seq, lag_events=lag_events,
            lag_seconds=round(lag_s, 3), failing_seconds=0.0,
            last_error=str(failure) if failure is not None else None,
            requests_written=self.requests_written,
            decisions_written=self.projection.decisions_written, write_failures=0,
        )  # fmt: skip

    # -- reading (the history API) ----------------------------------------------------------

    async def read(self, statements: Sequence[Statement]) -> list[list[dict[str, Any]]]:
        """Run the statements in one read transaction on the projections' read-only connection."""

        def run(conn: sqlite3.Connection) -> list[list[dict[str, Any]]]:
            conn.execute("BEGIN")
            try:
                return [_mappings(conn.execute(sql, params)) for sql, params in statements]
            finally:
                conn.execute("ROLLBACK")

        async with asyncio.timeout(READ_TIMEOUT_S):
            return await self.db.query(run)


def _mappings(cursor: sqlite3.Cursor) -> list[dict[str, Any]]:
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
