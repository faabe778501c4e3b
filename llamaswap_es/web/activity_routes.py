"""`GET /api/metrics/activity`, `GET /api/metrics/stats` and `GET /api/captures/{id}`.

deps: `db` (ProjectionDatabase), `captures` (CaptureStore) and `history` (for the node's name) — a
`Projections` object has them all.
Errors are llama-swap's negotiated envelope with its exact messages (spec/api.md §15, §16).
"""

from __future__ import annotations

import logging
from typing import Any

from aiohttp import web

from llamaswap_es.errors import LlamaSwapError
from llamaswap_es.events.encodable import INT64_MAX, INT64_MIN
from llamaswap_es.projections.activity_queries import (
    ActivityQueryError,
    activity_stats,
    list_activity,
    parse_activity_query,
)
from llamaswap_es.web.errors import error_response

log = logging.getLogger("llamaswap_es.projections.http")


def register_routes(router: web.UrlDispatcher, deps: Any) -> None:
    async def activity(request: web.Request) -> web.StreamResponse:
        try:
            query = parse_activity_query(request.query, request.query.getall("model", []))
        except ActivityQueryError as exc:
            return error_response(request, 400, str(exc))
        try:
            page = await deps.db.query(lambda conn: list_activity(conn, query))
        except LlamaSwapError as exc:
            log.error("activity query failed: %s", exc)
            return error_response(request, 500, "failed to get activity")
        for entry in page["data"]:  # ours: which node of a fleet served it (nodeName)
            entry["node"] = deps.history.node
        return web.json_response(page)

    async def stats(request: web.Request) -> web.StreamResponse:
        model = request.query.get("model", "").strip() or None
        try:
            body = await deps.db.query(lambda conn: activity_stats(conn, model))
        except LlamaSwapError as exc:
            log.error("activity stats failed: %s", exc)
            return error_response(request, 500, "failed to get activity stats")
        return web.json_response(body)

    async def capture(request: web.Request) -> web.StreamResponse:
        try:
            activity_id = int(request.match_info["id"])
        except ValueError:
            return error_response(request, 400, "invalid capture ID")
        if not INT64_MIN <= activity_id <= INT64_MAX:  # SQLite's integers: no such capture
            return error_response(request, 404, "capture not found")
        found = await deps.captures.load(activity_id)
        if found is None:
            return error_response(request, 404, "capture not found")
        return web.json_response(found)

    router.add_get("/api/metrics/activity", activity)
    router.add_get("/api/metrics/stats", stats)
    router.add_get("/api/captures/{id}", capture)
