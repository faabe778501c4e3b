"""The history as the server runs it: opened, wired to the run loop, stopped.

`History.start(...)` resolves the node's name and opens the history named by
`llamaswap-es.historyDatabase`:

* this node's event-log file (the default, or a `sqlite:///` URL naming that very file): the
  local history, a projection the projection runner applies with `activity` (`local`), on the
  standard library's sqlite3: no SQLAlchemy is imported;
* another SQLite file or a PostgreSQL database: the history sink (`sink`), which follows the run
  loop into that database through SQLAlchemy, and holds event-log retention back through its
  `history` row in `projection_checkpoints`.

With `historySink: false` nothing is written and both retention rows are released. The object
also answers the history API (`reader`) and `/metrics` (`status`).
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from llamaswap_es.config.history import effective_node_name
from llamaswap_es.config.models import LlamaSwapEsSettings
from llamaswap_es.projections.database import (
    ProjectionDatabase,
    write_checkpoint,
    write_transaction,
)
from llamaswap_es.projections.history.local import NAME as LOCAL_CHECKPOINT
from llamaswap_es.projections.history.local import LocalHistory, prepare_local_history
from llamaswap_es.projections.history.queries import HistoryReader
from llamaswap_es.projections.history.status import HistoryStatus, disabled_status
from llamaswap_es.projections.runner import LogSource, ProjectionRunner, TableProjection

if TYPE_CHECKING:
    from llamaswap_es.projections.history.engine import HistoryDatabase
    from llamaswap_es.projections.history.sink import HistorySink
    from llamaswap_es.runtime.loop import RunLoop

log = logging.getLogger("llamaswap_es.projections.history")

RETENTION_HOLD = "history"
"""The history sink's row in the local `projection_checkpoints`: event-log retention never
prunes past it, so whatever the history database has not written yet stays in the log. Written
from the sink's first write on (a new sink does not hold back what retention already wants to
prune: it backfills what the log still has), kept across restarts, removed with the sink off
(and by the local history, whose projection checkpoint holds retention itself)."""


def read_log_id(conn: sqlite3.Connection) -> str:
    return str(conn.execute("SELECT id FROM log_identity").fetchone()[0])


def _release(*names: str) -> Callable[[sqlite3.Connection], None]:
    """Delete these retention rows (a history that no longer holds the log back)."""

    def release(conn: sqlite3.Connection) -> None:
        conn.executemany("DELETE FROM projection_checkpoints WHERE name = ?", [(n,) for n in names])

    return release


def is_own_file(configured: str, event_log: Path) -> bool:
    """Whether `historyDatabase` is the event log's own file (empty, or an SQLite URL naming
    it). Only a set URL is parsed (with SQLAlchemy's URL parser, as the config check did)."""
    if not configured:
        return True
    from llamaswap_es.config.history import parse_history_url

    url = parse_history_url(configured)
    if not url.drivername.startswith("sqlite"):
        return False
    path = Path(url.database or "").expanduser()
    return path.absolute() == event_log.absolute()


@dataclass(eq=False)
class History:
    node: str
    reader: HistoryReader | None = None
    """What the history API reads through (None with the sink off)."""
    local: LocalHistory | None = None
    db: HistoryDatabase | None = None
    sink: HistorySink | None = None

    @property
    def tables(self) -> Sequence[TableProjection]:
        """The table projections the projection runner applies for the local history."""
        return [self.local.projection] if self.local is not None else []

    @classmethod
    async def start(
        cls,
        settings: LlamaSwapEsSettings,
        *,
        store: LogSource,
        projection_db: ProjectionDatabase,
        loop: RunLoop,
    ) -> History:
        """Open the history; for the local one, call `follow(runner)` once the runner exists."""
        node = effective_node_name(settings.node_name)
        if not settings.history_sink:
            await projection_db.run(_release(RETENTION_HOLD, LOCAL_CHECKPOINT))
            log.info("history sink off (llamaswap-es.historySink: false); node %s", node)
            return cls(node)
        log_id = await projection_db.query(read_log_id)
        path = projection_db.path
        if is_own_file(settings.history_database, path):

            def prepare(conn: sqlite3.Connection) -> bool:
                return prepare_local_history(conn, path, node, log_id)

            if await projection_db.run(prepare):
                local = LocalHistory(projection_db, node)
                local.on_committed_from(await store.last_seq())
                loop.add_listener(local.on_committed)
                log.info("history: node %s, in its own event-log file %s", node, path)
                return cls(node, reader=local, local=local)
        else:
            await projection_db.run(_release(LOCAL_CHECKPOINT))
        return await cls._start_sink(settings, node, log_id, store, projection_db, loop)

    @classmethod
    async def _start_sink(
        cls,
        settings: LlamaSwapEsSettings,
        node: str,
        log_id: str,
        store: LogSource,
        projection_db: ProjectionDatabase,
        loop: RunLoop,
    ) -> History:
        # imported here, not at the top: only a node writing elsewhere pays for SQLAlchemy
        from llamaswap_es.projections.history.engine import EngineReader, open_history_database
        from llamaswap_es.projections.history.sink import HistorySink
        from llamaswap_es.projections.history.writer import HistoryWriter

        db = open_history_database(
            settings.history_database, projection_db.path, application_name=f"llamaswap-es {node}"
        )
        path = projection_db.path

        async def hold(seq: int) -> None:
            def write(conn: sqlite3.Connection) -> None:
                with write_transaction(conn, path):
                    write_checkpoint(conn, RETENTION_HOLD, seq, {})

            await projection_db.run(write)

        writer = HistoryWriter(db, node=node, log_id=log_id)
        sink = HistorySink(writer, store, hold_retention=hold)
        loop.add_listener(sink.on_committed)
        await sink.start()
        log.info("history sink: node %s writes to %s", node, db.shown)
        return cls(node, reader=EngineReader(db), db=db, sink=sink)

    def follow(self, runner: ProjectionRunner) -> None:
        """The local history reports the runner's progress (it applies `tables`)."""
        if self.local is not None:
            self.local.follow(runner)

    def status(self) -> HistoryStatus:
        if self.sink is not None:
            return self.sink.status()
        if self.local is not None:
            return self.local.status()
        return disabled_status(self.node)

    async def stop(self) -> None:
        if self.sink is not None:
            await self.sink.stop()
        if self.db is not None:
            await self.db.close()
