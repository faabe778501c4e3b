"""The history sink's SQL: reading a node's checkpoint, writing rows and checkpoint together.

Every write is one transaction: the request rows, the decision rows and the node's checkpoint.
Rows are inserted with `ON CONFLICT DO NOTHING` on their keys ((node, request_id) and (node,
seq)), and the checkpoint moves only if it is still where this writer last saw it (a
compare-and-set on `seq`). Together that makes the history exactly-once: a batch is either all
in with its checkpoint or not at all, a commit whose answer was lost is found out by reading the
checkpoint again, and a row written twice for any other reason is simply not added again.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Table, select, update
from sqlalchemy.sql.dml import Insert

from llamaswap_es.projections.history import tables
from llamaswap_es.projections.history.engine import DB_TIMEOUT_S, HistoryDatabase
from llamaswap_es.projections.history.errors import (
    CheckpointMovedError,
    NodeConflictError,
    describe,
)
from llamaswap_es.projections.history.schema import migrate_history

log = logging.getLogger("llamaswap_es.projections.history")

Row = dict[str, Any]


def wall_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass(frozen=True, slots=True)
class NodeCheckpoint:
    """Where a node's history stands in the database: its last seq there and the fold's state."""

    seq: int
    state: dict[str, Any]


def insert_ignoring_duplicates(table: Table, dialect: str) -> Insert:
    """`INSERT … ON CONFLICT DO NOTHING` (the same SQL on SQLite and PostgreSQL).

    The dialect's module is imported here, for the one database in use: importing both at start
    held SQLAlchemy's PostgreSQL dialect (~2 MB resident) in every SQLite-only server."""
    name = "postgresql" if dialect == "postgresql" else "sqlite"
    module = importlib.import_module(f"sqlalchemy.dialects.{name}")
    insert: Insert = module.insert(table).on_conflict_do_nothing()
    return insert


class HistoryWriter:
    """One node's writes to the history database (used by the sink's task only)."""

    def __init__(
        self,
        db: HistoryDatabase,
        *,
        node: str,
        log_id: str,
        clock_ms: Callable[[], int] = wall_ms,
    ) -> None:
        self.db = db
        self.node = node
        self.log_id = log_id
        self._clock_ms = clock_ms
        self._migrated = False
        self._insert_requests = insert_ignoring_duplicates(tables.requests, db.dialect)
        self._insert_decisions = insert_ignoring_duplicates(tables.decisions, db.dialect)

    async def checkpoint(self) -> NodeCheckpoint:
        """The node's checkpoint (created at seq 0 for a new node), after migrating the database
        once. Raises NodeConflictError when another event log writes under this node name."""
        async with asyncio.timeout(DB_TIMEOUT_S * 3):  # a migration may take a few statements
            if not self._migrated:
                await migrate_history(self.db)
                self._migrated = True
        async with asyncio.timeout(DB_TIMEOUT_S), self.db.engine.begin() as conn:
            await conn.execute(
                insert_ignoring_duplicates(tables.checkpoints, self.db.dialect).values(
                    node=self.node,
                    log_id=self.log_id,
                    seq=0,
                    state="{}",
                    updated_ms=self._clock_ms(),
                )
            )
            row = (
                await conn.execute(
                    select(
                        tables.checkpoints.c.log_id,
                        tables.checkpoints.c.seq,
                        tables.checkpoints.c.state,
                    ).where(tables.checkpoints.c.node == self.node)
                )
            ).one()
        if row.log_id != self.log_id:
            raise NodeConflictError(
                f'the history database {self.db.shown} already holds node "{self.node}" written '
                f"by another event log (log {row.log_id[:12]}…, this node's is "
                f"{self.log_id[:12]}…): give this node its own llamaswap-es.nodeName, or, if its "
                "log was replaced on purpose, delete the old node's history (docs/fleet.md)"
            )
        return NodeCheckpoint(int(row.seq), json.loads(row.state or "{}"))

    async def write(
        self,
        requests: Sequence[Row],
        decisions: Sequence[Row],
        *,
        expected_seq: int,
        seq: int,
        state: dict[str, Any],
    ) -> None:
        """Rows and the checkpoint (moved from `expected_seq` to `seq`) in one transaction."""
        now = self._clock_ms()
        stamp = {"node": self.node, "recorded_ms": now}
        async with asyncio.timeout(DB_TIMEOUT_S), self.db.engine.begin() as conn:
            if requests:
                await conn.execute(self._insert_requests, [{**r, **stamp} for r in requests])
            if decisions:
                await conn.execute(self._insert_decisions, [{**d, **stamp} for d in decisions])
            moved = await conn.execute(
                update(tables.checkpoints)
                .where(
                    tables.checkpoints.c.node == self.node,
                    tables.checkpoints.c.log_id == self.log_id,
                    tables.checkpoints.c.seq == expected_seq,
                )
                .values(
                    seq=seq,
                    state=json.dumps(state, separators=(",", ":"), sort_keys=True),
                    updated_ms=now,
                )
            )
            if moved.rowcount != 1:
                raise CheckpointMovedError(
                    f'the history database {self.db.shown}: node "{self.node}"\'s checkpoint is '
                    f"no longer at seq {expected_seq}; reading it again"
                )

    async def reset(self) -> None:
        """Drop every pooled connection (after a failure: the next use connects afresh)."""
        try:
            await self.db.engine.dispose()
        except Exception as exc:  # a broken connection may fail to close; it is gone anyway
            log.debug("closing the history database's connections: %s", describe(exc))
