"""The event log over HTTP for the UI: a filterable tail, and one request's whole story.

Envelopes are shown as plain JSON objects `{"seq","ts_ms","type","key","boot","cause","payload"}`,
the same shape `/api/events` pushes live as `logEvent` messages.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from aiohttp import web

from llamaswap_es.events.codec import envelope_to_json, to_payload
from llamaswap_es.events.encodable import INT64_MAX, INT64_MIN
from llamaswap_es.events.types import Envelope
from llamaswap_es.replay.errors import ReplayError
from llamaswap_es.web.context import CTX
from llamaswap_es.web.errors import RequestError, error_response

MAX_LIMIT = 1000


def register(router: web.UrlDispatcher) -> None:
    router.add_get("/api/log/events", tail)
    router.add_get("/api/requests/{request_id}/story", story)
    router.add_get("/api/log/explain", explain)


envelope_json = envelope_to_json


def _explain(path: Path, seq: int) -> dict[str, Any]:
    """The replay tooling's explanation, imported here (in the worker thread, at the first ask)
    rather than at start: the rebuild, rendering and wording it brings (~0.15 MiB) are for a
    rarely asked question, and an idle server need not hold them
    (tests/e2e/test_idle_footprint.py)."""
    from llamaswap_es.replay.explain import explain_log

    return explain_log(path, seq)


def _int_param(request: web.Request, name: str, default: int) -> int:
    """An integer query parameter; 400 naming it when it is not one that SQLite can hold
    (a sequence number past 64 bits used to fail the query with OverflowError, a 500)."""
    raw = request.query.get(name, "")
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        value = None
    if value is None or not INT64_MIN <= value <= INT64_MAX:
        shown = raw if len(raw) <= 40 else raw[:40] + "…"
        raise RequestError(
            400, f"{name} must be an integer from {INT64_MIN} to {INT64_MAX}, got {shown!r}"
        )
    return value


def _mentions(envelope: Envelope, model: str | None, request_id: str | None) -> bool:
    payload = to_payload(envelope.body)
    if model and envelope.key != model and payload.get("model") != model:
        return False
    return not (
        request_id and envelope.key != request_id and payload.get("request_id") != request_id
    )


async def tail(request: web.Request) -> web.Response:
    """`?since_seq=N&limit=M&model=&request=&type=&key=` → events after N (newest M when N is
    absent). `model`/`request` match events that mention them within the recent window; `key`
    reads that exact key through its index over the whole log (e.g. a model's last failure)."""
    store = request.app[CTX].service.store
    assert store is not None
    limit = max(1, min(MAX_LIMIT, _int_param(request, "limit", 200)))
    last = await store.last_seq()
    since = _int_param(request, "since_seq", -1)
    types = [t for t in request.query.getall("type", []) if t] or None
    model = request.query.get("model") or None
    request_id = request.query.get("request") or None
    key = request.query.get("key") or None
    if key is not None and since >= 0:
        rows = await store.read(from_seq=since + 1, types=types, key=key, limit=limit)
    elif key is not None:
        rows = await store.read(types=types, key=key, limit=limit, newest=True)
    elif since >= 0:
        rows = await store.read(from_seq=since + 1, types=types, limit=limit * 20)
    else:
        rows = await store.read(from_seq=max(1, last - limit * 20), types=types)
    rows = [r for r in rows if _mentions(r, model, request_id)]
    rows = rows[:limit] if since >= 0 else rows[-limit:]
    return web.json_response({"events": [envelope_json(r) for r in rows], "last_seq": last})


async def story(request: web.Request) -> web.Response:
    """Everything the log says about one request, with the swap that served it."""
    store = request.app[CTX].service.store
    assert store is not None
    request_id = request.match_info["request_id"]
    own = await store.read(key=request_id)
    if not own:
        return error_response(request, 404, f"no request {request_id} in the event log")
    first, last = own[0].seq, own[-1].seq
    # A selector's request names its model only from its choice on (SelectorChose, then
    # RequestReceived); "" is a peer's model, which has no swap events.
    model = next((m for e in own if (m := to_payload(e.body).get("model"))), None)
    window = await store.read(from_seq=first, to_seq=last, key=model) if model else []
    merged = {e.seq: e for e in [*own, *window]}
    events = [envelope_json(merged[s]) for s in sorted(merged)]
    return web.json_response({"request_id": request_id, "model": model, "events": events})


async def explain(request: web.Request) -> web.Response:
    """`?seq=N` → why the decision at N was made (what `llamaswap-es replay explain` prints)."""
    store = request.app[CTX].service.store
    assert store is not None
    seq = _int_param(request, "seq", 0)
    if seq <= 0:
        return error_response(request, 400, "seq must be a positive integer")
    try:
        return web.json_response(await asyncio.to_thread(_explain, store.path, seq))
    except ReplayError as exc:
        return error_response(request, 404, str(exc))
