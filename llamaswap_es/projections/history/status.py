"""What the history sink reports (`GET /api/history`, `/metrics`), apart from the sink itself.

Its own module so that a node whose sink is off reports "off" without importing the sink, and
with it SQLAlchemy (~23 MB resident, the largest single part of an idle server).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class HistoryStatus:
    """What `GET /api/history` and `/metrics` say about the sink."""

    enabled: bool
    node: str
    database: str
    """The URL, password hidden ("" when the sink is off)."""
    shared: bool
    state: str
    """off, starting, current, behind, failing or stopped."""
    written_seq: int | None
    """The node's checkpoint in the history database (None until it has been read)."""
    log_seq: int
    lag_events: int
    lag_seconds: float
    """Age of the oldest committed event the database does not have yet (0 when current)."""
    failing_seconds: float
    """How long writes have been failing (0 when they are not)."""
    last_error: str | None
    requests_written: int
    decisions_written: int
    write_failures: int

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def disabled_status(node: str) -> HistoryStatus:
    return HistoryStatus(
        enabled=False, node=node, database="", shared=False, state="off", written_seq=None,
        log_seq=0, lag_events=0, lag_seconds=0.0, failing_seconds=0.0, last_error=None,
        requests_written=0, decisions_written=0, write_failures=0,
    )  # fmt: skip
