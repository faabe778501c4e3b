"""`GET /api/history`, `GET /api/history/activity` and `GET /api/history/nodes`.

deps: `history` (a `History`). `/api/history` is the sink's status: whether it is current,
behind or failing and why (a sink that cannot write never makes `/health` fail: the node serves
as usual; alert on this or on `/metrics`). The other two read the history database, which holds
every node's requests when it is shared: the fleet's Activity page. While that database is down
they answer 503 naming it.

The query modules (SQLAlchemy) are imported by the handlers that need them, which only run when
the sink is on (its database open): a node with the sink off never loads SQLAlchemy.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from aiohttp import web

from llamaswap_es.projections.activity_queries import ActivityQueryError, parse_activity_query
from llamaswap_es.web.errors import error_response

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncConnection

    from llamaswap_es.projections.history.engine import HistoryDatabase

log = logging.getLogger("llamaswap_es.web.history_routes")


def register_routes(router: web.UrlDispatcher, deps: Any) -> None:
    async def status(request: web.Request) -> web.StreamResponse:
        return web.json_response(deps.history.status().to_json())

    async def activity(request: web.Request) -> web.StreamResponse:
        db = _database(deps)
        if db is None:
            return error_response(request, 404, _OFF)
        params = dict(request.query)
        by_node = params.get("sort") == "node"
        if by_node:
            params.pop("sort")
        from llamaswap_es.projections.history.queries import (
            check_fleet_query,
            list_history_activity,
        )

        try:
            query = parse_activity_query(params, request.query.getall("model", []))
            check_fleet_query(query)
        except ActivityQueryError as exc:
            return error_response(request, 400, str(exc))
        if by_node:
            query = dataclasses.replace(query, sort="node")
        nodes = [n for n in request.query.getall("node", []) if n.strip()]
        return await _read(request, db, lambda conn: list_history_activity(conn, query, nodes))

    async def nodes(request: web.Request) -> web.StreamResponse:
        db = _database(deps)
        if db is None:
            return error_response(request, 404, _OFF)
        return await _read(request, db, _nodes_body)

    router.add_get("/api/history", status)
    router.add_get("/api/history/activity", activity)
    router.add_get("/api/history/nodes", nodes)


_OFF = "the history sink is off on this node (llamaswap-es.historySink: false)"


def _database(deps: Any) -> HistoryDatabase | None:
    return deps.history.db


Query = Callable[["AsyncConnection"], Awaitable[dict[str, Any]]]


async def _nodes_body(conn: AsyncConnection) -> dict[str, Any]:
    from llamaswap_es.projections.history.queries import list_nodes

    return {"nodes": await list_nodes(conn)}


async def _read(request: web.Request, db: HistoryDatabase, query: Query) -> web.StreamResponse:
    from llamaswap_es.projections.history.engine import DB_TIMEOUT_S, READ_ONLY
    from llamaswap_es.projections.history.errors import describe

    try:
        async with asyncio.timeout(DB_TIMEOUT_S), db.engine.connect() as conn:
            reading = await conn.execution_options(**{READ_ONLY: True})
            body = await query(reading)
    except Exception as exc:  # the database is down or refuses: say which and why
        text = describe(exc)
        log.warning("history query on %s failed: %s", db.shown, text)
        if "no such table" in text or "does not exist" in text:
            text = "its tables are not created yet (the sink creates them when it first connects)"
        return error_response(
            request, 503, f"the history database {db.shown} cannot be read: {text}"
        )
    return web.json_response(body)
