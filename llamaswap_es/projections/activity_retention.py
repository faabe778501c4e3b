"""`activityRetentionDays`: deleting old rows of the `activity` table.

The activity table is the request history behind `/api/activity` and the UI; it keeps its own
retention, independent of the event log's (ARCHITECTURE §9.8): with both set, the history can be
kept longer than the events it was folded from, or shorter. Rows go by their own time
(`ts_created`, indexed), oldest first, in chunks on the projections' write thread, so the live
projection's writes interleave between chunks. Ids are never reused (AUTOINCREMENT), so an id
that a client remembers never names another request.

The history sink's tables (`history_requests`, `history_decisions`) follow the same setting
where they live in this file (`historyDatabase: ""`, the default), so the file stays bounded.
There `history_requests` is normally a view over `activity` (`history/local_view.py`) and only
`history_decisions` is pruned here; a table left as such (rows another log wrote) is pruned too.
A history database elsewhere (a fleet's PostgreSQL) is left alone: its owner decides.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable
from pathlib import Path

from llamaswap_es.projections.database import ProjectionDatabase, write_transaction
from llamaswap_es.runtime.retention import DAY_MS

log = logging.getLogger("llamaswap_es.projections.retention")

CHUNK = 5_000
"""Rows deleted per transaction."""

HISTORY_TABLES = ("history_requests", "history_decisions")
"""The history sink's tables with a row per request or decision (both indexed on `ts_ms`)."""


def delete_chunk(conn: sqlite3.Connection, path: Path, before_s: int, limit: int) -> int:
    """Delete at most `limit` of the oldest rows created before `before_s` (unix seconds)."""
    with write_transaction(conn, path):
        cursor = conn.execute(
            "DELETE FROM activity WHERE id IN (SELECT id FROM activity WHERE ts_created < ? "
            "ORDER BY ts_created, id LIMIT ?)",
            (before_s, limit),
        )
        return cursor.rowcount


def delete_history_chunk(
    conn: sqlite3.Connection, path: Path, table: str, before_ms: int, limit: int
) -> int:
    """Delete at most `limit` rows of the history table `table` older than `before_ms`."""
    with write_transaction(conn, path):
        cursor = conn.execute(
            f"DELETE FROM {table} WHERE rowid IN (SELECT rowid FROM {table} WHERE ts_ms < ? "
            "LIMIT ?)",
            (before_ms, limit),
        )
        return cursor.rowcount


def _history_chunk_deleter(
    path: Path, table: str, before_ms: int, limit: int
) -> Callable[[sqlite3.Connection], int]:
    """`delete_history_chunk` bound to one table, for the write thread."""
    return lambda conn: delete_history_chunk(conn, path, table, before_ms, limit)


def local_history_tables(conn: sqlite3.Connection) -> list[str]:
    """The history sink's tables that exist in this file (none until the sink first wrote)."""
    marks = ", ".join("?" * len(HISTORY_TABLES))
    found = conn.execute(
        f"SELECT name FROM sqlite_master WHERE type = 'table' AND name IN ({marks})",
        HISTORY_TABLES,
    )
    return sorted(name for (name,) in found)


async def prune_activity(
    db: ProjectionDatabase, *, days: int, now_ms: int, chunk: int = CHUNK
) -> int:
    """Delete the rows older than `days` (0: keep all); returns how many activity rows went.

    The history tables in this file go by the same cutoff (their count is logged)."""
    if days <= 0:
        return 0
    before_ms = now_ms - days * DAY_MS
    before_s = before_ms // 1000
    deleted = 0
    while True:
        n = await db.run(lambda conn: delete_chunk(conn, db.path, before_s, chunk))
        deleted += n
        if n < chunk:
            break
    if deleted:
        log.info("pruned %d activity rows (older than %d days)", deleted, days)
    for table in await db.run(local_history_tables):
        gone = 0
        while True:
            n = await db.run(_history_chunk_deleter(db.path, table, before_ms, chunk))
            gone += n
            if n < chunk:
                break
        if gone:
            log.info("pruned %d %s rows (older than %d days)", gone, table, days)
    return deleted
