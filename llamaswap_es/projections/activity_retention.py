"""`activityRetentionDays`: deleting old rows of the `activity` table.

The activity table is the request history behind `/api/activity` and the UI; it keeps its own
retention, independent of the event log's (ARCHITECTURE §9.8): with both set, the history can be
kept longer than the events it was folded from, or shorter. Rows go by their own time
(`ts_created`, indexed), oldest first, in chunks on the projections' write thread, so the live
projection's writes interleave between chunks. Ids are never reused (AUTOINCREMENT), so an id
that a client remembers never names another request.
"""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path

from llamaswap_es.projections.database import ProjectionDatabase, write_transaction
from llamaswap_es.runtime.retention import DAY_MS

log = logging.getLogger("llamaswap_es.projections.retention")

CHUNK = 5_000
"""Rows deleted per transaction."""


def delete_chunk(conn: sqlite3.Connection, path: Path, before_s: int, limit: int) -> int:
    """Delete at most `limit` of the oldest rows created before `before_s` (unix seconds)."""
    with write_transaction(conn, path):
        cursor = conn.execute(
            "DELETE FROM activity WHERE id IN (SELECT id FROM activity WHERE ts_created < ? "
            "ORDER BY ts_created, id LIMIT ?)",
            (before_s, limit),
        )
        return cursor.rowcount


async def prune_activity(
    db: ProjectionDatabase, *, days: int, now_ms: int, chunk: int = CHUNK
) -> int:
    """Delete the rows older than `days` (0: keep all); returns how many went."""
    if days <= 0:
        return 0
    before_s = (now_ms - days * DAY_MS) // 1000
    deleted = 0
    while True:
        n = await db.run(lambda conn: delete_chunk(conn, db.path, before_s, chunk))
        deleted += n
        if n < chunk:
            break
    if deleted:
        log.info("pruned %d activity rows (older than %d days)", deleted, days)
    return deleted
