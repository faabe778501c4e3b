"""Migrations of the history database, on SQLite and PostgreSQL alike.

Why the project's own runner (extended) and not Alembic: the history schema is a handful of
tables written once and then grown by plain additions, which portable SQL expresses on both
databases; the files stay reviewable and runnable from `psql` or `sqlite3`, numbered and checked
exactly as the event log's (`events.schema.available_migrations`: no gaps, no duplicates), so
there is one way to change a schema in this project, not two. Alembic would add a dependency, an
`env.py`, a second version scheme and autogenerate machinery we do not need, and it would not
solve the one fleet-specific problem either: several nodes starting at once against the same
database. That is solved here: on PostgreSQL each migration takes a transaction-scoped advisory
lock (`pg_advisory_xact_lock`) and re-reads the version under it; on SQLite `BEGIN IMMEDIATE`
serialises writers anyway. Each file runs in one transaction together with its row in
`history_schema_migrations` (DDL is transactional on both), so a failure leaves the previous
version. A database newer than this code is refused, untouched (`HistoryVersionError`).

Files live in `migrations/history/NNNN_name.sql`; statements end with `;` at the end of a line.
"""

from __future__ import annotations

import time
from pathlib import Path

from sqlalchemy import inspect, text
from sqlalchemy.ext.asyncio import AsyncConnection

from llamaswap_es.events.schema import Migration
from llamaswap_es.projections.history.engine import HistoryDatabase
from llamaswap_es.projections.history.errors import HistoryError, describe
from llamaswap_es.projections.history.migration_files import (
    SCHEMA_TABLE,
    history_migrations,
    refuse_newer,
    split_statements,
)

ADVISORY_LOCK_KEY = 0x6C6C_7377_6869_7374 & 0x7FFF_FFFF_FFFF_FFFF
"""PostgreSQL advisory-lock key of these migrations (any fixed bigint; 'llswhist')."""


async def _create_version_table(conn: AsyncConnection) -> None:
    """Under the migration lock only: PostgreSQL's `CREATE TABLE IF NOT EXISTS` is not safe
    against a concurrent one (both may try to create the table's type)."""
    await conn.execute(
        text(
            f"CREATE TABLE IF NOT EXISTS {SCHEMA_TABLE} (version INTEGER PRIMARY KEY, "
            "name TEXT NOT NULL, applied_ms BIGINT NOT NULL)"
        )
    )


async def _version(conn: AsyncConnection) -> int:
    exists = await conn.run_sync(lambda sync: inspect(sync).has_table(SCHEMA_TABLE))
    if not exists:
        return 0
    found = (await conn.execute(text(f"SELECT max(version) FROM {SCHEMA_TABLE}"))).scalar()
    return int(found or 0)


async def schema_version(db: HistoryDatabase) -> int:
    """The newest migration recorded in the history database (0 for a new one)."""
    async with db.engine.connect() as conn:
        return await _version(conn)


async def migrate_history(
    db: HistoryDatabase, *, folder: Path | None = None, target: int | None = None
) -> int:
    """Bring the history database up to `target` (default: the newest file); the new version."""
    migrations = history_migrations(folder)
    newest = migrations[-1].version if migrations else 0
    target = newest if target is None else target
    current = await schema_version(db)
    _refuse_newer(db, current, newest)
    for migration in migrations:
        if current < migration.version <= target:
            current = await _apply(db, migration, newest)
    return current


def _refuse_newer(db: HistoryDatabase, current: int, newest: int) -> None:
    refuse_newer(db.shown, current, newest)


async def _apply(db: HistoryDatabase, migration: Migration, newest: int) -> int:
    """Run one file under the migration lock; returns the version the database is at now
    (another node may have applied it meanwhile, which is fine)."""
    try:
        async with db.engine.begin() as conn:
            if db.dialect == "postgresql":
                await conn.execute(
                    text("SELECT pg_advisory_xact_lock(:key)"), {"key": ADVISORY_LOCK_KEY}
                )
            await _create_version_table(conn)
            current = await _version(conn)
            _refuse_newer(db, current, newest)
            if current >= migration.version:
                return current
            for statement in split_statements(migration.sql()):
                await conn.exec_driver_sql(statement)
            await conn.execute(
                text(
                    f"INSERT INTO {SCHEMA_TABLE} (version, name, applied_ms) "
                    "VALUES (:version, :name, :now)"
                ),
                {"version": migration.version, "name": migration.name, "now": _now_ms()},
            )
    except HistoryError:
        raise
    except Exception as exc:
        raise HistoryError(
            f"the history database {db.shown}: migration history/{migration.path.name} failed "
            f"and was rolled back: {describe(exc)}"
        ) from exc
    return migration.version


def _now_ms() -> int:
    return time.time_ns() // 1_000_000
