"""Proxy log lines: llama-swap's `logTimeFormat` names give Go's layouts, the default is RFC 3339,
an unknown name means no timestamp (as in llama-swap), every line of a multi-line message is
prefixed, and JSON lines carry the request being served."""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime, timedelta, timezone

import pytest

from llamaswap_es.runtime.log_context import bind_request, clear_request
from llamaswap_es.runtime.log_format import GO_LAYOUTS, ProxyLineFormatter, time_layout

# Go's reference time, in which every layout constant is written: Mon Jan 2 15:04:05 MST 2006,
# MST being UTC-7. Rendering it must give back Go's constant (with the fraction filled in).
REFERENCE = datetime(2006, 1, 2, 15, 4, 5, 123456, tzinfo=timezone(timedelta(hours=-7), "MST"))
GO_CONSTANTS = {
    "ansic": "Mon Jan  2 15:04:05 2006",
    "unixdate": "Mon Jan  2 15:04:05 MST 2006",
    "rubydate": "Mon Jan 02 15:04:05 -0700 2006",
    "rfc822": "02 Jan 06 15:04 MST",
    "rfc822z": "02 Jan 06 15:04 -0700",
    "rfc850": "Monday, 02-Jan-06 15:04:05 MST",
    "rfc1123": "Mon, 02 Jan 2006 15:04:05 MST",
    "rfc1123z": "Mon, 02 Jan 2006 15:04:05 -0700",
    "rfc3339": "2006-01-02T15:04:05-07:00",
    "rfc3339nano": "2006-01-02T15:04:05.123456-07:00",
    "kitchen": "3:04PM",
    "stamp": "Jan  2 15:04:05",
    "stampmilli": "Jan  2 15:04:05.123",
    "stampmicro": "Jan  2 15:04:05.123456",
    "stampnano": "Jan  2 15:04:05.123456000",
}


@pytest.mark.parametrize("name", sorted(GO_CONSTANTS))
def test_each_log_time_format_renders_gos_layout(name: str) -> None:
    assert GO_LAYOUTS[name](REFERENCE) == GO_CONSTANTS[name]


def test_utc_is_written_z_and_whole_seconds_drop_the_fraction() -> None:
    utc = datetime(2025, 6, 1, 9, 5, 0, tzinfo=UTC)
    assert GO_LAYOUTS["rfc3339"](utc) == "2025-06-01T09:05:00Z"
    assert GO_LAYOUTS["rfc3339nano"](utc) == "2025-06-01T09:05:00Z"
    assert GO_LAYOUTS["kitchen"](utc) == "9:05AM"



def test_names_are_trimmed_and_case_insensitive_empty_is_rfc3339_unknown_is_none() -> None:
    assert time_layout(" Kitchen ") is GO_LAYOUTS["kitchen"]
    assert time_layout("") is GO_LAYOUTS["rfc3339"]
    assert time_layout("none") is None


def _record(message: str, level: int = logging.INFO, exc: bool = False) -> logging.LogRecord:
    exc_info = None
    if exc:
        try:
            raise ValueError("boom")
        except ValueError:
            exc_info = sys.exc_info()
    return logging.LogRecord("llamaswap_es.x", level, __file__, 1, message, (), exc_info)


def test_every_line_of_a_traceback_starts_with_the_time_and_level() -> None:
    text = ProxyLineFormatter("stampmilli").format(_record("it failed", logging.ERROR, exc=True))
    lines = text.split("\n")
    assert len(lines) > 3
    for line in lines:
        assert line[:3] in ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct",
                            "Nov", "Dec"), line  # fmt: skip
        assert " [ERROR] " in line
    assert lines[-1].endswith("ValueError: boom")


@pytest.mark.parametrize("name", ["rfc3339", "kitchen", "stampmilli", "rfc3339nano"])
def test_each_line_shows_its_own_time_though_a_second_is_formatted_once(name: str) -> None:
    """Whole-second layouts are formatted once a second: lines in the same second share the
    text, the next second's line gets its own; fractions are never reused."""
    formatter = ProxyLineFormatter(name)
    layout = time_layout(name)
    assert layout is not None
    base = 1_700_000_000.0
    whole = name in ("rfc3339", "kitchen")
    # 0.9999997 past a second rounds up to the next one in `datetime`: its line still shows its
    # own second, and so does the next line of that second
    moments = (base + 0.9999997, base + 0.2, base + 0.7, base + 1.2, base + 61.0, base + 3600.5)
    for created in moments:
        record = _record("x")
        record.created = created
        shown = datetime.fromtimestamp(int(created) if whole else created).astimezone()
        assert formatter.format(record) == f"{layout(shown)} [INFO] x"


def test_no_timestamp_for_a_name_llama_swap_does_not_know() -> None:
    assert ProxyLineFormatter("none").format(_record("hello")) == "[INFO] hello"
    assert ProxyLineFormatter("").format(_record("x", logging.WARNING)).endswith(" [WARN] x")


def test_lines_written_while_serving_a_request_name_it() -> None:
    bind_request("01ABC", "llama-8b")
    try:
        text = ProxyLineFormatter("none").format(_record("forwarded"))
        doc = json.loads(ProxyLineFormatter("", "json").format(_record("forwarded")))
    finally:
        clear_request()
    assert text == "[INFO] forwarded request_id=01ABC"
    assert doc["request_id"] == "01ABC" and doc["model"] == "llama-8b"
    assert doc["level"] == "INFO" and doc["message"] == "forwarded"
    assert datetime.fromisoformat(doc["time"]).tzinfo is not None
    outside = json.loads(ProxyLineFormatter("", "json").format(_record("idle")))
    assert "request_id" not in outside and "model" not in outside
