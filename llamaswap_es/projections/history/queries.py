"""Reading the history database for the fleet's Activity page (`GET /api/history/…`).

The same paging, sorting and filters as `/api/metrics/activity` (the query string is parsed by
`parse_activity_query`), plus a `node` filter; entries have the same fields as the node's own
activity entries plus `node`, `peer` and `seq`. A history row has no llama-swap activity id (ids
are per node), so an entry's `id` is `node:seq`, sorting by `id` sorts by time, and
`min_id`/`max_id` are refused. Captures stay on the node that took them (`has_capture` is false).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import ColumnElement, Select, func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from llamaswap_es.projections.activity_queries import ActivityQuery, ActivityQueryError
from llamaswap_es.projections.history import tables

_SORT_COLUMNS = {
    "id": "ts_ms", "time": "ts_ms", "model": "model_id", "req_path": "req_path",
    "resp_status_code": "resp_status_code", "resp_content_type": "resp_content_type",
    "cached": "cache_tokens", "prompt": "input_tokens", "generated": "output_tokens",
    "drafted": "draft_tokens", "prompt_speed": "prompt_per_second",
    "gen_speed": "tokens_per_second", "duration": "duration_ms", "queue_wait": "queue_wait_ms",
    "swap_wait": "swap_wait_ms", "node": "node",
}  # fmt: skip
"""`sort` values: the activity API's, plus `node`."""


def check_fleet_query(query: ActivityQuery) -> None:
    """Refuse what the fleet history cannot answer, naming the parameter."""
    if query.min_id is not None or query.max_id is not None:
        raise ActivityQueryError(
            "min_id and max_id are not supported by the fleet history (activity ids are per "
            "node); filter by start and end instead"
        )


def _filters(query: ActivityQuery, nodes: Sequence[str]) -> list[ColumnElement[bool]]:
    t = tables.requests.c
    clauses: list[ColumnElement[bool]] = []
    if nodes:
        clauses.append(t.node.in_(list(nodes)))
    if query.models:
        clauses.append(t.model_id.in_(list(query.models)))
    if query.start is not None:
        clauses.append(t.ts_ms >= query.start * 1000)
    if query.end is not None:
        clauses.append(t.ts_ms < (query.end + 1) * 1000)
    return clauses


async def list_history_activity(
    conn: AsyncConnection, query: ActivityQuery, nodes: Sequence[str]
) -> dict[str, Any]:
    """One page of the fleet's requests with llama-swap's paging envelope."""
    t = tables.requests.c
    where = _filters(query, nodes)
    total = int((await conn.execute(select(func.count()).select_from(tables.requests)
                                    .where(*where))).scalar() or 0)  # fmt: skip
    column = t[_SORT_COLUMNS.get(query.sort, "ts_ms")]
    tie = (t.ts_ms, t.node, t.seq)
    if query.order == "asc":
        order = [column.asc(), *(c.asc() for c in tie)]
    else:
        order = [column.desc(), *(c.desc() for c in tie)]
    page: Select[Any] = (
        select(tables.requests).where(*where).order_by(*order)
        .limit(query.limit).offset((query.page - 1) * query.limit)
    )  # fmt: skip
    rows = (await conn.execute(page)).mappings().all()
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


async def list_nodes(conn: AsyncConnection) -> list[dict[str, Any]]:
    """Every node that has written to the history database, with how far it has written."""
    c = tables.checkpoints.c
    rows = await conn.execute(select(c.node, c.seq, c.updated_ms).order_by(c.node))
    return [{"node": r.node, "written_seq": r.seq, "updated_ms": r.updated_ms} for r in rows]
