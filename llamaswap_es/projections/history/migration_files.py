"""The history database's migration files, and applying them with the standard library's sqlite3.

`schema.migrate_history` applies the same files through SQLAlchemy to a history database
elsewhere (another SQLite file, a fleet's PostgreSQL). Where the history lives in the node's own
event-log file, `migrate_local_history` applies them on the projections' write connection, so
that node never imports SQLAlchemy. Both record each file in `history_schema_migrations`, one
transaction per file, so either can continue what the other started.
"""

from __future__ import annotations

import re
import sqlite3
import time
from pathlib import Path

from llamaswap_es.events.schema import Migration, available_migrations
from llamaswap_es.projections.history.errors import HistoryVersionError
from llamaswap_es.resources import resource_dir

SCHEMA_TABLE = "history_schema_migrations"

_STATEMENT_END = re.compile(r";[ \t]*$", re.M)


def history_migrations(folder: Path | None = None) -> list[Migration]:
    return available_migrations(
        folder if folder is not None else resource_dir("migrations") / "history"
    )


def split_statements(sql: str) -> list[str]:
    """The statements of a migration file (comment lines dropped; `;` ends a statement at the
    end of a line), for drivers that take one statement per call (sqlite3)."""
    kept = "\n".join(line for line in sql.splitlines() if not line.lstrip().startswith("--"))
    return [part.strip() for part in _STATEMENT_END.split(kept) if part.strip()]


def refuse_newer(shown: str, current: int, newest: int) -> None:
    if current > newest:
        raise HistoryVersionError(
            f"the history database {shown} has schema version {current}, newer than this "
            f"llamaswap-es knows (up to {newest}): upgrade this node to write to it"
        )


def _local_version(conn: sqlite3.Connection) -> int:
    exists = conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (SCHEMA_TABLE,)
    ).fetchone()
    if exists is None:
        return 0
    return int(conn.execute(f"SELECT max(version) FROM {SCHEMA_TABLE}").fetchone()[0] or 0)


def migrate_local_history(conn: sqlite3.Connection, path: Path) -> int:
    """Bring the history tables in the event-log file `path` up to date on `conn` (an
    autocommit connection: the projections' writer); returns the version now."""
    migrations = history_migrations()
    newest = migrations[-1].version if migrations else 0
    current = _local_version(conn)
    refuse_newer(str(path), current, newest)
    for migration in migrations:
        if migration.version <= current:
            continue
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.execute(
                f"CREATE TABLE IF NOT EXISTS {SCHEMA_TABLE} (version INTEGER PRIMARY KEY, "
                "name TEXT NOT NULL, applied_ms BIGINT NOT NULL)"
            )
            current = _local_version(conn)  # another process may have applied it meanwhile
            if current < migration.version:
                for statement in split_statements(migration.sql()):
                    conn.execute(statement)
                conn.execute(
                    f"INSERT INTO {SCHEMA_TABLE} (version, name, applied_ms) VALUES (?, ?, ?)",
                    (migration.version, migration.name, time.time_ns() // 1_000_000),
                )
                current = migration.version
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
    return current
