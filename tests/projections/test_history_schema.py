"""The history database's migrations, on SQLite and PostgreSQL alike."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import pytest
from sqlalchemy import inspect, text

from llamaswap_es.projections.history import tables
from llamaswap_es.projections.history.engine import HistoryDatabase, open_history_database
from llamaswap_es.projections.history.errors import HistoryError, HistoryVersionError
from llamaswap_es.projections.history.schema import (
    SCHEMA_TABLE,
    history_migrations,
    migrate_history,
    schema_version,
    split_statements,
)


def _open(url: str, tmp_path: Path) -> HistoryDatabase:
    return open_history_database(url, tmp_path / "events.db")


async def _columns(db: HistoryDatabase) -> dict[str, list[str]]:
    async with db.engine.connect() as conn:
        return await conn.run_sync(
            lambda sync: {
                name: [c["name"] for c in inspect(sync).get_columns(name)]
                for name in tables.metadata.tables
            }
        )


async def test_a_new_database_gets_every_table_as_the_code_describes_it(
    history_url: str, tmp_path: Path
) -> None:
    db = _open(history_url, tmp_path)
    try:
        newest = history_migrations()[-1].version
        assert await migrate_history(db) == newest
        assert await migrate_history(db) == newest  # idempotent
        found = await _columns(db)
        assert found == {
            name: [c.name for c in table.columns] for name, table in tables.metadata.tables.items()
        }
        async with db.engine.connect() as conn:
            keys = await conn.run_sync(
                lambda sync: inspect(sync).get_pk_constraint("history_requests")
            )
        assert keys["constrained_columns"] == ["node", "request_id"]
    finally:
        await db.close()


async def test_a_newer_database_is_refused_untouched_without_its_password(
    pg_url: str, tmp_path: Path
) -> None:
    with_password = pg_url.replace("fleet@", "fleet:hunter2@")  # trust auth ignores it
    db = _open(with_password, tmp_path)
    try:
        await migrate_history(db)
        async with db.engine.begin() as conn:
            await conn.execute(
                text(f"INSERT INTO {SCHEMA_TABLE} (version, name, applied_ms) VALUES (99, 'x', 0)")
            )
        with pytest.raises(HistoryVersionError) as caught:
            await migrate_history(db)
        message = str(caught.value)
        assert "schema version 99" in message and "upgrade this node" in message
        assert "hunter2" not in message and "fleet:***@" in message
        assert await schema_version(db) == 99
    finally:
        await db.close()


async def test_nodes_starting_together_migrate_once(pg_url: str, tmp_path: Path) -> None:
    dbs = [_open(pg_url, tmp_path) for _ in range(4)]
    try:
        versions = await asyncio.gather(*(migrate_history(db) for db in dbs))
        assert set(versions) == {history_migrations()[-1].version}
        async with dbs[0].engine.connect() as conn:
            rows = (await conn.execute(text(f"SELECT version FROM {SCHEMA_TABLE}"))).all()
        assert [r[0] for r in rows] == [m.version for m in history_migrations()]
    finally:
        for db in dbs:
            await db.close()


async def test_a_failing_migration_leaves_the_previous_version(
    history_url: str, tmp_path: Path
) -> None:
    folder = tmp_path / "migrations"
    folder.mkdir()
    (folder / "0001_first.sql").write_text("CREATE TABLE one (x INTEGER);\n")
    (folder / "0002_broken.sql").write_text(
        "CREATE TABLE two (x INTEGER);\nCREATE TABLE one (x INTEGER);\n"
    )
    db = _open(history_url, tmp_path)
    try:
        failed = re.escape("0002_broken.sql failed and was rolled back")
        with pytest.raises(HistoryError, match=failed):
            await migrate_history(db, folder=folder)
        assert await schema_version(db) == 1
        async with db.engine.connect() as conn:
            names = await conn.run_sync(lambda sync: inspect(sync).get_table_names())
        assert "one" in names and "two" not in names
    finally:
        await db.close()


def test_statements_are_split_at_line_ends_and_comments_dropped() -> None:
    sql = "-- a comment; with a semicolon\nCREATE TABLE a (x TEXT DEFAULT ';');\n\nSELECT 1 ;\n"
    assert split_statements(sql) == ["CREATE TABLE a (x TEXT DEFAULT ';')", "SELECT 1"]
