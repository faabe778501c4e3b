"""The history database's tables as SQLAlchemy Core sees them (the DDL is the migration's).

`migrations/history/*.sql` creates the tables; these descriptions are what the sink inserts
through and the API queries, on SQLite and PostgreSQL alike. A test
(tests/projections/test_history_schema.py) checks that both agree, column for column.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, Float, Integer, MetaData, Table, Text

from llamaswap_es.projections.activity_fold import SPEED_FIELDS, TOKEN_FIELDS
from llamaswap_es.projections.history.columns import REQUEST_COLUMNS

metadata = MetaData()

checkpoints = Table(
    "history_checkpoints",
    metadata,
    Column("node", Text, primary_key=True),
    Column("log_id", Text, nullable=False),
    Column("seq", BigInteger, nullable=False),
    Column("state", Text, nullable=False),
    Column("updated_ms", BigInteger, nullable=False),
)

_NULLABLE_MS = ("received_ms", "dispatched_ms", "queue_wait_ms", "swap_wait_ms", "ttfb_ms")
_INTEGERS = ("stream", "resp_status_code", *TOKEN_FIELDS)
_BIG = ("seq", "ts_ms", "duration_ms", "bytes_out", *_NULLABLE_MS)

def _request_column(name: str) -> Column:
    if name in ("node", "request_id"):
        return Column(name, Text, primary_key=True)
    if name in _NULLABLE_MS:
        return Column(name, BigInteger, nullable=True)
    if name in _BIG or name == "recorded_ms":
        return Column(name, BigInteger, nullable=False)
    if name in _INTEGERS:
        return Column(name, Integer, nullable=False)
    if name in SPEED_FIELDS:
        return Column(name, Float, nullable=False)
    return Column(name, Text, nullable=False)


requests = Table("history_requests", metadata, *(_request_column(c) for c in REQUEST_COLUMNS))

decisions = Table(
    "history_decisions",
    metadata,
    Column("node", Text, primary_key=True),
    Column("seq", BigInteger, primary_key=True),
    Column("day", Text, nullable=False),
    Column("ts_ms", BigInteger, nullable=False),
    Column("kind", Text, nullable=False),
    Column("model_id", Text, nullable=False),
    Column("instance", Integer, nullable=False),
    Column("reason", Text, nullable=False),
    Column("detail", Text, nullable=False),
    Column("duration_ms", BigInteger, nullable=True),
    Column("recorded_ms", BigInteger, nullable=False),
)
