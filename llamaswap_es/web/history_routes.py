"""`GET /api/history`, `GET /api/history/activity` and `GET /api/history/nodes`.

deps: `history` (a `History`). `/api/history` is the history's status: whether it is current,
behind or failing and why (a history that cannot be written never makes `/health` fail: the
node serves as usual; alert on this or on `/metrics`). The other two read the history database,
which holds every node's requests when it is shared: the fleet's Activity page. While that
database is down they answer 503 naming it.

They read through `history.reader`: the projections' read-only sqlite3 connection where the
history is the node's own event-log file (the default: no SQLAlchemy is loaded), an SQLAlchemy
engine where it is a database elsewhere. The SQL is the same (`projections/history/queries.py`).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from llamaswap_es.projections.activity_queries import ActivityQueryError, parse_activity_query
from llamaswap_es.projections.history.errors import describe
from llamaswap_es.projections.history.queries import (
    HistoryReader,
    check_fleet_query,
    list_history_activity,
    list_nodes,
)
from llamaswap_es.web.errors import error_response

log = logging.getLogger("llamaswap_es.web.history_routes")


def register_routes(router: web.UrlDispatcher, deps: Any) -> None:
    async def status(request: web.Request) -> web.StreamResponse:
        return web.json_response(deps.history.status().to_json())

    async def activity(request: web.Request) -> web.StreamResponse:
        reader = _reader(deps)
        if reader is None:
            return error_response(request, 404, _OFF)
        params = dict(request.query)
        by_node = params.get("sort") == "node"
        if by_node:
            params.pop("sort")
        try:
            query = parse_activity_query(params, request.query.getall("model", []))
            check_fleet_query(query)
        except ActivityQueryError as exc:
            return error_response(request, 400, str(exc))
        if by_node:
            query = dataclasses.replace(query, sort="node")
        nodes = [n for n in request.query.getall("node", []) if n.strip()]
        return await _read(request, reader, lambda: list_history_activity(reader, query, nodes))

    async def nodes(request: web.Request) -> web.StreamResponse:
        reader = _reader(deps)
        if reader is None:
            return error_response(request, 404, _OFF)

        async def body() -> dict[str, Any]:
            return {"nodes": await list_nodes(reader)}

        return await _read(request, reader, body)

    router.add_get("/api/history", status)
    router.add_get("/api/history/activity", activity)
    router.add_get("/api/history/nodes", nodes)


_OFF = "the history sink is off on this node (llamaswap-es.historySink: false)"


def _reader(deps: Any) -> HistoryReader | None:
    reader: HistoryReader | None = deps.history.reader
    return reader


async def _read(
    request: web.Request, reader: HistoryReader, query: Callable[[], Awaitable[dict[str, Any]]]
) -> web.StreamResponse:
    try:
        body = await query()
    except Exception as exc:  # the database is down or refuses: say which and why
        text = describe(exc)
        log.warning("history query on %s failed: %s", reader.shown, text)
        if "no such table" in text or "does not exist" in text:
            text = "its tables are not created yet (the sink creates them when it first connects)"
        return error_response(
            request, 503, f"the history database {reader.shown} cannot be read: {text}"
        )
    return web.json_response(body)
