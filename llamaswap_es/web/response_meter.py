"""Watch a response body stream past and derive its activity metrics, with bounded memory.

The forwarder feeds every chunk it sends to the client; the meter decompresses (gzip/deflate, as
llama-swap does for metering), scans SSE incrementally, and for other bodies keeps only the first
`head_limit` bytes plus the last `tail_limit`, so a huge embeddings answer still yields its `usage`
(which sits at the end) without being held in memory.
"""

from __future__ import annotations

import json
import re
import zlib
from typing import Any

from llamaswap_es.web.usage import (
    SseUsageScanner,
    UsageFindings,
    build_metrics,
    error_message_from_response,
    findings_from_json_body,
    minimal_metrics,
)

HEAD_LIMIT = 1024 * 1024
TAIL_LIMIT = 64 * 1024
_INFLATE_STEP = 256 * 1024
_TAIL_KEYS = re.compile(r'"(usage|timings|metrics)"\s*:\s*\{')


class ResponseMeter:
    """Metrics and error text of one upstream response, fed chunk by chunk."""

    def __init__(
        self,
        status: int,
        content_type: str,
        content_encoding: str = "",
        *,
        path: str = "",
        head_limit: int = HEAD_LIMIT,
        tail_limit: int = TAIL_LIMIT,
    ):
        self.status = status
        self.path = path
        self._sse = status == 200 and "text/event-stream" in content_type
        self._scanner = SseUsageScanner() if self._sse else None
        self._head = bytearray()
        self._tail = bytearray()
        self._head_limit = head_limit
        self._tail_limit = tail_limit
        self._overflowed = False
        self._decode_error: str | None = None
        encoding = content_encoding.strip().lower()
        self._inflater = _inflater(encoding)

    def feed(self, chunk: bytes) -> None:
        if self._decode_error is not None or not chunk:
            return
        if self._inflater is None:
            self._take(chunk)
            return
        try:
            data = self._inflater.decompress(chunk, _INFLATE_STEP)
            self._take(data)
            while self._inflater.unconsumed_tail:
                data = self._inflater.decompress(self._inflater.unconsumed_tail, _INFLATE_STEP)
                self._take(data)
        except zlib.error as err:
            self._decode_error = f"response decompression failed: {err}"

    def _take(self, data: bytes) -> None:
        if not data:
            return
        if self._scanner is not None:
            self._scanner.feed(data)
            return
        room = self._head_limit - len(self._head)
        if room > 0:
            self._head += data[:room]
            data = data[room:]
        if data:
            self._overflowed = True
            self._tail += data
            if len(self._tail) > self._tail_limit:
                del self._tail[: len(self._tail) - self._tail_limit]

    def finish(self, wall_ms: int) -> tuple[dict[str, Any], str | None]:
        """(metrics, error text or None) once the body has ended."""
        if self._decode_error is not None:
            return minimal_metrics(wall_ms), self._decode_error
        if self.status != 200:
            return minimal_metrics(wall_ms), error_message_from_response(
                self.status, bytes(self._head)
            )
        if self._scanner is not None:
            return build_metrics(self._scanner.finish(), wall_ms), None
        if not self._overflowed:
            if not self._head:
                return minimal_metrics(wall_ms), None
            findings = findings_from_json_body(bytes(self._head), self.path)
            return build_metrics(findings, wall_ms), None
        return build_metrics(findings_from_tail(bytes(self._tail)), wall_ms), None


def findings_from_tail(tail: bytes) -> UsageFindings:
    """Usage objects found in the last bytes of a body too big to keep whole."""
    findings = UsageFindings()
    decoder = json.JSONDecoder()
    text = tail.decode("utf-8", "ignore")
    for match in _TAIL_KEYS.finditer(text):
        key = match.group(1)
        try:
            value, _ = decoder.raw_decode(text, match.end() - 1)
        except ValueError:
            continue
        findings.add_event({key: value})
    return findings


def _inflater(encoding: str) -> Any:
    if encoding == "gzip":
        return zlib.decompressobj(16 + zlib.MAX_WBITS)
    if encoding == "deflate":
        return zlib.decompressobj(zlib.MAX_WBITS)
    return None
