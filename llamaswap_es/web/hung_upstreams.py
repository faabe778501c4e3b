"""Ending the requests of an upstream declared hung, at once and with an error naming the model.

When the reducer's `StopProcess(reason="hung")` is committed, every forward still waiting on that
instance is told here (a run-loop listener, called right after the commit): it answers its
client 504 with llama-swap's envelope, or, when the response has already started, ends an event
stream with an SSE error frame. Left alone, those forwards would end only when the killed
process's sockets close, as an anonymous "connection lost" or, for a request still waiting for
headers, as an unreachable upstream that is sent again to the fresh instance.

The error names the model and says what the probes met (the `ProcessHung` input that caused the
stop, in the same committed batch). A forward registered just after the declaration (its
dispatch was already on its way) learns it at once from a short memory of hung instances.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Sequence

from llamaswap_es.core.reducer import HUNG
from llamaswap_es.events.types import Envelope, ProcessHung, StopProcess
from llamaswap_es.web.forwarder import ForwardAbort

HUNG_STATUS = 504
HUNG_CODE = "upstream_hung"
_REMEMBERED = 64
"""How many hung instances are remembered for forwards that register late."""

Instance = tuple[str, int]


def hung_message(model: str, report: ProcessHung | None) -> str:
    """The client's error: which model, what its probes met, and that a retry starts it again."""
    why = f": {report.error}" if report is not None else ""
    return (
        f'model "{model}" stopped responding and was declared hung{why}. It has been stopped; '
        "send the request again to start it anew"
    )


class HungUpstreams:
    """Forwards waiting per instance, and the instances declared hung (see the module doc)."""

    def __init__(self) -> None:
        self._waiting: dict[Instance, set[asyncio.Future[ForwardAbort]]] = {}
        self._declared: OrderedDict[Instance, ForwardAbort] = OrderedDict()

    def watch(self, model: str, instance: int) -> asyncio.Future[ForwardAbort]:
        """A future that resolves if this instance is declared hung; `release` it afterwards."""
        future: asyncio.Future[ForwardAbort] = asyncio.get_running_loop().create_future()
        declared = self._declared.get((model, instance))
        if declared is not None:
            future.set_result(declared)
        else:
            self._waiting.setdefault((model, instance), set()).add(future)
        return future

    def release(self, model: str, instance: int, future: asyncio.Future[ForwardAbort]) -> None:
        waiting = self._waiting.get((model, instance))
        if waiting is not None:
            waiting.discard(future)
            if not waiting:
                del self._waiting[(model, instance)]
        if not future.done():
            future.cancel()

    def on_committed(self, envelopes: Sequence[Envelope]) -> None:
        """Run-loop listener: end the forwards of each instance a committed batch stops as hung."""
        for envelope in envelopes:
            body = envelope.body
            if isinstance(body, StopProcess) and body.reason == HUNG:
                report = _cause(envelopes, envelope.cause)
                self.declare(body.model, body.instance, hung_message(body.model, report))

    def declare(self, model: str, instance: int, message: str) -> None:
        key = (model, instance)
        abort = ForwardAbort(status=HUNG_STATUS, message=message, code=HUNG_CODE)
        self._declared[key] = abort
        self._declared.move_to_end(key)
        while len(self._declared) > _REMEMBERED:
            self._declared.popitem(last=False)
        for future in self._waiting.pop(key, set()):
            if not future.done():
                future.set_result(abort)


def _cause(envelopes: Sequence[Envelope], seq: int | None) -> ProcessHung | None:
    """The `ProcessHung` input a decision came from (a decision is committed with its cause)."""
    for envelope in envelopes:
        if envelope.seq == seq and isinstance(envelope.body, ProcessHung):
            return envelope.body
    return None


__all__ = ["HUNG_CODE", "HUNG_STATUS", "HungUpstreams", "hung_message"]
