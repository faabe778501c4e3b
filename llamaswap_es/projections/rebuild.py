"""`llamaswap-es rebuild-projections --db PATH`: drop the activity table and fold the log again.

Runs offline: it takes the server's lock on the database (and refuses, naming the pid, while a
server is using it), brings the schema up to date, rebuilds the `activity` table from seq 1 and
says what it did. The local history's `history_decisions` (another projection in the same file)
is not rebuilt: its rows carry the node name of the server that wrote them, which an offline
command does not know, and it continues from its own checkpoint. Captures are not derived from
the log (bodies never enter it), so they stay. On a log that retention pruned (its first seq is
above 1), the activity rows the remaining events cannot recompute are kept and only the rest is
folded again. In-memory projections (metrics, queue view) are rebuilt by every server start.
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


@dataclass(frozen=True, slots=True)
class RebuildReport:
    events: int
    last_seq: int
    activity_rows: int
    seconds: float
    first_seq: int = 1
    kept_rows: int = 0
    """Activity rows kept because the events they came from were pruned."""


def rebuild_projections(db_path: str | Path) -> RebuildReport:
    """Rebuild the activity table of the log at `db_path` (no server may be running)."""
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
                counted = _Counting(reader.iter_envelopes(from_seq=first_seq))
                activity = ActivityProjection(path)
                rows = activity.rebuild(conn, counted, first_seq=first_seq)
                total = int(conn.execute("SELECT count(*) FROM activity").fetchone()[0])
        finally:
            conn.close()
    finally:
        writer.close()
    seconds = time.monotonic() - started
    return RebuildReport(counted.count, last_seq, rows, seconds, first_seq, total - rows)


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


def run_command(args: argparse.Namespace) -> int:
    """Rebuild and print what was done; 1 with the reason when it cannot."""
    try:
        report = rebuild_projections(args.db)
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
        "  captures: kept (not derived from the log)\n"
        "  metrics, queue view, model status: in memory, rebuilt at every server start"
    )
    return 0


SUBCOMMAND = (configure_parser, run_command)
"""What `cli.add_subcommand` takes after the name and help text."""
