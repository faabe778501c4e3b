"""How a proxy log line looks: llama-swap's `[LEVEL] message` with a timestamp, or JSON lines.

Text (the default): `<time> [LEVEL] message`, the time laid out as llama-swap's `logTimeFormat`
names it (Go's layouts: `rfc3339`, `kitchen`, `stampmilli` …, in local time). Unlike llama-swap,
an unset or empty `logTimeFormat` means `rfc3339`, so every line can be placed in time; any other
name llama-swap does not know (`none`, say) means no timestamp, as in llama-swap. A line written
while serving a request ends with `request_id=…`. Each line of a multi-line message (a
traceback) gets the prefix, so every line of the log starts with its time.

JSON (`--log-format json`, for log shippers): one object per line with `time` (RFC 3339 with
milliseconds, UTC offset), `level`, `message`, `logger`, and `request_id` / `model` when the line
was written while serving a request, `error` with the traceback when there is one.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from datetime import datetime
from typing import Literal

from llamaswap_es.runtime.log_context import current_request

LogFormat = Literal["text", "json"]
LOG_FORMATS: tuple[LogFormat, ...] = ("text", "json")
DEFAULT_TIME_FORMAT = "rfc3339"
LEVEL_NAMES = {"WARNING": "WARN", "CRITICAL": "ERROR"}
"""llama-swap's four level names."""


def _offset(t: datetime, colon: bool) -> str:
    delta = t.utcoffset()
    minutes = int(delta.total_seconds() // 60) if delta is not None else 0
    sign = "-" if minutes < 0 else "+"
    hours, mins = divmod(abs(minutes), 60)
    return f"{sign}{hours:02d}{':' if colon else ''}{mins:02d}"


def _zone(t: datetime) -> str:
    """Go's `MST`: the zone's abbreviation, or the offset when it has none."""
    name = t.tzname() or ""
    return name if name.isalpha() else _offset(t, colon=False)


def _z07(t: datetime) -> str:
    """Go's `Z07:00`: `Z` in UTC, else `+hh:mm`."""
    return "Z" if t.utcoffset() is not None and not t.utcoffset() else _offset(t, colon=True)


def _day_(t: datetime) -> str:
    return f"{t.day:2d}"  # Go's `_2`: the day padded with a space


def _fraction(t: datetime, digits: int) -> str:
    return f"{t.microsecond:06d}{'000'}"[:digits]


def _nano(t: datetime) -> str:
    """Go's `.999999999`: the fraction without trailing zeros (nothing when whole)."""
    digits = f"{t.microsecond:06d}".rstrip("0")
    return f".{digits}" if digits else ""


GO_LAYOUTS: dict[str, Callable[[datetime], str]] = {
    "ansic": lambda t: t.strftime(f"%a %b {_day_(t)} %H:%M:%S %Y"),
    "unixdate": lambda t: t.strftime(f"%a %b {_day_(t)} %H:%M:%S {_zone(t)} %Y"),
    "rubydate": lambda t: t.strftime(f"%a %b %d %H:%M:%S {_offset(t, False)} %Y"),
    "rfc822": lambda t: t.strftime(f"%d %b %y %H:%M {_zone(t)}"),
    "rfc822z": lambda t: t.strftime(f"%d %b %y %H:%M {_offset(t, False)}"),
    "rfc850": lambda t: t.strftime(f"%A, %d-%b-%y %H:%M:%S {_zone(t)}"),
    "rfc1123": lambda t: t.strftime(f"%a, %d %b %Y %H:%M:%S {_zone(t)}"),
    "rfc1123z": lambda t: t.strftime(f"%a, %d %b %Y %H:%M:%S {_offset(t, False)}"),
    "rfc3339": lambda t: t.strftime("%Y-%m-%dT%H:%M:%S") + _z07(t),
    "rfc3339nano": lambda t: t.strftime("%Y-%m-%dT%H:%M:%S") + _nano(t) + _z07(t),
    "kitchen": lambda t: f"{(t.hour % 12) or 12}:{t.minute:02d}{'AM' if t.hour < 12 else 'PM'}",
    "stamp": lambda t: t.strftime(f"%b {_day_(t)} %H:%M:%S"),
    "stampmilli": lambda t: t.strftime(f"%b {_day_(t)} %H:%M:%S.") + _fraction(t, 3),
    "stampmicro": lambda t: t.strftime(f"%b {_day_(t)} %H:%M:%S.") + _fraction(t, 6),
    "stampnano": lambda t: t.strftime(f"%b {_day_(t)} %H:%M:%S.") + _fraction(t, 9),
}
"""llama-swap's `logTimeFormat` names (spec/config.md) → Go's layout of that name."""


SUBSECOND_LAYOUTS = frozenset({"rfc3339nano", "stampmilli", "stampmicro", "stampnano"})
"""The layouts that show a fraction of a second; every other one is the same for a whole
second, so a busy server formats its timestamp once a second, not once a line."""


def time_layout(log_time_format: str) -> Callable[[datetime], str] | None:
    """The layout `logTimeFormat` names: trimmed, case-insensitive; empty → rfc3339 (ours);
    an unknown name → None (no timestamp, as in llama-swap)."""
    key = log_time_format.strip().lower() or DEFAULT_TIME_FORMAT
    return GO_LAYOUTS.get(key)


def level_name(record: logging.LogRecord) -> str:
    return LEVEL_NAMES.get(record.levelname, record.levelname)


class ProxyLineFormatter(logging.Formatter):
    """Formats a record as the proxy log's line(s), without the final newline."""

    def __init__(self, log_time_format: str = "", log_format: LogFormat = "text") -> None:
        super().__init__()
        self._layout = time_layout(log_time_format)
        self._json = log_format == "json"
        key = log_time_format.strip().lower() or DEFAULT_TIME_FORMAT
        self._whole_seconds = key not in SUBSECOND_LAYOUTS
        self._stamp: tuple[int, str] = (-1, "")
        """(second, its text): one attribute, so a thread never reads a torn pair."""

    def _time_text(self, created: float) -> str:
        """The line's timestamp in the layout; reused for the rest of a whole second."""
        assert self._layout is not None
        if not self._whole_seconds:
            return self._layout(datetime.fromtimestamp(created).astimezone())
        second = int(created)
        cached_second, cached_text = self._stamp
        if second == cached_second:
            return cached_text
        # the whole second itself: `created` 0.9999997 past it would round up to the next one
        text = self._layout(datetime.fromtimestamp(second).astimezone())
        self._stamp = (second, text)
        return text

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        error = self.formatException(record.exc_info) if record.exc_info else None
        bound = current_request()
        if self._json:
            stamp = datetime.fromtimestamp(record.created).astimezone()
            doc: dict[str, object] = {
                "time": stamp.isoformat(timespec="milliseconds"),
                "level": level_name(record),
                "message": message,
                "logger": record.name,
            }
            if bound is not None:
                doc["request_id"] = bound.request_id
                if bound.model is not None:
                    doc["model"] = bound.model
            if error:
                doc["error"] = error
            return json.dumps(doc, ensure_ascii=False)
        if bound is not None and bound.request_id not in message:
            message += f" request_id={bound.request_id}"
        if error:
            message += "\n" + error
        prefix = f"[{level_name(record)}] "
        if self._layout is not None:
            prefix = f"{self._time_text(record.created)} {prefix}"
        return "\n".join(prefix + line for line in message.split("\n"))
