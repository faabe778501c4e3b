"""The history sink as the server runs it: opened, wired to the run loop, stopped.

`History.start(...)` resolves the node's name, opens the history database named by
`llamaswap-es.historyDatabase` (this node's event-log file by default), and starts a sink that
follows the run loop. With `historySink: false` nothing is written and the local retention hold
is released. The object also answers the fleet API (its database) and `/metrics` (its status).

The sink's modules, and with them SQLAlchemy (~23 MB resident), are imported only when the sink
is on: a node with `historySink: false` never loads them.
"""

from __future__ import annotations

import logging
import sqlite3
from dataclasses import dataclass
from typing import TYPE_CHECKING

from llamaswap_es.config.history import effective_node_name
from llamaswap_es.config.models import LlamaSwapEsSettings
from llamaswap_es.projections.database import (
    ProjectionDatabase,
    write_checkpoint,
    write_transaction,
)
from llamaswap_es.projections.history.status import HistoryStatus, disabled_status
from llamaswap_es.projections.runner import LogSource

if TYPE_CHECKING:
    from llamaswap_es.projections.history.engine import HistoryDatabase
    from llamaswap_es.projections.history.sink import HistorySink
    from llamaswap_es.runtime.loop import RunLoop

log = logging.getLogger("llamaswap_es.projections.history")

RETENTION_HOLD = "history"
"""The history sink's row in the local `projection_checkpoints`: event-log retention never
prunes past it, so whatever the history database has not written yet stays in the log. Written
from the sink's first write on (a new sink does not hold back what retention already wants to
prune: it backfills what the log still has), kept across restarts, removed with the sink off."""


def read_log_id(conn: sqlite3.Connection) -> str:
    return str(conn.execute("SELECT id FROM log_identity").fetchone()[0])


def _release(conn: sqlite3.Connection) -> None:
    conn.execute("DELETE FROM projection_checkpoints WHERE name = ?", (RETENTION_HOLD,))


@dataclass(eq=False)
class History:
    node: str
    db: HistoryDatabase | None = None
    sink: HistorySink | None = None

    @classmethod
    async def start(
        cls,
        settings: LlamaSwapEsSettings,
        *,
        store: LogSource,
        projection_db: ProjectionDatabase,
        loop: RunLoop,
    ) -> History:
        node = effective_node_name(settings.node_name)
        if not settings.history_sink:
            await projection_db.run(_release)
            log.info("history sink off (llamaswap-es.historySink: false); node %s", node)
            return cls(node)
        # imported here, not at the top: only a node whose sink is on pays for SQLAlchemy
        from llamaswap_es.projections.history.engine import open_history_database
        from llamaswap_es.projections.history.sink import HistorySink
        from llamaswap_es.projections.history.writer import HistoryWriter

        db = open_history_database(
            settings.history_database, projection_db.path, application_name=f"llamaswap-es {node}"
        )
        log_id = await projection_db.query(read_log_id)
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
        return cls(node, db, sink)

    def status(self) -> HistoryStatus:
        return self.sink.status() if self.sink is not None else disabled_status(self.node)

    async def stop(self) -> None:
        if self.sink is not None:
            await self.sink.stop()
        if self.db is not None:
            await self.db.close()
