"""Schema migrations: from nothing, from every earlier version, refusing a newer database."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import pytest

from llamaswap_es.events.errors import StoreError, StoreVersionError
from llamaswap_es.events.schema import (
    available_migrations,
    code_schema_version,
    migrate,
    schema_version,
)
from llamaswap_es.events.store import EventStore
from llamaswap_es.events.types import ProcessSpawned, RequestFinished
from llamaswap_es.resources import resource_dir
from tests.fixtures.event_store import open_booted_store

FIXTURES = Path(__file__).parent / "fixtures"


def _tables(path: Path) -> set[str]:
    conn = sqlite3.connect(path)
    try:
        return {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    finally:
        conn.close()


def test_migration_files_are_numbered_without_gaps() -> None:
    migrations = available_migrations()
    assert [m.version for m in migrations] == list(range(1, len(migrations) + 1))
    assert [m.name for m in migrations[:2]] == ["events", "snapshots"]
    assert resource_dir("migrations") == migrations[0].path.parent


async def test_a_new_database_gets_every_migration(db_path: Path) -> None:
    store = await open_booted_store(db_path)
    await store.close()
    assert {"events", "snapshots", "schema_migrations"} <= _tables(db_path)
    conn = sqlite3.connect(db_path)
    assert schema_version(conn) == code_schema_version()
    conn.close()


@pytest.mark.parametrize("start", range(code_schema_version() + 1))
def test_every_earlier_version_upgrades_to_the_newest(db_path: Path, start: int) -> None:
    conn = sqlite3.connect(db_path, isolation_level=None)
    assert migrate(conn, db_path, target=start) == start
    assert migrate(conn, db_path) == code_schema_version()
    assert migrate(conn, db_path) == code_schema_version()  # idempotent
    conn.close()


async def test_a_version_1_database_from_the_fixture_is_upgraded_losslessly(
    db_path: Path,
) -> None:
    conn = sqlite3.connect(db_path)
    conn.executescript((FIXTURES / "schema_v1.sql").read_text())
    before = conn.execute("SELECT * FROM events ORDER BY seq").fetchall()
    conn.close()
    assert "snapshots" not in _tables(db_path)

    store = await open_booted_store(db_path)
    try:
        old = await store.read(to_seq=7, validate=True)
        assert await store.last_seq() == 8  # our ServerStarted follows the old rows
        await store.save_snapshot(reducer_version="r", seq=7, digest="d", state=b"s")
    finally:
        await store.close()
    spawned = [e.body for e in old if isinstance(e.body, ProcessSpawned)]
    assert spawned[0].argv == ("llama-server", "-m", "x.gguf")
    finished = [e.body for e in old if isinstance(e.body, RequestFinished)]
    assert finished[0].metrics == {"tokens_out": 42}
    conn = sqlite3.connect(db_path)
    assert conn.execute("SELECT * FROM events WHERE seq <= 7 ORDER BY seq").fetchall() == before
    conn.close()


async def test_a_database_newer_than_the_code_is_refused_unchanged(db_path: Path) -> None:
    store = await open_booted_store(db_path)
    await store.close()
    conn = sqlite3.connect(db_path)
    conn.execute("INSERT INTO schema_migrations VALUES (99, 'from_the_future', 0)")
    conn.commit()
    conn.close()
    before = db_path.read_bytes()
    with pytest.raises(StoreVersionError, match=str(db_path)) as info:
        await EventStore.open(db_path)
    assert "schema version 99" in str(info.value)
    assert f"up to version {code_schema_version()}" in str(info.value)
    assert db_path.read_bytes() == before


def test_a_failing_migration_rolls_back_to_the_previous_version(
    db_path: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "migrations"
    folder.mkdir()
    for migration in available_migrations()[:1]:
        shutil.copy(migration.path, folder / migration.path.name)
    (folder / "0002_broken.sql").write_text(
        "CREATE TABLE half_done (x);\nINSERT INTO no_such_table VALUES (1);\n"
    )
    conn = sqlite3.connect(db_path, isolation_level=None)
    with pytest.raises(StoreError, match=r"0002_broken\.sql failed") as info:
        migrate(conn, db_path, folder=folder)
    assert str(db_path) in str(info.value)
    assert schema_version(conn) == 1
    assert "half_done" not in _tables(db_path)
    conn.close()


def test_a_gap_in_the_migration_files_is_refused(tmp_path: Path) -> None:
    (tmp_path / "0001_a.sql").write_text("CREATE TABLE a (x);")
    (tmp_path / "0003_c.sql").write_text("CREATE TABLE c (x);")
    with pytest.raises(StoreError, match="without gaps"):
        available_migrations(tmp_path)
