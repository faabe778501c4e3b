"""Reading the history database for the fleet's Activity page (`GET /api/history/…`).

The same paging, sorting and filters as `/api/metrics/activity` (the query string is parsed by
`parse_activity_query`), plus a `node` filter; entries have the same fields as the node's own
activity entries plus `node`, `peer` and `seq`. A history row has no llama-swap activity id (ids
are per node), so an entry's `id` is `node:seq`, sorting by `id` sorts by time, and
`min_id`/`max_id` are refused. Captures stay on the node that took them (`has_capture` is false).

One builder, two executors: the queries are parameterised SQL text (`:name` parameters, which
the standard library's sqlite3 and SQLAlchemy's `text()` both take, on SQLite and PostgreSQL
alike), run by a `HistoryReader`: the projections' read-only sqlite3 connection for the local
history (`local.LocalHistory`), or an SQLAlchemy engine for a history database elsewhere
(`engine.EngineReader`). No SQLAlchemy import here.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, Protocol

from llamaswap_es.projections.activity_queries import ActivityQuery, ActivityQueryError
from llamaswap_es.projections.history.columns import REQUEST_COLUMNS

Statement = tuple[str, dict[str, Any]]
"""SQL text with `:name` parameters, and their values."""

_SORT_COLUMNS = {
    "id": "ts_ms", "time": "ts_ms", "model": "model_id", "req_path": "req_path",
    "resp_status_code": "resp_status_code", "resp_content_type": "resp_content_type",
    "cached": "cache_tokens", "prompt": "input_tokens", "generated": "output_tokens",
    "drafted": "draft_tokens", "prompt_speed": "prompt_per_second",
    "gen_speed": "tokens_per_second", "duration": "duration_ms", "queue_wait": "queue_wait_ms",
    "swap_wait": "swap_wait_ms", "node": "node",
}  # fmt: skip
"""`sort` values: the activity API's, plus `node`."""


class HistoryReader(Protocol):
    """Runs statements in one read transaction on the history database."""

    @property
    def shown(self) -> str:
        """The database as logs and errors name it (never a password)."""
        ...

    @property
    def local_node(self) -> str | None:
        """The node whose `history_checkpoints` row is derived from its projections (the local
        history), or None (a history database elsewhere holds every node's row)."""
        ...

    async def read(self, statements: Sequence[Statement]) -> list[list[dict[str, Any]]]: ...


def check_fleet_query(query: ActivityQuery) -> None:
    """Refuse what the fleet history cannot answer, naming the parameter."""
    if query.min_id is not None or query.max_id is not None:
        raise ActivityQueryError(
            "min_id and max_id are not supported by the fleet history (activity ids are per "
            "node); filter by start and end instead"
        )


def _in(column: str, prefix: str, values: Sequence[str], params: dict[str, Any]) -> str:
    names = []
    for i, value in enumerate(values):
        params[f"{prefix}{i}"] = value
        names.append(f":{prefix}{i}")
    return f"{column} IN ({', '.join(names)})"


def activity_statements(query: ActivityQuery, nodes: Sequence[str]) -> tuple[Statement, Statement]:
    """(the count, the page) of `GET /api/history/activity`."""
    params: dict[str, Any] = {}
    clauses: list[str] = []
    if nodes:
        clauses.append(_in("node", "node", nodes, params))
    if query.models:
        clauses.append(_in("model_id", "model", query.models, params))
    if query.start is not None:
        clauses.append("ts_ms >= :start_ms")
        params["start_ms"] = query.start * 1000
    if query.end is not None:
        clauses.append("ts_ms < :end_ms")
        params["end_ms"] = (query.end + 1) * 1000
    where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
    direction = "ASC" if query.order == "asc" else "DESC"
    column = _SORT_COLUMNS.get(query.sort, "ts_ms")
    order = ", ".join(f"{c} {direction}" for c in (column, "ts_ms", "node", "seq"))
    page = {**params, "limit": query.limit, "offset": (query.page - 1) * query.limit}
    return (
        (f"SELECT count(*) AS total FROM history_requests{where}", params),
        (
            f"SELECT {', '.join(REQUEST_COLUMNS)} FROM history_requests{where} "
            f"ORDER BY {order} LIMIT :limit OFFSET :offset",
            page,
        ),
    )


async def list_history_activity(
    reader: HistoryReader, query: ActivityQuery, nodes: Sequence[str]
) -> dict[str, Any]:
    """One page of the fleet's requests with llama-swap's paging envelope."""
    counted, rows = await reader.read(activity_statements(query, nodes))
    total = int(counted[0]["total"] or 0)
    return {
        "data": [history_entry(row) for row in rows],
        "page": query.page,
        "limit": query.limit,
        "total": total,
        "total_pages": math.ceil(total / query.limit) if total else 0,
    }


def history_entry(row: Any) -> dict[str, Any]:
    """A history row as an activity entry (the node's own fields plus node, peer, seq)."""
    entry: dict[str, Any] = {
        "id": f"{row['node']}:{row['seq']}",
        "node": row["node"],
        "peer": row["peer"],
        "seq": row["seq"],
        "timestamp": datetime.fromtimestamp(row["ts_ms"] // 1000, UTC).strftime(
            "%Y-%m-%dT%H:%M:%SZ"
        ),
        "model": row["model_id"],
        "req_path": row["req_path"],
        "resp_content_type": row["resp_content_type"],
        "resp_status_code": row["resp_status_code"],
        "tokens": {
            "cache_tokens": row["cache_tokens"],
            "draft_tokens": row["draft_tokens"],
            "draft_acc_tokens": row["draft_acc_tokens"],
            "input_tokens": row["input_tokens"],
            "output_tokens": row["output_tokens"],
            "prompt_per_second": row["prompt_per_second"],
            "tokens_per_second": row["tokens_per_second"],
        },
        "duration_ms": row["duration_ms"],
        "has_capture": False,
        "request_id": row["request_id"],
        "timestamp_ms": row["ts_ms"],
        "requested_model": row["requested_model"],
        "queue_wait_ms": row["queue_wait_ms"],
        "swap_wait_ms": row["swap_wait_ms"],
        "ttfb_ms": row["ttfb_ms"],
    }
    if row["error_msg"]:
        entry["error_msg"] = row["error_msg"]
    if row["metadata_json"]:
        entry["metadata"] = json.loads(row["metadata_json"])
    return entry


def nodes_statement(local_node: str | None) -> Statement:
    """Every node that has written to the history database, with how far it has written.

    The local history derives its own node's row from its projections' checkpoints (the
    activity table and `history_decisions`: the history holds everything up to the lower)."""
    rows = "SELECT node, seq AS written_seq, updated_ms FROM history_checkpoints"
    if local_node is None:
        return f"{rows} ORDER BY node", {}
    return (
        f"{rows} WHERE node != :local_node UNION ALL "
        "SELECT :local_node, seq, updated_ms FROM (SELECT min(seq) AS seq, max(updated_ms) AS "
        "updated_ms, count(*) AS n FROM projection_checkpoints WHERE name IN ('activity', "
        "'history_decisions')) WHERE n > 0 ORDER BY node",
        {"local_node": local_node},
    )


async def list_nodes(reader: HistoryReader) -> list[dict[str, Any]]:
    (rows,) = await reader.read([nodes_statement(reader.local_node)])
    return [
        {"node": r["node"], "written_seq": r["written_seq"], "updated_ms": r["updated_ms"]}
        for r in rows
    ]
