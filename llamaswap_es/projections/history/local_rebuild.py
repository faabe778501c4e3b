"""Folding the local history's `history_decisions` again from the log (`rebuild-projections`).

The local history (`local`) is a projection in the event log's own file, so a rebuild must
leave it as one fold of the log would: otherwise a stale, lost or invented decision row outlives
every rebuild. Its rows carry the node name of the server that wrote them, which an offline
command is not configured with: it is `--node` when given, else the name on this log's newest
row (the server's), else the host name (the server's default). Rows of other nodes (another
event log's, written here through its sink: their `history_checkpoints` row names that log)
are never touched, and a name such a node writes under is refused.

Only a file that follows the local history is rebuilt: its checkpoint row (`history_decisions`
in `projection_checkpoints`) exists. With `historySink: false`, or the history elsewhere, the
server released that row and no longer folds into the table, so the rebuild leaves it as is.

On a log that retention pruned (it starts at `first_seq` > 1) the rows of the pruned events are
kept, and the fold starts from the state those rows record (`DecisionFold.from_rows`): a load or
stop that began before `first_seq` still gets its duration when it ends after it.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from llamaswap_es.config.history import HistorySettingError, check_node_name, default_node_name
from llamaswap_es.errors import LlamaSwapError
from llamaswap_es.events.types import Envelope
from llamaswap_es.projections.database import write_checkpoint, write_transaction
from llamaswap_es.projections.history.fold import DecisionFold
from llamaswap_es.projections.history.local import NAME, DecisionProjection
from llamaswap_es.projections.history.migration_files import migrate_local_history

PAGE = 5_000
"""Envelopes folded per transaction (as the activity rebuild)."""


@dataclass(frozen=True, slots=True)
class DecisionsRebuilt:
    node: str
    node_source: str
    """Where the node name came from: `--node`, its rows, or the host name."""
    rows: int
    kept: int
    """Rows kept because the events they came from were pruned."""


def follows_local_history(conn: sqlite3.Connection) -> bool:
    """Whether the server folds `history_decisions` in this file (its checkpoint row exists)."""
    exists = conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'projection_checkpoints'"
    ).fetchone()
    if exists is None:
        return False
    row = conn.execute("SELECT 1 FROM projection_checkpoints WHERE name = ?", (NAME,)).fetchone()
    return row is not None


class DecisionsRebuild:
    """`start` empties what the log will give again; `following` folds the envelopes as the
    activity rebuild reads them (one pass over the log); `finish` records where it ended."""

    def __init__(self, conn: sqlite3.Connection, path: Path, node: str, source: str) -> None:
        self._conn = conn
        self.node = node
        self.source = source
        self.projection = DecisionProjection(path, node)
        self.kept = 0

    @classmethod
    def start(
        cls, conn: sqlite3.Connection, path: Path, *, first_seq: int, node: str | None
    ) -> DecisionsRebuild:
        """Choose the node, then delete this log's rows the log still has the events of (all of
        them from seq 1), and put the checkpoint just before `first_seq`. Raises LlamaSwapError
        naming the problem when the node name is unusable; nothing is changed then."""
        migrate_local_history(conn, path)
        log_id = str(conn.execute("SELECT id FROM log_identity").fetchone()[0])
        others = _other_logs_nodes(conn, log_id)
        chosen, source = _choose_node(conn, node, others)
        if chosen in others:
            raise LlamaSwapError(
                f'node "{chosen}": its rows in history_decisions of {path} are written by '
                f"another event log (log {others[chosen][:12]}…); give --node this server's "
                "llamaswap-es.nodeName"
            )
        rebuild = cls(conn, path, chosen, source)
        ours, params = _ours(others)
        with write_transaction(conn, path):
            if first_seq <= 1:
                conn.execute(f"DELETE FROM history_decisions WHERE {ours}", params)
                # a checkpoint at 0, not none: a rebuild stopped before its first page (or an
                # empty log) leaves the file still following the local history
                write_checkpoint(conn, NAME, 0, DecisionFold().to_state())
            else:
                conn.execute(
                    f"DELETE FROM history_decisions WHERE {ours} AND seq >= ?",
                    (*params, first_seq),
                )
                kept = conn.execute(
                    "SELECT kind, model_id, instance, ts_ms FROM history_decisions "
                    f"WHERE {ours} ORDER BY seq",
                    params,
                ).fetchall()
                fold = DecisionFold.from_rows(kept)
                write_checkpoint(conn, NAME, first_seq - 1, fold.to_state())
                rebuild.kept = len(kept)
        return rebuild

    def following(self, envelopes: Iterable[Envelope]) -> Iterator[Envelope]:
        """Pass `envelopes` through, folding them into the table a page at a time."""
        page: list[Envelope] = []
        for env in envelopes:
            page.append(env)
            yield env
            if len(page) >= PAGE:
                self.projection.apply(self._conn, page)
                page = []
        self.projection.apply(self._conn, page)

    def finish(self) -> DecisionsRebuilt:
        """Record how far the fold read (a quiet tail writes no row) and say what was done."""
        self.projection.record_position(self._conn)
        written = self.projection.decisions_written
        return DecisionsRebuilt(self.node, self.source, written, self.kept)


def _other_logs_nodes(conn: sqlite3.Connection, log_id: str) -> dict[str, str]:
    """Node → log id of the nodes another event log writes here (through its history sink)."""
    rows = conn.execute(
        "SELECT node, log_id FROM history_checkpoints WHERE log_id != ?", (log_id,)
    ).fetchall()
    return {str(node): str(log) for node, log in rows}


def _ours(others: dict[str, str]) -> tuple[str, tuple[str, ...]]:
    """A WHERE clause (and its parameters) for the rows of this log: those of every node that
    no other event log writes here."""
    if not others:
        return "1 = 1", ()
    return f"node NOT IN ({', '.join('?' * len(others))})", tuple(others)


def _choose_node(
    conn: sqlite3.Connection, given: str | None, others: dict[str, str]
) -> tuple[str, str]:
    if given is not None:
        try:
            name = check_node_name(given)
        except HistorySettingError as exc:
            raise LlamaSwapError(f"--node: {exc}") from None
        if name:
            return name, "--node"
    ours, params = _ours(others)
    newest = conn.execute(
        f"SELECT node FROM history_decisions WHERE {ours} ORDER BY seq DESC LIMIT 1", params
    ).fetchone()
    if newest is not None:
        return str(newest[0]), "the node its rows name"
    return default_node_name(), "the host name: no row names one"
