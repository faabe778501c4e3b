"""The local history's request rows are the `activity` table: no second copy in the same file.

When the history database is this node's own event-log file (`historyDatabase: ""`, the
default), `history_requests` would hold every request again, ~0.31 MB per 1,000 requests next
to `activity`'s ~0.29, both folded from the same events by the same fold. Here it is a SQL VIEW
over `activity` with `history_requests`' columns instead: `node` is this node's name, `day` the
UTC date of `ts_ms`, `recorded_ms` the row's `ts_ms` (the projection writes it as the log
commits, so there is no sink lag to show). The history API, the fleet views and docs/sql.md's
queries read it unchanged.

Standard library only (sqlite3, on the projections' write connection): the local history never
loads SQLAlchemy. A file whose `history_requests` table holds rows another event log wrote
(someone pointed another node's `historyDatabase` at this node's event log) keeps its table and
its copies, and this node's requests are then not in it (logged).
"""

from __future__ import annotations

import logging
import sqlite3

from llamaswap_es.projections.history.columns import REQUEST_COLUMNS

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


def use_activity_as_requests(conn: sqlite3.Connection, node: str, log_id: str) -> bool:
    """Make `history_requests` the view over activity (inside the caller's transaction, after
    the history migrations ran); True when it is the view now.

    A table left by an older version is converted once: the peers of its forwarded requests go
    into `activity.peer` (migration 0006 added the column empty), then it is dropped. The view
    is created again at every start, so a changed `nodeName` shows at once (on every row: the
    rows written under an earlier name of this same log, `log_id`, are this node's too). Rows
    of a node whose checkpoint names another log keep the table as it is."""
    row = conn.execute("SELECT type FROM sqlite_master WHERE name = ?", (VIEW,)).fetchone()
    kind = row[0] if row else None
    if kind == "table":
        others = conn.execute(
            f"SELECT count(*) FROM {VIEW} WHERE node NOT IN (SELECT node FROM "
            "history_checkpoints WHERE log_id = ?)",
            (log_id,),
        ).fetchone()[0]
        if others:
            log.warning(
                "history_requests in this event-log file holds %d rows of other nodes: it "
                "stays a table, and this node's requests are only in its activity table",
                others,
            )
            return False
        conn.execute(
            f"UPDATE activity SET peer = (SELECT h.peer FROM {VIEW} AS h "
            "WHERE h.request_id = activity.request_id) "
            f"WHERE request_id IN (SELECT request_id FROM {VIEW} WHERE peer != '')"
        )
        copies = conn.execute(f"SELECT count(*) FROM {VIEW}").fetchone()[0]
        conn.execute(f"DROP TABLE {VIEW}")
        if copies:  # a new file's empty table (the migration creates it) is not news
            log.info("history_requests is now a view over activity (%d copies dropped)", copies)
    elif kind == "view":
        conn.execute(f"DROP VIEW {VIEW}")
    conn.execute(view_sql(node))
    return True
