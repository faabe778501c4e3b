"""Token and timing metrics from upstream responses, as llama-swap records them (api.md §14.3-14.5).

Every format an upstream may answer in is read here: llama-server's `timings`, OpenAI `usage`
(also the `include_usage` stream chunk), Anthropic `/v1/messages` (message_start/message_delta and
non-streaming), the Responses API's `response.completed`, and vLLM's `metrics`. Pure functions over
bytes and parsed JSON; `SseUsageScanner` reads a stream incrementally with bounded memory.

The result is a plain dict with stable keys (`METRIC_KEYS` plus `duration_ms`). As in llama-swap's
records, -1 means "unknown" once something was parsed, and a response with nothing to parse gives
the "minimal" record where every token field is 0.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

from llamaswap_es.events import codec

log = logging.getLogger(__name__)


def loads(data: bytes) -> Any:
    """An upstream answer (or one SSE event) parsed: by the event codec's reader (orjson: 3 to
    5 times less CPU than the standard library; metering reads every answer and every streamed
    event), by the standard library when orjson refuses it (NaN, Infinity, UTF-16, deep
    nesting), so an answer the standard library reads is still metered. orjson reads an integer
    past 64 bits as a float: no token count is that large."""
    try:
        return codec.loads(data)
    except ValueError:  # orjson.JSONDecodeError is a ValueError
        return json.loads(data)


METRIC_KEYS = (
    "cache_tokens",
    "input_tokens",
    "output_tokens",
    "draft_tokens",
    "draft_acc_tokens",
    "prompt_per_second",
    "tokens_per_second",
)

ERROR_MESSAGE_LIMIT = 500
MAX_SSE_LINE_BYTES = 1024 * 1024
"""A longer line cannot be a usage event we could use; it is skipped, not buffered."""


def minimal_metrics(wall_ms: int) -> dict[str, Any]:
    """The record for a response with nothing parseable: every token field 0."""
    return {key: 0 for key in METRIC_KEYS} | {"duration_ms": wall_ms}


@dataclass
class UsageFindings:
    """What one response reported: a merged usage, and the last `timings` and `metrics` seen."""

    input_tokens: int = 0
    output_tokens: int = 0
    cached_tokens: int = -1
    usage_seen: bool = False
    timings: dict[str, Any] | None = None
    metrics: dict[str, Any] | None = None

    @property
    def empty(self) -> bool:
        return not self.usage_seen and self.timings is None and self.metrics is None

    def add_usage(self, usage: Any) -> None:
        """Merge one usage object (OpenAI, Anthropic or Responses field names)."""
        if not isinstance(usage, dict):
            return
        input_tokens = _first_int(usage, ("prompt_tokens",), ("input_tokens",))
        output_tokens = _first_int(usage, ("completion_tokens",), ("output_tokens",))
        cached = _first_int(
            usage,
            ("cache_read_input_tokens",),
            ("input_tokens_details", "cached_tokens"),
            ("prompt_tokens_details", "cached_tokens"),
        )
        if input_tokens is None and output_tokens is None and cached is None:
            return
        self.usage_seen = True
        if input_tokens is not None and input_tokens > 0:
            self.input_tokens = input_tokens
        if output_tokens is not None and output_tokens > 0:
            self.output_tokens = output_tokens
        if cached is not None and cached >= 0:
            self.cached_tokens = cached

    def add_event(self, event: Any) -> None:
        """Take what one parsed JSON document (an SSE event or a whole body) reports."""
        if not isinstance(event, dict):
            return
        self.add_usage(event.get("usage"))
        response = event.get("response")
        if isinstance(response, dict):  # Responses API: response.completed
            self.add_usage(response.get("usage"))
        message = event.get("message")
        if isinstance(message, dict):  # Anthropic: message_start
            self.add_usage(message.get("usage"))
        if isinstance(event.get("timings"), dict):
            self.timings = event["timings"]
        if isinstance(event.get("metrics"), dict):
            self.metrics = event["metrics"]


def _first_int(obj: dict[str, Any], *paths: tuple[str, ...]) -> int | None:
    for path in paths:
        node: Any = obj
        for key in path:
            node = node.get(key) if isinstance(node, dict) else None
        if _is_finite_number(node):
            return int(node)
    return None


def _number(obj: dict[str, Any], key: str) -> float | None:
    value: Any = obj.get(key)
    return float(value) if _is_finite_number(value) else None


def _is_finite_number(value: Any) -> bool:
    """A JSON number we can count with: Python's parser also reads `NaN`, `Infinity` and
    `1e999` (infinite), and `int()` of those raises, so an upstream's odd answer could end
    its metering in an exception."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    return isinstance(value, int) or math.isfinite(value)


def build_metrics(findings: UsageFindings, wall_ms: int) -> dict[str, Any]:
    """Turn findings into the record's token fields (api.md §14.5)."""
    if findings.empty:
        return minimal_metrics(wall_ms)
    out: dict[str, Any] = {
        "cache_tokens": findings.cached_tokens,
        "input_tokens": findings.input_tokens,
        "output_tokens": findings.output_tokens,
        "draft_tokens": -1,
        "draft_acc_tokens": -1,
        "prompt_per_second": -1.0,
        "tokens_per_second": -1.0,
        "duration_ms": wall_ms,
    }
    timings = findings.timings
    if timings is not None:  # llama-server
        prompt_n = _number(timings, "prompt_n")
        predicted_n = _number(timings, "predicted_n")
        if prompt_n is not None:
            out["input_tokens"] = int(prompt_n)
        if predicted_n is not None:
            out["output_tokens"] = int(predicted_n)
        out["prompt_per_second"] = _number(timings, "prompt_per_second") or 0.0
        out["tokens_per_second"] = _number(timings, "predicted_per_second") or 0.0
        upstream_ms = (_number(timings, "prompt_ms") or 0.0) + (
            _number(timings, "predicted_ms") or 0.0
        )
        if math.isfinite(upstream_ms):  # two huge finite times can add up to infinity
            out["duration_ms"] = max(wall_ms, int(upstream_ms))
        cache_n = _number(timings, "cache_n")
        if cache_n is not None:
            out["cache_tokens"] = int(cache_n)
        draft_n = _number(timings, "draft_n")
        accepted = _number(timings, "draft_n_accepted")
        if draft_n is not None and accepted is not None:
            out["draft_tokens"] = int(draft_n)
            out["draft_acc_tokens"] = int(accepted)
    metrics = findings.metrics
    if metrics is not None:  # vLLM --per-request-spec-decode-metrics
        spec = metrics.get("speculative_decoding")
        if isinstance(spec, dict):
            drafted = _number(spec, "num_draft_tokens")
            accepted = _number(spec, "num_accepted_draft_tokens")
            if drafted is not None and accepted is not None:
                out["draft_tokens"] = int(drafted)
                out["draft_acc_tokens"] = int(accepted)
        ttft_ms = _number(metrics, "time_to_first_token_ms")
        if ttft_ms is not None and ttft_ms > 0:
            uncached = out["input_tokens"] - max(out["cache_tokens"], 0)
            out["prompt_per_second"] = uncached / (ttft_ms / 1000.0)
        mean_itl_ms = _number(metrics, "mean_itl_ms")
        if mean_itl_ms is not None and mean_itl_ms > 0:
            out["tokens_per_second"] = 1000.0 / mean_itl_ms
    return out


class SseUsageScanner:
    """Reads an SSE response as it streams past, keeping only the usage it reports.

    Chunks may split lines (and UTF-8 characters) anywhere. Memory is bounded: the findings plus
    at most one partial line of `max_line_bytes`; a longer line is skipped.
    """

    def __init__(self, max_line_bytes: int = MAX_SSE_LINE_BYTES):
        self.findings = UsageFindings()
        self._partial = bytearray()
        self._skipping = False
        self._max_line = max_line_bytes

    def feed(self, chunk: bytes) -> None:
        start = 0
        while True:
            newline = chunk.find(b"\n", start)
            if newline < 0:
                self._hold(chunk[start:])
                return
            piece = chunk[start:newline]
            if self._skipping:
                self._skipping = False
            elif self._partial:
                self._partial += piece
                if len(self._partial) <= self._max_line:
                    self._line(bytes(self._partial))
                self._partial.clear()
            else:
                self._line(piece)
            start = newline + 1

    def _hold(self, rest: bytes) -> None:
        if self._skipping or not rest:
            return
        self._partial += rest
        if len(self._partial) > self._max_line:
            self._partial.clear()
            self._skipping = True

    def finish(self) -> UsageFindings:
        """Flush a last line that had no newline, and return what was found."""
        if self._partial and not self._skipping:
            self._line(bytes(self._partial))
        self._partial.clear()
        return self.findings

    def _line(self, raw: bytes) -> None:
        line = raw.strip()
        if not line.startswith(b"data:"):
            return
        data = line[5:].strip()
        if not data or data == b"[DONE]":
            return
        try:
            event = loads(data)
        except (ValueError, UnicodeDecodeError, RecursionError):  # not JSON we can read
            return
        self.findings.add_event(event)


def findings_from_json_body(body: bytes, path: str = "") -> UsageFindings:
    """Findings from a whole (non-streamed) JSON response body; empty when it is not JSON."""
    findings = UsageFindings()
    try:
        doc = loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):  # not JSON we can read
        return findings
    if isinstance(doc, list):  # /infill answers an array; timings come from its last element
        if path.startswith("/infill") and doc and isinstance(doc[-1], dict):
            timings = doc[-1].get("timings")
            if isinstance(timings, dict):
                findings.timings = timings
        return findings
    if isinstance(doc, dict):
        findings.add_usage(doc.get("usage"))
        if isinstance(doc.get("timings"), dict):
            findings.timings = doc["timings"]
        if isinstance(doc.get("metrics"), dict):
            findings.metrics = doc["metrics"]
    return findings


def metrics_from_response(
    body: bytes, content_type: str, *, path: str = "", wall_ms: int = 0
) -> dict[str, Any]:
    """The token fields of a complete, already decompressed 200 response body."""
    if not body:
        return minimal_metrics(wall_ms)
    if "text/event-stream" in content_type:
        scanner = SseUsageScanner()
        scanner.feed(body)
        findings = scanner.finish()
        if findings.empty:
            log.warning("stream finished without usage or timings path=%s", path)
    else:
        findings = findings_from_json_body(body, path)
    return build_metrics(findings, wall_ms)


def error_message_from_response(status: int, body: bytes) -> str:
    """The `error_msg` llama-swap records for a non-200 response (api.md §14.3 step 1).

    The first non-empty string at `error.message`, `error`, `message`, `detail`, cut at 500
    characters; else the status line (`502 Bad Gateway`), else `HTTP <code>`.
    """
    text = _message_from_json(body)
    if text:
        if len(text) > ERROR_MESSAGE_LIMIT:
            text = text[:ERROR_MESSAGE_LIMIT] + "..."
        return text
    try:
        return f"{status} {HTTPStatus(status).phrase}"
    except ValueError:
        return f"HTTP {status}"


def _message_from_json(body: bytes) -> str:
    try:
        doc = loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):  # not JSON we can read
        return ""
    if not isinstance(doc, dict):
        return ""
    error = doc.get("error")
    candidates = [
        error.get("message") if isinstance(error, dict) else None,
        error,
        doc.get("message"),
        doc.get("detail"),
    ]
    for candidate in candidates:
        if isinstance(candidate, str) and candidate:
            return candidate
    return ""
