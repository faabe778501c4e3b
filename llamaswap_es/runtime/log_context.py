"""Which request (and model) the code running now serves, for the log lines it writes.

The HTTP layer binds a request's id when it assigns one (web/request_ids.py); every log call made
while serving it, in any module, then carries it without passing it along: the text format ends
such a line with `request_id=…`, the JSON format has `request_id` and `model` fields. A context
variable follows the request's task and the tasks it starts, and nothing else.
"""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class RequestContext:
    request_id: str
    model: str | None = None


_CURRENT: ContextVar[RequestContext | None] = ContextVar("llamaswap_es_request", default=None)


def bind_request(request_id: str, model: str | None = None) -> None:
    """From now on (in this task and those it starts) log lines name this request."""
    _CURRENT.set(RequestContext(request_id, model))


def clear_request() -> None:
    """Log lines name no request (a new request on a kept-alive connection starts here)."""
    _CURRENT.set(None)


def current_request() -> RequestContext | None:
    return _CURRENT.get()
