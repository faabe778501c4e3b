"""The history tables' column names, without SQLAlchemy.

Shared by the SQLAlchemy table descriptions (`tables`, for a history database elsewhere), the
view over `activity` (`local_view`) and the query builder (`queries`), so a node whose history
lives in its own event-log file reads and writes it with nothing but the standard library.
"""

from __future__ import annotations

from llamaswap_es.projections.activity_fold import ROW_COLUMNS

REQUEST_COLUMNS: tuple[str, ...] = (
    "node", "request_id", "seq", "day", "ts_ms", "model_id", "requested_model", "peer",
    *(c for c in ROW_COLUMNS if c not in ("request_id", "seq", "ts_created", "ts_ms", "model_id",
                                          "requested_model", "peer")),
    "recorded_ms",
)  # fmt: skip
"""Every column of `history_requests`: the activity row's (but llama-swap's `ts_created`)."""

DECISION_COLUMNS: tuple[str, ...] = (
    "node", "seq", "day", "ts_ms", "kind", "model_id", "instance", "reason", "detail",
    "duration_ms", "recorded_ms",
)  # fmt: skip
"""Every column of `history_decisions`, in the migration's order."""
