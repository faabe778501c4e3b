"""llama-swap's log streams: the proxy log, the upstream log, one per model, and the combined one.

Child output is copied here by the executor as it arrives; our own log lines come in through
`ProxyLogHandler`. Each stream keeps a bounded history (llama-swap's 100 KiB ring buffer) and
hands new text to its subscribers through bounded queues: a slow reader (a `/logs/stream`
client on a bad network) loses text and is told so with a marker line, but never makes a writer
wait, so it can never stall a child's output pipe (spec/core.md §1.9, api.md §11).

Stream names: "proxy", "upstream", "combined" (what `/logs` and `/logs/stream` show, chosen by
`logToStdout`), and any other name is a model id. As in llama-swap, the reserved names win over
a model with the same id.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import threading
from collections import deque
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Literal, TextIO

from llamaswap_es.redaction import redact_text

PROXY = "proxy"
UPSTREAM = "upstream"
COMBINED = "combined"
RESERVED_STREAMS = (PROXY, UPSTREAM, COMBINED)

HISTORY_CHARS = 100 * 1024
"""Per stream, like llama-swap's 100 KiB ring buffers (counted in characters)."""
SUBSCRIBER_PENDING_CHARS = 256 * 1024
"""What one subscriber may have waiting before newer text is dropped for it."""

LogToStdout = Literal["proxy", "upstream", "both", "none"]


class RingBuffer:
    """The newest `capacity` characters written, kept as chunks so a write is O(1) amortised."""

    def __init__(self, capacity: int = HISTORY_CHARS) -> None:
        self._capacity = capacity
        self._chunks: deque[str] = deque()
        self._size = 0

    def write(self, text: str) -> None:
        if len(text) >= self._capacity:
            self._chunks.clear()
            self._chunks.append(text[-self._capacity :])
            self._size = self._capacity
            return
        self._chunks.append(text)
        self._size += len(text)
        while self._size > self._capacity:
            excess = self._size - self._capacity
            head = self._chunks[0]
            if len(head) <= excess:
                self._chunks.popleft()
                self._size -= len(head)
            else:
                self._chunks[0] = head[excess:]
                self._size -= excess

    def text(self) -> str:
        return "".join(self._chunks)


class _Subscriber:
    """One reader's bounded queue; counts what it had to drop so the reader can be told."""

    def __init__(self, capacity: int) -> None:
        self._capacity = capacity
        self._pending: deque[str] = deque()
        self._pending_chars = 0
        self.dropped_chars = 0
        self.closed = False
        self.wake = asyncio.Event()

    def offer(self, text: str) -> None:
        if self.closed:
            return
        if self._pending_chars + len(text) > self._capacity:
            self.dropped_chars += len(text)
        else:
            self._take_drop_marker()
            self._pending.append(text)
            self._pending_chars += len(text)
        self.wake.set()

    def _take_drop_marker(self) -> None:
        if self.dropped_chars:
            marker = f"\n— {self.dropped_chars} bytes dropped —\n"
            self.dropped_chars = 0
            self._pending.append(marker)
            self._pending_chars += len(marker)

    def drain(self) -> str:
        self._take_drop_marker()  # what was dropped came after everything still pending
        text = "".join(self._pending)
        self._pending.clear()
        self._pending_chars = 0
        self.wake.clear()
        return text

    def close(self) -> None:
        self.closed = True
        self.wake.set()


class _Stream:
    def __init__(self, history_chars: int) -> None:
        self.history = RingBuffer(history_chars)
        self.subscribers: set[_Subscriber] = set()

    def write(self, text: str) -> None:
        self.history.write(text)
        for sub in self.subscribers:
            sub.offer(text)


class UpstreamLogs:
    """All log streams of one server; written from the event loop (or any thread, see below).

    Writes from another thread (a logging call in a worker thread) are handed to the loop the
    first subscriber ran on, so subscriber queues are only touched from that loop.
    """

    def __init__(
        self,
        *,
        log_to_stdout: LogToStdout = "proxy",
        stdout: TextIO | None = None,
        history_chars: int = HISTORY_CHARS,
        subscriber_pending_chars: int = SUBSCRIBER_PENDING_CHARS,
    ) -> None:
        self._history_chars = history_chars
        self._pending_chars = subscriber_pending_chars
        self._streams: dict[str, _Stream] = {
            name: _Stream(history_chars) for name in RESERVED_STREAMS
        }
        self._log_to_stdout: LogToStdout = log_to_stdout
        self._stdout = stdout
        self._lock = threading.RLock()
        self._loop: asyncio.AbstractEventLoop | None = None

    # -- writing -------------------------------------------------------------------------------

    def set_log_to_stdout(self, value: LogToStdout) -> None:
        self._log_to_stdout = value

    def write_proxy(self, text: str) -> None:
        """One or more of our own log lines (already formatted, newline-terminated)."""
        self._dispatch(self._write_proxy, text)

    def write_upstream(self, model: str, text: str) -> None:
        """Output of a model's process (or of its `cmdStop`)."""
        self._dispatch(self._write_upstream, model, text)

    def _write_proxy(self, text: str) -> None:
        with self._lock:
            self._streams[PROXY].write(text)
            if self._log_to_stdout in ("proxy", "both"):
                self._to_combined(text)

    def _write_upstream(self, model: str, text: str) -> None:
        with self._lock:
            self._model_stream(model).write(text)
            self._streams[UPSTREAM].write(text)
            if self._log_to_stdout in ("upstream", "both"):
                self._to_combined(text)

    def _to_combined(self, text: str) -> None:
        self._streams[COMBINED].write(text)
        out = self._stdout if self._stdout is not None else sys.stdout
        try:
            out.write(text)
            out.flush()
        except (OSError, ValueError):
            pass  # stdout closed or a broken pipe: the in-memory streams still have it

    def _dispatch(self, fn: Callable[..., None], *args: str) -> None:
        loop = self._loop
        if loop is None or loop.is_closed():
            fn(*args)
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            fn(*args)
        else:
            loop.call_soon_threadsafe(fn, *args)

    def _model_stream(self, model: str) -> _Stream:
        stream = self._streams.get("model:" + model)
        if stream is None:
            stream = self._streams["model:" + model] = _Stream(self._history_chars)
        return stream

    # -- reading -------------------------------------------------------------------------------

    def _stream(self, name: str) -> _Stream:
        if name in RESERVED_STREAMS:
            return self._streams[name]
        return self._model_stream(name)

    def models(self) -> list[str]:
        """Models that have a stream (wrote output or were subscribed to)."""
        return sorted(k[len("model:") :] for k in self._streams if k.startswith("model:"))

    def drop_model(self, model: str) -> None:
        """Forget a model's history (it left the config); its subscribers see the end."""
        with self._lock:
            stream = self._streams.pop("model:" + model, None)
        if stream is not None:
            for sub in stream.subscribers:
                sub.close()

    def history(self, stream: str = COMBINED) -> str:
        """The buffered text of a stream (at most the last 100 KiB)."""
        with self._lock:
            return self._stream(stream).history.text()

    async def subscribe(
        self, stream: str = COMBINED, *, history: bool = False
    ) -> AsyncIterator[str]:
        """New text of a stream as it is written, until `close()` (or the model is dropped).

        With `history=True` the buffered text comes first, taken atomically with the
        registration so no line is lost or repeated between the two. A reader that falls more
        than 256 KiB behind loses text and receives a `— N bytes dropped —` line in its place.
        Being an async generator, it registers at its first iteration, not when called.
        """
        self._loop = asyncio.get_running_loop()
        sub = _Subscriber(self._pending_chars)
        with self._lock:
            target = self._stream(stream)
            if history:
                sub.offer(target.history.text())
            target.subscribers.add(sub)
        try:
            while True:
                await sub.wake.wait()
                text = sub.drain()
                if text:
                    yield text
                if sub.closed:
                    return
        finally:
            with self._lock:
                target.subscribers.discard(sub)

    def close(self) -> None:
        """End every subscription (server shutdown or reload)."""
        with self._lock:
            for stream in self._streams.values():
                for sub in stream.subscribers:
                    sub.close()


class ProxyLogHandler(logging.Handler):
    """Feeds our own `logging` records into the proxy log as `[LEVEL] message` lines.

    Every line is passed through `redact_text` (with the configured keys as `secrets`) on its
    way in, so no log call, present or future, can put a credential into the proxy log, stdout
    or what `/logs` serves.
    """

    _LEVELS = {"WARNING": "WARN", "CRITICAL": "ERROR"}

    def __init__(
        self, logs: UpstreamLogs, level: int = logging.INFO, *, secrets: Sequence[str] = ()
    ) -> None:
        super().__init__(level)
        self._logs = logs
        self._secrets = tuple(secrets)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            level = self._LEVELS.get(record.levelname, record.levelname)
            text = f"[{level}] {redact_text(self.format(record), self._secrets)}\n"
            self._logs.write_proxy(text)
        except Exception:
            self.handleError(record)
