"""A client's own queue priority: the `X-Request-Priority` header (ours).

llama-swap orders its queue by a per-model priority (`routing.scheduler.settings.fifo.priority`);
users ask for interactive requests to go ahead of batch ones regardless of model (spec
ui-and-users.md B.1 #11). A request may carry `X-Request-Priority: <integer>`; it then takes that
place in the queue instead of its model's priority (higher first, then arrival). It orders only
the waiting: it never preempts a running request nor forces a swap by itself.
"""

from __future__ import annotations

from collections.abc import Mapping

from llamaswap_es.web.errors import RequestError

HEADER = "X-Request-Priority"
LIMIT = 1_000_000
"""Accepted range: -LIMIT..LIMIT (bounded like every other input)."""


def request_priority(headers: Mapping[str, str]) -> int | None:
    """The header's priority, None when absent; a value that is not an integer in range is a
    400 naming the header and the value."""
    raw = headers.get(HEADER)
    if raw is None:
        return None
    text = raw.strip()
    try:
        value = int(text, 10)
    except ValueError:
        value = None
    if value is None or not -LIMIT <= value <= LIMIT:
        shown = text if len(text) <= 40 else text[:40] + "…"
        raise RequestError(
            400,
            f"invalid {HEADER} {shown!r}: expected an integer from {-LIMIT} to {LIMIT}",
            code="invalid_priority",
        )
    return value
