"""Finding and repairing the one field that keeps an event from being written.

The web boundary makes what it copies into events safe; this is the run loop's second line: when
the codec refuses a body anyway, `unencodable_field` names the field (for the refusal's message)
and `made_encodable` repairs an internal fact (a process's output, an upstream's odd usage
numbers) so that it is recorded rather than lost. Requests are refused instead (see `RunLoop`).
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any

from llamaswap_es.events import codec
from llamaswap_es.events.types import Decision, Event

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
MAX_DEPTH = 32
"""Nesting kept in a repaired payload; deeper values are replaced by their (short) text."""
MAX_TEXT = 4096
"""Characters kept of a repaired string field."""


def unencodable_field(body: Event | Decision) -> str | None:
    """`"<field>: <why>"` for the first field the codec cannot encode, None if all encode."""
    for f in dataclasses.fields(body):
        try:
            codec.dumps({f.name: getattr(body, f.name)})
        except (TypeError, ValueError, RecursionError) as exc:
            return f"{type(body).__name__}.{f.name}: {_describe(exc)}"
    return None


def made_encodable(body: Event | Decision) -> Event | Decision:
    """A copy of `body` whose every field encodes: text with its bad characters replaced by U+FFFD
    (and bounded), integers clamped to 64 bits, anything else JSON cannot hold turned into text."""
    changes = {f.name: _repaired(getattr(body, f.name), 0) for f in dataclasses.fields(body)}
    return dataclasses.replace(body, **changes)


def _repaired(value: Any, depth: int) -> Any:
    if value is None or isinstance(value, bool | float):
        return value
    if isinstance(value, str):
        return safe_text(value)
    if isinstance(value, int):
        return min(max(value, INT64_MIN), INT64_MAX)
    if depth >= MAX_DEPTH:
        return safe_text(repr(value)[:200])
    if isinstance(value, tuple):
        return tuple(_repaired(v, depth + 1) for v in value)
    if isinstance(value, list):
        return [_repaired(v, depth + 1) for v in value]
    if isinstance(value, dict):
        return {safe_text(str(k)): _repaired(v, depth + 1) for k, v in value.items()}
    return safe_text(repr(value)[:200])


def safe_text(text: str, limit: int = MAX_TEXT) -> str:
    """`text` as valid UTF-8 (lone surrogates become U+FFFD, as Go's encoder writes a byte that
    is not UTF-8), at most `limit` characters."""
    if len(text) > limit:
        text = text[:limit] + "…"
    if text.isascii():
        return text
    return _SURROGATE.sub("\ufffd", text)


_SURROGATE = re.compile("[\ud800-\udfff]")


def _describe(exc: BaseException) -> str:
    if isinstance(exc, RecursionError):
        return "nested too deeply to encode"
    return safe_text(str(exc), 300) or type(exc).__name__
