"""A request's own idle TTL for its model: LM Studio's `ttl` and Ollama's `keep_alive`.

Clients written for LM Studio send `"ttl": <seconds>` and clients written for Ollama send
`"keep_alive"` (seconds as a number, or a Go duration such as "5m" or "1h30m"; negative keeps
the model loaded indefinitely) in the JSON body. We read either from the top level of the body
the client sent, turn it into the scheduler's `RequestReceived.ttl_override_ms`, and forward the
body unchanged (llama-server ignores fields it does not know). The reducer decides what the
override does (core/effects.py `idle_ttl_ms`).

A value we cannot read is refused with a 400 that names the field and the value, rather than
silently keeping a model loaded (or not) against the client's intent.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable

from llamaswap_es.events.types import TTL_FOREVER
from llamaswap_es.web.errors import RequestError

TTL_FIELDS = ("ttl", "keep_alive")
"""The body fields read, in order of precedence when a body carries both."""

MAX_TTL_S = 365 * 24 * 3600
"""The longest override accepted (one year); a negative `keep_alive` means "indefinitely"."""

_DURATION_UNITS_S = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,  # U+00B5, as Go accepts
    "μs": 1e-6,  # U+03BC
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}
_NUMBER = r"(?:\d+\.?\d*|\.\d+)"
_UNIT = "|".join(sorted(map(re.escape, _DURATION_UNITS_S), key=len, reverse=True))
_DURATION = re.compile(rf"([-+]?)((?:{_NUMBER}(?:{_UNIT}))+)")
_COMPONENT = re.compile(rf"({_NUMBER})({_UNIT})")
_PLAIN_SECONDS = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)")


def ttl_fields(doc: dict[str, object]) -> tuple[tuple[str, object], ...]:
    """The TTL fields a JSON body carries at its top level (a JSON null counts as absent)."""
    return tuple((name, doc[name]) for name in TTL_FIELDS if doc.get(name) is not None)


def ttl_override_ms(fields: Iterable[tuple[str, object]]) -> int | None:
    """The override the fields ask for, in ms: None (none given), `TTL_FOREVER`, or >= 0.

    Every field given is validated; when both are, `ttl` wins. Raises `RequestError` 400
    naming the field and the value.
    """
    found: dict[str, int] = {}
    for name, value in fields:
        found[name] = parse_ttl(value) if name == "ttl" else parse_keep_alive(value)
    for name in TTL_FIELDS:
        if name in found:
            return found[name]
    return None


def parse_ttl(value: object) -> int:
    """LM Studio's `ttl`: a whole number of seconds >= 0 (5.0 is accepted as 5)."""
    seconds = value if isinstance(value, int | float) and not isinstance(value, bool) else None
    if seconds is None or not math.isfinite(seconds) or seconds != int(seconds):
        raise _invalid("ttl", value, f"expected a whole number of seconds from 0 to {MAX_TTL_S}")
    if not 0 <= seconds <= MAX_TTL_S:
        raise _invalid("ttl", value, f"expected a whole number of seconds from 0 to {MAX_TTL_S}")
    return int(seconds) * 1000


def parse_keep_alive(value: object) -> int:
    """Ollama's `keep_alive`: seconds as a number, or a Go duration ("5m", "1h30m", "90s");
    0 unloads as soon as idle, a negative value keeps the model loaded indefinitely.

    A string of plain digits ("300") is read as seconds too (Ollama's OLLAMA_KEEP_ALIVE form).
    """
    if isinstance(value, int | float) and not isinstance(value, bool):
        seconds = float(value)
    elif isinstance(value, str):
        parsed = parse_go_duration(value.strip())
        if parsed is None:
            raise _invalid("keep_alive", value, "expected seconds or a duration like 5m")
        seconds = parsed
    else:
        raise _invalid("keep_alive", value, "expected seconds or a duration like 5m")
    if math.isnan(seconds):
        raise _invalid("keep_alive", value, "expected seconds or a duration like 5m")
    if seconds < 0:
        return TTL_FOREVER
    if seconds > MAX_TTL_S:
        raise _invalid(
            "keep_alive",
            value,
            f"at most {MAX_TTL_S} seconds (one year); a negative value keeps the model loaded",
        )
    return round(seconds * 1000)


def parse_go_duration(text: str) -> float | None:
    """Seconds in a Go duration string ("1h30m", "-1m", ".5s", "0"), or plain seconds ("90");
    None when it is neither."""
    if _PLAIN_SECONDS.fullmatch(text):
        return float(text)
    match = _DURATION.fullmatch(text)
    if match is None:
        return None
    total = sum(
        float(number) * _DURATION_UNITS_S[unit]
        for number, unit in _COMPONENT.findall(match.group(2))
    )
    return -total if match.group(1) == "-" else total


def _invalid(field: str, value: object, expected: str) -> RequestError:
    shown = json.dumps(value, ensure_ascii=False)
    if len(shown) > _SHOWN_LIMIT:
        shown = shown[:_SHOWN_LIMIT] + "…"
    return RequestError(400, f"invalid {field} {shown}: {expected}", code="invalid_" + field)


_SHOWN_LIMIT = 80
