"""The boundary between HTTP and the event log: what a request puts into an event is made safe here.

ARCHITECTURE §11.1. A request's values reach the log through the events the web layer builds:
`RequestReceived`, `RequestCancelled`, `RequestFinished` (web/dispatch.py) and
`PeerRequestFinished` (web/peer_dispatch.py). A single non-UTF-8 byte in `X-Session-ID` once made
the codec raise inside the run loop and stopped the scheduler for good (issue 13). Two rules:

- What the client chose and the history keeps as it is (the session id header, the request
  path) is checked before the request is scheduled (`check_request`): each byte that is not
  UTF-8 becomes U+FFFD, as llama-swap records it, and a value longer than its bound is refused
  with a 400 naming the header or the path (cutting it would silently merge two sessions).
- Every event built in web/ passes `recordable_event` on its way to the loop: whatever the
  server or the upstream reported after the fact (an error text, a content type, token counts)
  is repaired and bounded there (events/encodable.py), and anything an earlier check missed is
  caught, so the codec never sees a value it cannot encode and the loop never has to refuse one.

Values that never enter an event (query values, multipart file names) are not bounded here; the
client address and the user agent go only to the in-flight table and the access log, repaired
by `shown_text` on the way.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, TypeVar

from aiohttp import web

from llamaswap_es.events.encodable import (
    INT64_MAX,
    INT64_MIN,
    MAX_DEPTH,
    MAX_TEXT,
    made_encodable,
    safe_text,
)
from llamaswap_es.web.errors import RequestError

MAX_SESSION_ID_CHARS = 256
"""Longest session id header accepted (UUIDs and hashes are 36-64 characters)."""
MAX_PATH_CHARS = 2048
"""Longest request path (without its query) accepted on a model route."""
MAX_SHOWN_CHARS = 256
"""Bound for a header shown in the in-flight table or the access log (address, user agent)."""

E = TypeVar("E")


def check_request(request: web.BaseRequest, session_headers: Iterable[str]) -> dict[str, str]:
    """Check what a model request will put into its events; its session metadata.

    Raises `RequestError` 400 naming the header or the path when one is longer than its bound.
    The result is `{"session_id": …}` from the first configured header the client sent (the
    value repaired), or `{}`.
    """
    path = request.raw_path.partition("?")[0]
    if len(path) > MAX_PATH_CHARS:
        raise RequestError(
            400,
            f"the request path is {len(path)} characters long; at most {MAX_PATH_CHARS} are "
            "accepted",
            code="path_too_long",
        )
    return session_metadata(request.headers, session_headers)


def session_metadata(headers: Mapping[str, str], names: Iterable[str]) -> dict[str, str]:
    """The session id from the first of `names` the client sent (`ui.activity.session_id`)."""
    for name in names:
        value = headers.get(name, "")
        if not value:
            continue
        if len(value) > MAX_SESSION_ID_CHARS:
            raise RequestError(
                400,
                f"the {name} header is {len(value)} characters long; at most "
                f"{MAX_SESSION_ID_CHARS} are accepted as a session id",
                code="invalid_header",
            )
        return {"session_id": safe_text(value)}
    return {}


def recordable_event(event: E) -> E:
    """The event as it may be submitted: itself when every field already encodes and is within
    bounds (the common case, checked without copying), else a repaired copy (text U+FFFD-repaired
    and cut at `MAX_TEXT`, integers clamped to 64 bits, nesting bounded)."""
    for name in _field_names(event):
        if not _fits(getattr(event, name), 0):
            return made_encodable(event)  # type: ignore[arg-type, return-value]
    return event


def shown_text(value: str) -> str:
    """A header value as the in-flight table and the access log show it: repaired, bounded."""
    return safe_text(value, MAX_SHOWN_CHARS)


def _fits(value: Any, depth: int) -> bool:
    kind = type(value)  # exact types first: this runs for every field of every request's events
    if kind is str:
        return len(value) <= MAX_TEXT and (value.isascii() or safe_text(value) == value)
    if kind is int:
        return INT64_MIN <= value <= INT64_MAX
    if value is None or kind is bool or kind is float:
        return True
    if depth >= MAX_DEPTH:
        return False
    if kind is dict:
        for key, item in value.items():
            if type(key) is not str or not _fits(key, depth) or not _fits(item, depth + 1):
                return False
        return True
    if kind is list or kind is tuple:
        return all(_fits(item, depth + 1) for item in value)
    return False  # a subclass or another type: let the repair decide what it becomes


def _field_names(event: object) -> tuple[str, ...]:
    cls = type(event)
    names = _FIELDS.get(cls)
    if names is None:
        names = _FIELDS[cls] = tuple(cls.__dataclass_fields__)  # type: ignore[attr-defined]
    return names


_FIELDS: dict[type, tuple[str, ...]] = {}
