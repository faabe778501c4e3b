"""A proxied request's end, recorded once and the same way for local and peer requests.

However a request that met an upstream ends (answered, failed, its client gone, its handler
cancelled), three things happen exactly once, in this order: its capture is handed to the capture
store, which writes it in the background and before the database closes at shutdown (when one is
kept), its record goes to the run loop's inbox, and its in-flight entry is closed. The record is
`RequestFinished` for a local model (it frees the request's in-flight slot in the scheduler) and
`PeerRequestFinished` for a peer (history only); both are built here and nowhere else in `web/`.
The run loop builds one more `RequestFinished` itself, for a Dispatch whose handler has gone.

A request that never reached an upstream (refused, rejected, cancelled before its dispatch)
records nothing here: its end is the reducer's (`Reject`, `RequestCancelled`); `close` only ends
its in-flight entry.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping

from llamaswap_es.events.types import Event, PeerRequestFinished, RequestFinished
from llamaswap_es.projections.captures import CaptureRecorder
from llamaswap_es.projections.inflight import InflightEntry
from llamaswap_es.runtime.loop import LoopStoppedError
from llamaswap_es.web.boundary import recordable_event
from llamaswap_es.web.context import AppContext
from llamaswap_es.web.forwarder import ForwardResult

log = logging.getLogger("llamaswap_es.web.request_outcome")

RecordBuilder = Callable[[ForwardResult], Event]
"""What a request's end is recorded as, given what its forward reported."""

UNREPORTED_ERROR = "the request ended before its forward reported"

PEER_PROXY_ERROR = "peer proxy error"


class RequestOutcome:
    """One request's capture, record and in-flight entry, each ended exactly once."""

    def __init__(
        self,
        ctx: AppContext,
        entry: InflightEntry,
        record: RecordBuilder,
    ) -> None:
        self._ctx = ctx
        self.entry = entry
        self._record = record
        self.capture: CaptureRecorder | None = None
        self.recorded = False
        self._closed = False

    def keep_capture(
        self, request_id: str, path: str, headers: Mapping[str, str], body: bytes | None
    ) -> None:
        """Start the request's capture (once; when captures are kept for it): `headers` are
        those the upstream receives (credentials are redacted by the recorder)."""
        if self.capture is not None or self._ctx.projections is None:
            return
        self.capture = self._ctx.projections.captures.recorder(request_id, path)
        if self.capture is not None:
            self.capture.request(headers, body)

    def tap(self, chunk: bytes) -> None:
        """A response body chunk went to the client: count it, and capture it."""
        self._ctx.inflight.add_bytes(self.entry, len(chunk))
        if self.capture is not None:
            self.capture.tap(chunk)

    def finish(self, result: ForwardResult) -> None:
        """The forward ended: store the capture, submit the record, close the entry (once).

        Runs in `forward`'s `on_finished`, also when the handler was cancelled: nothing here
        awaits (the capture is stored in the background)."""
        if self.recorded:
            return
        self.recorded = True
        if self.capture is not None:
            _finish_capture(self.capture, result)
        event = recordable_event(self._record(result))
        loop = self._ctx.service.door
        try:
            if loop is None:
                raise LoopStoppedError("the server has no run loop")
            loop.submit(event)
        except LoopStoppedError:  # the answer went out; only its record is lost
            log.warning("%s %s not recorded: the run loop has stopped", event.type_name, event.key)
        self.close()

    def finish_unreported(self) -> None:
        """Every forward that began ends in the log, whatever happened to it (otherwise a local
        request's in-flight slot would never be released and its model never evicted)."""
        if not self.recorded:
            self.finish(
                ForwardResult(
                    status=499, bytes_out=0, duration_ms=0, ttfb_ms=None, error=UNREPORTED_ERROR
                )
            )

    def close(self) -> None:
        """End the in-flight entry, without a record of our own."""
        if self._closed:
            return
        self._closed = True
        self._ctx.inflight.finish(self.entry)


def local_record(request_id: str, model: str, path: str) -> RecordBuilder:
    """`RequestFinished` for a request dispatched to a local model."""

    def build(result: ForwardResult) -> Event:
        return RequestFinished(
            request_id=request_id,
            model=model,
            status=result.status,
            duration_ms=result.duration_ms,
            bytes_out=result.bytes_out,
            error=result.error,
            metrics=result.metrics,
            content_type=result.content_type,
            ttfb_ms=result.ttfb_ms or 0,
            path=path,
        )

    return build


def peer_record(
    *,
    request_id: str,
    model: str,
    peer: str,
    path: str,
    method: str,
    stream: bool,
    received_ms: int,
    metadata: Mapping[str, str] | None,
) -> RecordBuilder:
    """`PeerRequestFinished` for a request served by a peer; a failure to reach the peer is
    llama-swap's "peer proxy error"."""

    def build(result: ForwardResult) -> Event:
        error = result.error
        if error and result.status == 502 and not result.response_headers:
            error = f"{PEER_PROXY_ERROR}: {error}"
        return PeerRequestFinished(
            request_id=request_id,
            model=model,
            peer=peer,
            path=path,
            method=method,
            stream=stream,
            status=result.status,
            received_ms=received_ms,
            duration_ms=result.duration_ms,
            ttfb_ms=result.ttfb_ms or 0,
            bytes_out=result.bytes_out,
            error=error,
            metrics=result.metrics,
            content_type=result.content_type,
            metadata=dict(metadata or {}),
        )

    return build


def _finish_capture(recorder: CaptureRecorder, result: ForwardResult) -> None:
    """Give the recorder the response headers and have the store write the capture in the
    background (it holds the task until written, also through a shutdown)."""
    recorder.response_headers(result.response_headers)
    recorder.finish_later(result.status)
