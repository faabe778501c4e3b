"""Requests in flight, as llama-swap's `/api/inflight` and `inflight` events show them (§13).

An entry lives from the moment a model request is received until its response ends. Ours adds the
scheduler's view (`phase`: queued with its position, loading, running) and our request id, so the
UI's queue view and a request's story line up with the event log.

Publishing never blocks a request: listeners are plain callbacks (the SSE hub queues, bounded).
Byte-progress updates are coalesced to at most one per `progress_interval_ms` per entry.

Cheap when no one looks: an entry keeps the request's own (immutable) header mapping and redacts
it only when it is first shown, and nothing is built for listeners that say they are idle (the UI
hub with no tab open). Redacting every request's headers up front cost ~50 µs a request.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from llamaswap_es.events.encodable import safe_text
from llamaswap_es.redaction import redact_text

REDACTED_HEADERS = frozenset(
    {"authorization", "proxy-authorization", "cookie", "set-cookie", "x-api-key"}
)

InflightListener = Callable[[dict[str, Any]], None]


def redact_headers(headers: Mapping[str, str], secrets: Sequence[str] = ()) -> dict[str, str]:
    """First value per header (canonical name); credentials, and any value holding one of the
    configured keys, replaced by `[REDACTED]` (never stored or sent); a credential inside another
    value (a `Referer` URL's `?api_key=`) is redacted in place. A byte that is not UTF-8 shows as
    U+FFFD (and a value is bounded), so the capture's encoder can always store it."""
    out: dict[str, str] = {}
    for name, value in headers.items():
        canonical = _CLEAN.get((name, value))
        if canonical is not None:  # seen before, nothing to redact in it
            shown = value
        else:
            canonical = "-".join(part.capitalize() for part in name.split("-"))
            if name.lower() in REDACTED_HEADERS:
                shown = "[REDACTED]"
            else:
                shown = safe_text(redact_text(value))
                if shown == value and len(value) <= _CLEAN_VALUE_LIMIT:
                    if len(_CLEAN) >= _CLEAN_LIMIT:
                        _CLEAN.clear()  # unique values (ids, lengths) churn; common ones return
                    _CLEAN[(name, value)] = canonical
        if canonical in out:
            continue
        if secrets and any(s and s in value for s in secrets):
            shown = "[REDACTED]"
        out[canonical] = shown
    return out


_CLEAN: dict[tuple[str, str], str] = {}
"""(name, value) → canonical name, for header values that came out of redaction unchanged:
the same `Content-Type`, `User-Agent` or `Host` arrives on every request, and redacting them
again was ~5% of a proxied request's CPU. Only values with nothing to redact are kept (no
credential pattern is held here); a configured key inside one is still checked on every call.
Bounded: at most `_CLEAN_LIMIT` values of at most `_CLEAN_VALUE_LIMIT` characters (~0.5 MiB)."""
_CLEAN_LIMIT = 1024
_CLEAN_VALUE_LIMIT = 256


@dataclass(eq=False)
class InflightEntry:
    id: str
    request_id: str
    model: str
    path: str
    method: str
    started_at: float
    raw_req_headers: Mapping[str, str]
    """The request's headers as received (aiohttp's read-only mapping, held while the request
    lives): never shown as they are, only through `req_headers`."""
    remote_ip: str
    metadata: dict[str, str] = field(default_factory=dict)
    raw_resp_headers: Mapping[str, str] | None = None
    """The upstream's response headers once they came (redacted only when shown)."""
    _req_headers: dict[str, str] | None = None
    _resp_headers: dict[str, str] | None = None
    resp_bytes: int = 0
    phase: str = "received"
    queue_position: int | None = None
    cancel: Callable[[], object] | None = None
    _progress_pending: asyncio.Handle | None = None
    _last_progress: float = 0.0

    @property
    def req_headers(self) -> dict[str, str]:
        """The request's headers redacted (credentials never leave), computed once when shown."""
        if self._req_headers is None:
            self._req_headers = redact_headers(self.raw_req_headers)
        return self._req_headers

    @property
    def resp_headers(self) -> dict[str, str]:
        """The response's headers redacted, computed once when shown (no listener, no cost)."""
        if self._resp_headers is None:
            if self.raw_resp_headers is None:
                return {}
            self._resp_headers = redact_headers(self.raw_resp_headers)
        return self._resp_headers

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "id": self.id,
            "request_id": self.request_id,
            "timestamp": datetime.fromtimestamp(self.started_at, UTC).isoformat(),
            "model": self.model,
            "req_path": self.path,
            "method": self.method,
            "req_headers": self.req_headers,
            "remote_ip": self.remote_ip,
            "resp_headers": self.resp_headers,
            "resp_bytes": self.resp_bytes,
            "elapsed_ms": int((time.time() - self.started_at) * 1000),
            "phase": self.phase,
        }
        if self.queue_position is not None:
            data["queue_position"] = self.queue_position
        if self.metadata:
            data["metadata"] = dict(self.metadata)
        return data


class InflightTracker:
    def __init__(self, progress_interval_ms: int = 250) -> None:
        self._entries: dict[str, InflightEntry] = {}
        self._counter = itertools.count(1)
        self._listeners: list[tuple[InflightListener, Callable[[], bool] | None]] = []
        self._progress_interval_s = progress_interval_ms / 1000

    def add_listener(
        self, listener: InflightListener, *, active: Callable[[], bool] | None = None
    ) -> None:
        """`listener` gets every change; `active` (when given) says whether it wants them now,
        so no message is built while every listener is idle."""
        self._listeners.append((listener, active))

    def begin(
        self,
        *,
        request_id: str,
        model: str,
        path: str,
        method: str,
        headers: Mapping[str, str],
        remote_ip: str,
        cancel: Callable[[], object] | None = None,
        metadata: Mapping[str, str] | None = None,
        phase: str | None = None,
    ) -> InflightEntry:
        """Track a request; its first publication already carries `metadata` and `phase`."""
        entry = InflightEntry(
            id=str(next(self._counter)),
            request_id=request_id,
            model=model,
            path=path,
            method=method,
            started_at=time.time(),
            raw_req_headers=headers,
            remote_ip=remote_ip,
            cancel=cancel,
        )
        entry.metadata.update(metadata or {})
        if phase is not None:
            entry.phase = phase
        self._entries[entry.id] = entry
        self._upsert(entry)
        return entry

    def set_phase(self, entry: InflightEntry, phase: str, position: int | None = None) -> None:
        if entry.phase == phase and entry.queue_position == position:
            return
        entry.phase = phase
        entry.queue_position = position
        self._upsert(entry)

    def response_started(self, entry: InflightEntry, headers: Mapping[str, str]) -> None:
        entry.raw_resp_headers = headers
        entry._resp_headers = None
        entry.phase = "running"
        self._upsert(entry)

    def add_bytes(self, entry: InflightEntry, count: int) -> None:
        entry.resp_bytes += count
        if entry._progress_pending is not None:
            return
        due = entry._last_progress + self._progress_interval_s - time.monotonic()
        if due <= 0:
            entry._last_progress = time.monotonic()
            self._upsert(entry)
            return
        entry._progress_pending = asyncio.get_running_loop().call_later(
            due, self._flush_progress, entry
        )

    def _flush_progress(self, entry: InflightEntry) -> None:
        entry._progress_pending = None
        if entry.id in self._entries:
            entry._last_progress = time.monotonic()
            self._upsert(entry)

    def finish(self, entry: InflightEntry) -> None:
        if entry._progress_pending is not None:
            entry._progress_pending.cancel()
            entry._progress_pending = None
        if self._entries.pop(entry.id, None) is not None and self._listening():
            self._publish({"operation": "remove", "id": entry.id})

    def cancel(self, entry_id: str) -> bool:
        """Abort a request (its upstream request too); False when no such entry exists."""
        entry = self._entries.get(entry_id)
        if entry is None or entry.cancel is None:
            return False
        entry.cancel()
        return True

    def snapshot(self) -> dict[str, Any]:
        requests = [e.to_json() for e in self._entries.values()]
        if not requests:
            return {"operation": "snapshot"}
        return {"operation": "snapshot", "requests": requests}

    def entries(self) -> list[InflightEntry]:
        return list(self._entries.values())

    def _upsert(self, entry: InflightEntry) -> None:
        if self._listening():
            self._publish({"operation": "upsert", "request": entry.to_json()})

    def _listening(self) -> bool:
        return any(active is None or active() for _, active in self._listeners)

    def _publish(self, message: dict[str, Any]) -> None:
        for listener, active in self._listeners:
            if active is None or active():
                listener(message)
