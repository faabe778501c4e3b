"""Opening the history database: one async SQLAlchemy engine for SQLite and PostgreSQL alike.

The sink and the fleet API talk to the database through SQLAlchemy Core on an `AsyncEngine`, so
one code path serves both: `sqlite+aiosqlite` (aiosqlite runs SQLite on its own thread, so a
write never blocks the event loop) for the default, this node's own event-log file, or an SQLite
file of one's own; `postgresql+psycopg` (psycopg 3's native asyncio) for a fleet's shared
database. Every connection attempt and statement is bounded in time (`DB_TIMEOUT_S`).

SQLite's Python driver does not begin a transaction before DDL and begins one lazily before DML;
the engine here turns that off and issues `BEGIN IMMEDIATE` itself (SQLAlchemy's documented
recipe), so a migration is one real transaction and a write takes the write lock up front
(a connection that only reads begins a deferred transaction instead: `READ_ONLY`).
"""

from __future__ import annotations

import asyncio
import importlib.util
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import event, text
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from llamaswap_es.config.history import parse_history_url, shown_url
from llamaswap_es.projections.history.errors import HistoryDriverMissingError
from llamaswap_es.projections.history.queries import Statement

DB_TIMEOUT_S = 10.0
"""Longest wait for any one history-database operation (connect, write, query)."""
CONNECT_TIMEOUT_S = 5
SQLITE_BUSY_TIMEOUT_S = 5.0
"""As everywhere on the event-log file: the log's writer and this engine take turns."""
READ_ONLY = "history_read_only"
"""Execution option of a connection that only reads: on SQLite it begins a deferred
transaction, which does not take the write lock (`conn.execution_options(**{READ_ONLY: True})`)."""


@dataclass(frozen=True, slots=True)
class HistoryDatabase:
    """An engine on the history database, and how to speak of it."""

    engine: AsyncEngine
    shown: str
    """The URL with its password hidden: what logs, errors and the API show."""
    shared: bool
    """False when it is this node's own event-log file (the default)."""

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    async def close(self) -> None:
        await self.engine.dispose()


@dataclass(frozen=True, slots=True)
class EngineReader:
    """The history API's reads on this engine (`queries.HistoryReader`)."""

    db: HistoryDatabase
    local_node: str | None = None
    """None: the database holds every node's checkpoint row, this node's included."""

    @property
    def shown(self) -> str:
        return self.db.shown

    async def read(self, statements: Sequence[Statement]) -> list[list[dict[str, Any]]]:
        """Run the statements in one read-only transaction."""
        async with asyncio.timeout(DB_TIMEOUT_S), self.db.engine.connect() as conn:
            reading = await conn.execution_options(**{READ_ONLY: True})
            results = []
            for sql, params in statements:
                result = await reading.execute(text(sql), params)
                results.append([dict(row) for row in result.mappings().all()])
            return results


def history_url(configured: str, event_log: Path) -> tuple[URL, bool]:
    """The URL to open and whether it is shared (anything but the event log's own file)."""
    if not configured:
        return URL.create("sqlite+aiosqlite", database=str(event_log.absolute())), False
    url = parse_history_url(configured)
    if url.drivername.startswith("sqlite"):
        path = Path(url.database or "").expanduser()
        shared = path.absolute() != event_log.absolute()
        return url.set(database=str(path.absolute())), shared
    return url, True


def require_driver(configured: str) -> None:
    """Refuse, before anything starts, a PostgreSQL history database without psycopg (a retry
    cannot fix that; the message says what to install)."""
    if not configured:
        return
    url = parse_history_url(configured)
    if url.drivername.startswith("postgresql") and importlib.util.find_spec("psycopg") is None:
        raise HistoryDriverMissingError(
            f"llamaswap-es.historyDatabase is a PostgreSQL database ({shown_url(url)}), but the "
            "psycopg package is not installed: pip install 'llamaswap-es[postgres]'"
        )


def open_history_database(
    configured: str, event_log: Path, *, application_name: str = "llamaswap-es"
) -> HistoryDatabase:
    """An engine for `llamaswap-es.historyDatabase` (connects lazily, on first use)."""
    require_driver(configured)
    url, shared = history_url(configured, event_log)
    connect_args: dict[str, Any]
    networked = url.drivername.startswith("postgresql")
    if networked:
        connect_args = {"connect_timeout": CONNECT_TIMEOUT_S, "application_name": application_name}
    else:
        connect_args = {"timeout": SQLITE_BUSY_TIMEOUT_S}
    # A pooled connection to a server can die with the network: it is pinged before use. One to
    # a local SQLite file cannot, and the ping cost a round trip to aiosqlite's thread (a GIL
    # hand-off on the event loop) in every one of the sink's transactions.
    engine = create_async_engine(
        url, pool_pre_ping=networked, pool_size=2, max_overflow=2, pool_timeout=DB_TIMEOUT_S,
        connect_args=connect_args,
    )  # fmt: skip
    if engine.dialect.name == "sqlite":
        _sqlite_transactions(engine, separate_file=shared)
    return HistoryDatabase(engine, shown_url(url), shared)


def _sqlite_transactions(engine: AsyncEngine, *, separate_file: bool) -> None:
    @event.listens_for(engine.sync_engine, "connect")
    def _connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # we begin transactions ourselves
        cursor = dbapi_connection.cursor()
        if separate_file:  # the event log's file is WAL already (its writer sets it)
            cursor.execute("PRAGMA journal_mode = WAL")
        cursor.execute("PRAGMA synchronous = NORMAL")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _begin(conn: Any) -> None:
        reading = conn.get_execution_options().get(READ_ONLY, False)
        conn.exec_driver_sql("BEGIN" if reading else "BEGIN IMMEDIATE")
