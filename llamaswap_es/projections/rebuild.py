"""`llamaswap-es rebuild-projections --db PATH`: drop every projection and fold the log again.

Runs offline: it takes the server's lock on the database (and refuses, naming the pid, while a
server is using it), brings the schema up to date, rebuilds the `activity` table from seq 1 and
says what it did. Captures are not derived from the log (bodies never enter it), so they stay.
In-memory projections (metrics, queue view) are rebuilt by every server start.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from llamaswap_es.errors import LlamaSwapError
from llamaswap_es.events.reader import open_log
from llamaswap_es.events.writer import LogWriter
from llamaswap_es.projections.activity import ActivityProjection
from llamaswap_es.projections.database import connect_writer


@dataclass(frozen=True, slots=True)
class RebuildReport:
    events: int
    last_seq: int
    activity_rows: int
    seconds: float


def rebuild_projections(db_path: str | Path) -> RebuildReport:
    """Rebuild every stored projection of the log at `db_path` (no server may be running)."""
    path = Path(db_path).expanduser().absolute()
    if not path.is_file():
        raise LlamaSwapError(f"{path}: no event log here (the file does not exist)")
    started = time.monotonic()
    writer = LogWriter.open(path)  # the server's lock, and the migrations
    try:
        conn = connect_writer(path)
        try:
            with open_log(path) as reader:
                last_seq = reader.last_seq()
                counted = _Counting(reader.iter_envelopes())
                rows = ActivityProjection(path).rebuild(conn, counted)
        finally:
            conn.close()
    finally:
        writer.close()
    return RebuildReport(counted.count, last_seq, rows, time.monotonic() - started)


class _Counting:
    def __init__(self, source):  # type: ignore[no-untyped-def]
        self._source = source
        self.count = 0

    def __iter__(self):  # type: ignore[no-untyped-def]
        for item in self._source:
            self.count += 1
            yield item


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--db", "-db", required=True, metavar="PATH", help="the event log")


def run_command(args: argparse.Namespace) -> int:
    """Rebuild and print what was done; 1 with the reason when it cannot."""
    try:
        report = rebuild_projections(args.db)
    except LlamaSwapError as exc:
        print(f"llamaswap-es: {exc}", file=sys.stderr)
        return 1
    print(
        f"rebuilt projections of {args.db} from {report.events} events (seq 1..{report.last_seq}) "
        f"in {report.seconds:.2f}s\n"
        f"  activity: {report.activity_rows} rows\n"
        "  captures: kept (not derived from the log)\n"
        "  metrics, queue view, model status: in memory, rebuilt at every server start"
    )
    return 0


SUBCOMMAND = (configure_parser, run_command)
"""What `cli.add_subcommand` takes after the name and help text."""
