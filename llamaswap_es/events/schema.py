"""The migration runner: numbered plain-SQL files applied in order, recorded in the database.

Why plain `sqlite3` and not SQLAlchemy/Alembic: the migrations are SQL files (reviewable, usable
from the `sqlite3` shell), the store already holds a raw connection under its single-server lock,
and SQLite's limited ALTER makes Alembic copy whole tables (EVENT-LOG.md §2.7). The runner knows
nothing about what the files contain, so later issues add a file and nothing else.

Files are `NNNN_name.sql` in `resource_dir("migrations")`; versions start at 1 and have no gaps.
Each file runs in one `BEGIN IMMEDIATE` transaction together with its row in `schema_migrations`,
so a failure leaves the database at the previous version. A database whose recorded version is
newer than the newest file is refused (`StoreVersionError`) without being touched.
"""

from __future__ import annotations

import re
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

from llamaswap_es.events.errors import StoreError, StoreVersionError, translate_sqlite_error
from llamaswap_es.resources import resource_dir

_FILE_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")

SCHEMA_TABLE = "schema_migrations"


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    path: Path

    def sql(self) -> str:
        return self.path.read_text(encoding="utf-8")


def available_migrations(folder: Path | None = None) -> list[Migration]:
    """The migration files in version order; refuses gaps and duplicates (a packaging bug)."""
    folder = folder if folder is not None else resource_dir("migrations")
    found: dict[int, Migration] = {}
    for entry in sorted(folder.iterdir()):
        match = _FILE_NAME.match(entry.name)
        if not match:
            continue
        version = int(match.group(1))
        if version in found:
            raise StoreError(f"{folder}: two migrations have version {version}")
        found[version] = Migration(version, match.group(2), entry)
    versions = sorted(found)
    if versions != list(range(1, len(versions) + 1)):
        raise StoreError(
            f"{folder}: migration versions must run 1, 2, 3 … without gaps: {versions}"
        )
    return [found[v] for v in versions]


def code_schema_version(folder: Path | None = None) -> int:
    migrations = available_migrations(folder)
    return migrations[-1].version if migrations else 0


def schema_version(conn: sqlite3.Connection) -> int:
    """The newest migration recorded in the database (0 for a new or foreign database)."""
    has_table = conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (SCHEMA_TABLE,)
    ).fetchone()
    if not has_table:
        return 0
    row = conn.execute(f"SELECT max(version) FROM {SCHEMA_TABLE}").fetchone()
    return int(row[0] or 0)


def migrate(
    conn: sqlite3.Connection,
    db_path: Path,
    *,
    folder: Path | None = None,
    target: int | None = None,
) -> int:
    """Bring the database up to `target` (default: the newest file); returns the new version.

    `conn` must be in autocommit mode (`isolation_level=None`): the runner manages its own
    transactions. Errors name `db_path`.
    """
    migrations = available_migrations(folder)
    newest = migrations[-1].version if migrations else 0
    target = newest if target is None else target
    try:
        current = schema_version(conn)
        if current > newest:
            raise StoreVersionError(db_path, current, newest)
    except sqlite3.Error as exc:
        raise translate_sqlite_error(exc, db_path) from exc
    for migration in migrations:
        if current < migration.version <= target:
            try:
                _apply(conn, migration)
            except sqlite3.Error as exc:
                error = translate_sqlite_error(exc, db_path)
                if type(error) is StoreError:  # nothing more specific: say which file failed
                    error = StoreError(
                        f"{db_path}: migration {migration.path.name} failed and was rolled "
                        f"back (the database stays at version {current}): {exc}"
                    )
                raise error from exc
            current = migration.version
    return current


def _apply(conn: sqlite3.Connection, migration: Migration) -> None:
    # executescript() commits any open transaction first and then runs the text as-is, so the
    # BEGIN/COMMIT live in the text; on failure the transaction is still open and rolled back.
    script = (
        "BEGIN IMMEDIATE;\n"
        f"CREATE TABLE IF NOT EXISTS {SCHEMA_TABLE} ("
        " version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_ms INTEGER NOT NULL);\n"
        f"{migration.sql()}\n;\n"
        f"INSERT INTO {SCHEMA_TABLE} (version, name, applied_ms) VALUES "
        f"({migration.version}, '{migration.name}', {int(time.time() * 1000)});\n"
        "COMMIT;\n"
    )
    try:
        conn.executescript(script)
    except sqlite3.Error:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
