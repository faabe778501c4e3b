"""Asking the scheduler which target a selector's request goes to, and waiting for its answer.

The choice is the reducer's (`core.selectors`), so it is in the log: the handler submits
`SelectorRequested` under the request's id and waits for the committed `SelectorChose` (or a
`Reject`). Then it rewrites the request to the chosen target (whose filters apply) and serves it
under the same id, as a request for that target: a local one through the scheduler (its
`RequestReceived` takes the reservation over), a peer's one by forwarding. A choice that did not
become a local request is ended with `SelectionEnded` (`end_unscheduled`), so the target's
reservation is released; that is the only bookkeeping left here.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass

from llamaswap_es.errors import LogUnavailableError, StoreOverloadedError
from llamaswap_es.events.types import (
    Envelope,
    InputRefused,
    Reject,
    SelectionEnded,
    SelectorChose,
    SelectorRequested,
)
from llamaswap_es.runtime.loop import RETRY_AFTER_S, LoopStoppedError
from llamaswap_es.runtime.scheduler_door import SchedulerDoor
from llamaswap_es.web.boundary import recordable_event
from llamaswap_es.web.errors import RequestError

log = logging.getLogger("llamaswap_es.web.selector_choice")

LOOP_CHECK_S = 1.0
"""How often a wait for a choice looks whether the run loop died (no answer would come)."""


class SelectorChoices:
    """Run-loop listener: hands each committed choice (or refusal) to the handler waiting on it."""

    def __init__(self) -> None:
        self._waiting: dict[str, asyncio.Future[SelectorChose | Reject]] = {}
        self._selectors: dict[str, str] = {}

    def expect(self, request_id: str, selector: str) -> asyncio.Future[SelectorChose | Reject]:
        future: asyncio.Future[SelectorChose | Reject] = asyncio.get_running_loop().create_future()
        self._waiting[request_id] = future
        self._selectors[request_id] = selector
        return future

    def refuse_waiting(self, cause: str) -> None:
        """The log has not been writable for a while and the loop answers its waiting requests
        503: answer the choices still waiting alike (`RunLoop.add_refusal_listener`)."""
        for request_id, future in list(self._waiting.items()):
            if future.done():
                continue
            selector = self._selectors.get(request_id, "")
            future.set_exception(
                LogUnavailableError(
                    f"request {request_id} for selector {selector!r} was refused: the event log "
                    f"cannot be written ({cause})",
                    retry_after_s=RETRY_AFTER_S,
                )
            )

    def forget(self, request_id: str) -> None:
        self._selectors.pop(request_id, None)
        future = self._waiting.pop(request_id, None)
        if future is not None and not future.done():
            future.cancel()

    def on_committed(self, envelopes: Sequence[Envelope]) -> None:
        if not self._waiting:
            return
        for envelope in envelopes:
            body = envelope.body
            if isinstance(body, SelectorChose | Reject):
                future = self._waiting.pop(body.request_id, None)
                if future is not None and not future.done():
                    future.set_result(body)
            elif isinstance(body, InputRefused) and body.input_type == "SelectorRequested":
                future = self._waiting.pop(body.key or "", None)
                if future is not None and not future.done():
                    status = 400 if body.stage == "encode" else 500
                    future.set_exception(
                        RequestError(status, f"the selector request was refused: {body.error}")
                    )

    @property
    def waiting(self) -> int:
        return len(self._waiting)


@dataclass(frozen=True, slots=True)
class Choice:
    target: str
    """The name to send the request on with (its filters apply)."""
    model: str
    """The local model it runs, "" for a peer's model."""


async def choose(
    loop: SchedulerDoor,
    choices: SelectorChoices,
    request_id: str,
    selector: str,
    *,
    path: str,
    method: str,
) -> Choice | Reject:
    """The scheduler's choice for this request (or its Reject).

    Raises what `SchedulerDoor.check_capacity` raises while new work is refused, `RequestError` when
    the input itself was refused, and `LoopStoppedError` when the loop died meanwhile. A handler
    cancelled while waiting ends the choice that may still come (`SelectionEnded`)."""
    loop.check_capacity(f"request {request_id} for selector {selector!r}")
    future = choices.expect(request_id, selector)
    submitted = False
    try:
        asked = SelectorRequested(
            request_id=request_id, selector=selector, path=path, method=method
        )
        loop.submit(recordable_event(asked))
        submitted = True
        while not future.done():
            await asyncio.wait({future}, timeout=LOOP_CHECK_S)
            if not future.done() and loop.fatal_error is not None:
                raise LoopStoppedError("the scheduler stopped after an internal error")
        answer = future.result()
    except asyncio.CancelledError:
        if submitted:
            end_unscheduled(loop, request_id, "client_gone")
        raise
    except LogUnavailableError:  # answered 503 while its SelectorRequested waits to be written
        if submitted:
            end_unscheduled(loop, request_id, "log_unavailable")
        raise
    finally:
        choices.forget(request_id)
    if isinstance(answer, Reject):
        return answer
    return Choice(target=answer.target, model=answer.model)


def end_unscheduled(loop: SchedulerDoor, request_id: str, reason: str) -> None:
    """Release the reservation of a choice that did not become a local request."""
    with contextlib.suppress(LoopStoppedError, LogUnavailableError, StoreOverloadedError):
        loop.submit(recordable_event(SelectionEnded(request_id=request_id, reason=reason)))
        return
    log.warning("the end of selector choice %s was not recorded: the run loop stopped", request_id)
