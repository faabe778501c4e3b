"""The last lines of one instance's own output, kept so that its failure can quote them.

A model that cannot start usually says why on its way out ("model file not found", "unknown
argument --foo"): that text goes into its `ProcessStartFailed` / `ProcessExited` event, and from
there into the client's error, the server's log line and the Models page. The tail is bounded
(the last `MAX_LINES` lines, at most `MAX_BYTES` of UTF-8) and printable anywhere: colour codes
and other control characters are dropped, and a line redrawn with carriage returns (a progress
bar) keeps only its last state.
"""

from __future__ import annotations

import re
from collections import deque

MAX_LINES = 20
MAX_BYTES = 2048
_RETAINED_CHARS = 4 * MAX_BYTES
"""Raw text kept while the process runs: enough for the tail after cleaning, never more."""

_ANSI = re.compile(r"\x1b(?:\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)?|[@-Z\\-_])")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


class OutputTail:
    """Feed it the output as it arrives (`write`); `text()` is the cleaned, bounded tail."""

    def __init__(self, max_lines: int = MAX_LINES, max_bytes: int = MAX_BYTES) -> None:
        self._max_lines = max_lines
        self._max_bytes = max_bytes
        self._retained = max(_RETAINED_CHARS, 4 * max_bytes)
        self._chunks: deque[str] = deque()
        self._size = 0
        self._cut = False
        """Older output was dropped: the first retained line may be a fragment."""

    def write(self, text: str) -> None:
        self._chunks.append(text)
        self._size += len(text)
        while self._size > self._retained and len(self._chunks) > 1:
            self._size -= len(self._chunks.popleft())
            self._cut = True
        if self._size > self._retained:  # one huge chunk
            only = self._chunks.pop()[-self._retained :]
            self._chunks.append(only)
            self._size = len(only)
            self._cut = True

    def text(self) -> str:
        """The last lines, cleaned and bounded; "" when the process printed nothing."""
        lines = _clean_lines("".join(self._chunks))
        if self._cut and len(lines) > 1:
            lines = lines[1:]  # the first one was cut in the middle
        lines = lines[-self._max_lines :]
        while len(lines) > 1 and _size("\n".join(lines)) > self._max_bytes:
            lines.pop(0)
        text = "\n".join(lines)
        if _size(text) > self._max_bytes:  # one line longer than the whole budget: keep its end
            text = "…" + _last_bytes(text, self._max_bytes - _size("…"))
        return text


def _clean_lines(raw: str) -> list[str]:
    raw = _ANSI.sub("", raw).replace("\r\n", "\n")
    lines = []
    for line in raw.split("\n"):
        redrawn = [part for part in line.split("\r") if part.strip()]
        line = redrawn[-1] if redrawn else ""
        lines.append(_CONTROL.sub("", line).rstrip())
    while lines and not lines[-1]:
        lines.pop()
    while lines and not lines[0]:
        lines.pop(0)
    return lines


def _size(text: str) -> int:
    return len(text.encode("utf-8"))


def _last_bytes(text: str, budget: int) -> str:
    """The longest end of `text` that fits `budget` bytes of UTF-8 (cut between characters)."""
    data = text.encode("utf-8")[-budget:]
    return data.decode("utf-8", errors="ignore")
