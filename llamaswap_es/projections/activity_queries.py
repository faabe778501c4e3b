"""Reading the `activity` table the way llama-swap's activity APIs do (spec/api.md §16).

`parse_activity_query` checks the query string and raises `ActivityQueryError` with llama-swap's
exact 400 message; `list_activity` and `activity_stats` run on a read-only connection. Entries
have llama-swap's fields plus ours (`request_id`, `queue_wait_ms`, `swap_wait_ms`, `ttfb_ms`,
`requested_model`), which clients written for llama-swap ignore.
"""

from __future__ import annotations

import json
import math
import sqlite3
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from llamaswap_es.events.encodable import INT64_MAX, INT64_MIN

SORT_COLUMNS = {
    "id": "id",
    "time": "ts_created",
    "model": "model_id",
    "req_path": "req_path",
    "resp_status_code": "resp_status_code",
    "resp_content_type": "resp_content_type",
    "cached": "cache_tokens",
    "prompt": "input_tokens",
    "generated": "output_tokens",
    "drafted": "draft_tokens",
    "prompt_speed": "prompt_per_second",
    "gen_speed": "tokens_per_second",
    "duration": "duration_ms",
    # ours
    "queue_wait": "queue_wait_ms",
    "swap_wait": "swap_wait_ms",
}

_ENTRY_COLUMNS = (
    "a.id, a.ts_created, a.model_id, a.req_path, a.resp_content_type, a.resp_status_code, "
    "a.cache_tokens, a.draft_tokens, a.draft_acc_tokens, a.input_tokens, a.output_tokens, "
    "a.prompt_per_second, a.tokens_per_second, a.duration_ms, a.error_msg, a.metadata_json, "
    "a.request_id, a.ts_ms, a.requested_model, a.queue_wait_ms, a.swap_wait_ms, a.ttfb_ms, "
    "c.request_id IS NOT NULL"
)


class ActivityQueryError(ValueError):
    """A bad query parameter; the message is llama-swap's 400 text."""


@dataclass(frozen=True, slots=True)
class ActivityQuery:
    models: tuple[str, ...] = ()
    start: int | None = None
    end: int | None = None
    min_id: int | None = None
    max_id: int | None = None
    limit: int = 25
    page: int = 1
    sort: str = "id"
    order: str = "desc"
    extra: dict[str, Any] = field(default_factory=dict)


def _int(value: str, message: str, name: str) -> int:
    """An integer parameter SQLite can hold (a larger one failed the query: a 500)."""
    try:
        number = int(value)
    except ValueError:
        raise ActivityQueryError(message) from None
    if not INT64_MIN <= number <= INT64_MAX:
        raise ActivityQueryError(f"{name} must be at most {INT64_MAX}")
    return number


def parse_rfc3339(text: str) -> int | None:
    """Unix seconds of an RFC3339 timestamp (offset required), or None if it is not one."""
    if "T" not in text and "t" not in text:
        return None
    try:
        stamp = datetime.fromisoformat(text.replace("z", "Z"))
    except ValueError:
        return None
    if stamp.tzinfo is None:
        return None
    return math.floor(stamp.timestamp())


def parse_activity_query(params: Mapping[str, str], models: Sequence[str]) -> ActivityQuery:
    """Validate `/api/metrics/activity`'s parameters (`models` are the repeated `model` values)."""
    limit, page = 25, 1
    if (text := params.get("limit")) is not None and text != "":
        limit = _int(text, "invalid limit", "limit")
        if not 1 <= limit <= 999:
            raise ActivityQueryError("limit must be between 1 and 999")
    if (text := params.get("page")) is not None and text != "":
        page = _int(text, "page must be >= 1", "page")
        if page < 1:
            raise ActivityQueryError("page must be >= 1")
    sort = params.get("sort") or "id"
    if sort not in SORT_COLUMNS:
        raise ActivityQueryError("invalid sort column")
    order = (params.get("order") or "desc").lower()
    if order not in ("asc", "desc"):
        raise ActivityQueryError("order must be asc or desc")
    bounds: dict[str, int | None] = {"start": None, "end": None}
    for name in bounds:
        if text := params.get(name):
            bounds[name] = parse_rfc3339(text)
            if bounds[name] is None:
                raise ActivityQueryError(f"invalid '{name}' timestamp, use RFC3339 format")
    start, end = bounds["start"], bounds["end"]
    if start is not None and end is not None and start > end:
        raise ActivityQueryError("start must be before end")
    ids: dict[str, int | None] = {"min_id": None, "max_id": None}
    for name in ids:
        if text := params.get(name):
            value = _int(text, f"{name} must be >= 1", name)
            if value < 1:
                raise ActivityQueryError(f"{name} must be >= 1")
            ids[name] = value
    min_id, max_id = ids["min_id"], ids["max_id"]
    if min_id is not None and max_id is not None and min_id > max_id:
        raise ActivityQueryError("min_id must be <= max_id")
    return ActivityQuery(
        models=tuple(m for m in models if m.strip()),
        start=start, end=end, min_id=min_id, max_id=max_id,
        limit=limit, page=page, sort=sort, order=order,
    )  # fmt: skip


def _where(query: ActivityQuery) -> tuple[str, list[Any]]:
    clauses: list[str] = []
    params: list[Any] = []
    if query.models:
        clauses.append(f"a.model_id IN ({', '.join('?' * len(query.models))})")
        params.extend(query.models)
    for clause, value in (
        ("a.ts_created >= ?", query.start),
        ("a.ts_created <= ?", query.end),
        ("a.id >= ?", query.min_id),
        ("a.id <= ?", query.max_id),
    ):
        if value is not None:
            clauses.append(clause)
            params.append(value)
    return (" WHERE " + " AND ".join(clauses)) if clauses else "", params


def list_activity(conn: sqlite3.Connection, query: ActivityQuery) -> dict[str, Any]:
    """One page of entries with llama-swap's paging envelope."""
    where, params = _where(query)
    total = conn.execute(f"SELECT count(*) FROM activity a{where}", params).fetchone()[0]
    direction = "ASC" if query.order == "asc" else "DESC"
    column = SORT_COLUMNS[query.sort]
    sql = (
        f"SELECT {_ENTRY_COLUMNS} FROM activity a "
        f"LEFT JOIN captures c ON c.request_id = a.request_id{where} "
        f"ORDER BY a.{column} {direction}, a.id {direction} LIMIT ? OFFSET ?"
    )
    offset = min((query.page - 1) * query.limit, INT64_MAX)  # past every row: an empty page
    rows = conn.execute(sql, [*params, query.limit, offset]).fetchall()
    return {
        "data": [entry_json(row) for row in rows],
        "page": query.page,
        "limit": query.limit,
        "total": total,
        "total_pages": math.ceil(total / query.limit) if total else 0,
    }


def entry_json(row: Sequence[Any]) -> dict[str, Any]:
    (id_, ts_created, model, path, content_type, status, cache, draft, draft_acc, inp, out,
     pps, tps, duration, error, metadata, request_id, ts_ms, requested, queue_wait, swap_wait,
     ttfb, has_capture) = row  # fmt: skip
    entry: dict[str, Any] = {
        "id": id_,
        "timestamp": datetime.fromtimestamp(ts_created, UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "model": model,
        "req_path": path,
        "resp_content_type": content_type,
        "resp_status_code": status,
        "tokens": {
            "cache_tokens": cache,
            "draft_tokens": draft,
            "draft_acc_tokens": draft_acc,
            "input_tokens": inp,
            "output_tokens": out,
            "prompt_per_second": pps,
            "tokens_per_second": tps,
        },
        "duration_ms": duration,
        "has_capture": bool(has_capture),
        "request_id": request_id,
        "timestamp_ms": ts_ms,
        "requested_model": requested,
        "queue_wait_ms": queue_wait,
        "swap_wait_ms": swap_wait,
        "ttfb_ms": ttfb,
    }
    if error:
        entry["error_msg"] = error
    if metadata:
        entry["metadata"] = json.loads(metadata)
    return entry


def activity_stats(conn: sqlite3.Connection, model: str | None) -> dict[str, Any]:
    """Totals and the speed histograms of `/api/metrics/stats`."""
    where, params = (" WHERE model_id = ?", [model]) if model else ("", [])
    totals = conn.execute(
        "SELECT count(*), coalesce(sum(input_tokens), 0), coalesce(sum(output_tokens), 0), "
        "coalesce(sum(CASE WHEN cache_tokens > 0 THEN cache_tokens ELSE 0 END), 0) "
        f"FROM activity{where}",
        params,
    ).fetchone()
    speeds = {}
    for key, column in (
        ("prompt_histogram", "prompt_per_second"),
        ("gen_histogram", "tokens_per_second"),
    ):
        clause = f"{where} AND {column} > 0" if where else f" WHERE {column} > 0"
        values = [r[0] for r in conn.execute(f"SELECT {column} FROM activity{clause}", params)]
        speeds[key] = histogram(values)
    return {
        "total_requests": totals[0],
        "total_input_tokens": totals[1],
        "total_output_tokens": totals[2],
        "total_cache_tokens": totals[3],
        **speeds,
    }


def histogram(values: Sequence[float]) -> dict[str, Any] | None:
    """llama-swap's speed histogram: log2-sized bins, percentiles by linear interpolation."""
    if not values:
        return None
    ordered = sorted(values)
    n = len(ordered)
    low, high = ordered[0], ordered[-1]
    if high == low:
        bins, size = [n], 0.0
    else:
        count = min(20, max(5, math.ceil(math.log2(n)) + 1))
        size = (high - low) / count
        bins = [0] * count
        for v in ordered:
            bins[min(count - 1, int((v - low) / size))] += 1
    return {
        "bins": bins,
        "min": low,
        "max": high,
        "binSize": size,
        "p50": percentile(ordered, 50),
        "p95": percentile(ordered, 95),
        "p99": percentile(ordered, 99),
    }


def percentile(ordered: Sequence[float], p: float) -> float:
    rank = p / 100 * (len(ordered) - 1)
    lower = math.floor(rank)
    upper = min(lower + 1, len(ordered) - 1)
    return ordered[lower] + (ordered[upper] - ordered[lower]) * (rank - lower)
