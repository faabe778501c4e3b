"""`llamaswap-es rebuild-projections --db PATH`: fold the log again into its table projections.

Runs offline: it takes the server's lock on the database (and refuses, naming the pid, while a
server is using it), brings the schema up to date, rebuilds the `activity` table from seq 1 and
says what it did. The local history is rebuilt in the same pass: `history_requests` is a view
over `activity`, and `history_decisions` (when this file follows it) is folded again under the
node name its rows carry, or `--node` (`history.local_rebuild`). Captures are not derived from
the log (bodies never enter it), so they stay. On a log that retention pruned (its first seq is
above 1), the rows the remaining events cannot recompute are kept and only the rest is folded
again. In-memory projections (metrics, queue view) are rebuilt by every server start.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from llamaswap_es.errors import LlamaSwapError
from llamaswap_es.events.reader import DatabaseReader
from llamaswap_es.events.writer import LogWriter
from llamaswap_es.paths import default_db_path
from llamaswap_es.projections.activity import ActivityProjection
from llamaswap_es.projections.database import connect_writer
from llamaswap_es.projections.history.local_rebuild import (
    DecisionsRebuild,
    DecisionsRebuilt,
    follows_local_history,
)


@dataclass(frozen=True, slots=True)
class RebuildReport:
    events: int
    last_seq: int
    activity_rows: int
    seconds: float
    first_seq: int = 1
    kept_rows: int = 0
    """Activity rows kept because the events they came from were pruned."""
    decisions: DecisionsRebuilt | None = None
    """The local history's decisions; None where this file does not follow them."""


def rebuild_projections(db_path: str | Path, *, node: str | None = None) -> RebuildReport:
    """Rebuild the table projections of the log at `db_path` (no server may be running);
    `node` names the local history's decision rows (default: the name they carry)."""
    path = Path(db_path).expanduser().absolute()
    if not path.is_file():
        raise LlamaSwapError(f"{path}: no event log here (the file does not exist)")
    started = time.monotonic()
    writer = LogWriter.open(path)  # the server's lock, and the migrations
    try:
        conn = connect_writer(path)
        try:
            with DatabaseReader(path) as reader:
                last_seq, first_seq = reader.last_seq(), max(1, reader.first_seq())
                envelopes = reader.iter_envelopes(from_seq=first_seq)
                decisions = None
                if follows_local_history(conn):
                    decisions = DecisionsRebuild.start(conn, path, first_seq=first_seq, node=node)
                    envelopes = decisions.following(envelopes)
                counted = _Counting(envelopes)
                activity = ActivityProjection(path)
                rows = activity.rebuild(conn, counted, first_seq=first_seq)
                total = int(conn.execute("SELECT count(*) FROM activity").fetchone()[0])
                decided = decisions.finish() if decisions is not None else None
        finally:
            conn.close()
    finally:
        writer.close()
    seconds = time.monotonic() - started
    return RebuildReport(
        counted.count, last_seq, rows, seconds, first_seq, total - rows, decided
    )  # fmt: skip


class _Counting:
    def __init__(self, source):  # type: ignore[no-untyped-def]
        self._source = source
        self.count = 0

    def __iter__(self):  # type: ignore[no-untyped-def]
        for item in self._source:
            self.count += 1
            yield item


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--db", "-db", default=default_db_path(), metavar="PATH",
        help="the event log (default: the server's, %(default)s)",
    )  # fmt: skip
    parser.add_argument(
        "--node", "-node", default=None, metavar="NAME",
        help="the node name the local history's decision rows carry (default: the name on "
        "this log's newest row, else the host name); give the server's llamaswap-es.nodeName "
        "after changing it",
    )  # fmt: skip


def run_command(args: argparse.Namespace) -> int:
    """Rebuild and print what was done; 1 with the reason when it cannot."""
    try:
        report = rebuild_projections(args.db, node=args.node)
    except LlamaSwapError as exc:
        print(f"llamaswap-es rebuild-projections: {exc}", file=sys.stderr)
        return 1
    kept = ""
    if report.first_seq > 1:
        kept = (
            f" (+{report.kept_rows} kept: the log starts at seq {report.first_seq}, the events "
            "of older rows were pruned)"
        )
    print(
        f"rebuilt projections of {args.db} from {report.events} events "
        f"(seq {report.first_seq}..{report.last_seq}) in {report.seconds:.2f}s\n"
        f"  activity: {report.activity_rows} rows{kept}\n"
        f"  {_decisions_line(report)}\n"
        "  captures: kept (not derived from the log)\n"
        "  metrics, queue view, model status: in memory, rebuilt at every server start"
    )
    return 0


def _decisions_line(report: RebuildReport) -> str:
    done = report.decisions
    if done is None:
        return (
            "history_decisions: not followed in this file (historySink off, or the history in "
            "another database): left as it is"
        )
    kept = f" (+{done.kept} kept: their events were pruned)" if report.first_seq > 1 else ""
    return f"history_decisions: {done.rows} rows{kept}, node {done.node} ({done.node_source})"


SUBCOMMAND = (configure_parser, run_command)
"""What `cli.add_subcommand` takes after the name and help text."""
