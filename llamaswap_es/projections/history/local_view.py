"""The local history's request rows are the `activity` table: no second copy in the same file.

When the history database is this node's own event-log file (`historyDatabase: ""`, the
default), `history_requests` would hold every request again, ~0.31 MB per 1,000 requests next
to `activity`'s ~0.29, both folded from the same events by the same fold. Here it is a SQL VIEW
over `activity` with `history_requests`' columns instead: `node` is this node's name, `day` the
UTC date of `ts_ms`, `recorded_ms` the row's `ts_ms` (the projection writes it as the log
commits, so there is no sink lag to show). The history API, the fleet views and docs/sql.md's
queries read it unchanged; the sink writes only decisions and its checkpoint into this file.

A history database elsewhere (an SQLite file of its own, a fleet's PostgreSQL) is written as
before. A file whose `history_requests` table holds rows another event log wrote (someone pointed
another node's `historyDatabase` at this node's event log) keeps its table and its copies.
"""

from __future__ import annotations

import logging

from sqlalchemy import text

from llamaswap_es.projections.history.engine import HistoryDatabase
from llamaswap_es.projections.history.tables import REQUEST_COLUMNS

log = logging.getLogger("llamaswap_es.projections.history")

VIEW = "history_requests"

_DERIVED = {
    "day": "strftime('%Y-%m-%d', ts_ms / 1000, 'unixepoch')",
    "recorded_ms": "ts_ms",
}


def view_sql(node: str) -> str:
    """`CREATE VIEW history_requests AS SELECT …` over activity for node `node`."""
    quoted = "'" + node.replace("'", "''") + "'"
    columns = {"node": quoted, **_DERIVED}
    select = ", ".join(
        f"{columns[name]} AS {name}" if name in columns else name for name in REQUEST_COLUMNS
    )
    return f"CREATE VIEW {VIEW} AS SELECT {select} FROM activity"


async def use_activity_as_requests(db: HistoryDatabase, node: str, log_id: str) -> bool:
    """Make `history_requests` the view over activity where the history database is the event
    log's own file (after the history migrations ran); True when it is the view now.

    A table left by an older version is converted once: the peers of its forwarded requests go
    into `activity.peer` (migration 0006 added the column empty), then it is dropped. The view
    is created again at every start, so a changed `nodeName` shows at once (on every row: the
    rows written under an earlier name of this same log, `log_id`, are this node's too). Rows
    of a node whose checkpoint names another log keep the table as it is."""
    if db.shared or db.dialect != "sqlite":
        return False
    async with db.engine.begin() as conn:
        kind = (
            await conn.execute(
                text("SELECT type FROM sqlite_master WHERE name = :name"), {"name": VIEW}
            )
        ).scalar()
        if kind == "table":
            others = (
                await conn.execute(
                    text(
                        f"SELECT count(*) FROM {VIEW} WHERE node NOT IN (SELECT node FROM "
                        "history_checkpoints WHERE log_id = :log_id)"
                    ),
                    {"log_id": log_id},
                )
            ).scalar()
            if others:
                log.warning(
                    "history_requests in this event-log file holds %d rows of other nodes: it "
                    "stays a table and this node keeps writing its copies there",
                    others,
                )
                return False
            await conn.execute(
                text(
                    f"UPDATE activity SET peer = (SELECT h.peer FROM {VIEW} AS h "
                    "WHERE h.request_id = activity.request_id) "
                    f"WHERE request_id IN (SELECT request_id FROM {VIEW} WHERE peer != '')"
                )
            )
            await conn.execute(text(f"DROP TABLE {VIEW}"))
            log.info("history_requests is now a view over activity (its copies were dropped)")
        elif kind == "view":
            await conn.execute(text(f"DROP VIEW {VIEW}"))
        await conn.exec_driver_sql(view_sql(node))
    return True
