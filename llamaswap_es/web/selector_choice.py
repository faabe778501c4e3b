"""Asking the scheduler which target a selector's request goes to, and waiting for its answer.

The choice is the reducer's (`core.selectors`), so it is in the log: the handler submits
`SelectorRequested` under the request's id and waits on its ticket (`SchedulerDoor.
submit_selector`) for the committed `SelectorChose` (or a `Reject`). Then it rewrites the request
to the chosen target (whose filters apply) and serves it under the same id, as a request for that
target: a local one through the scheduler (its `RequestReceived` takes the reservation over), a
peer's one by forwarding. The run loop answers the ticket as it answers a request's (refused
input, log unwritable, stop, a dead loop) and knows whether the choice was handed over to a
request, so the handler's end of a choice (`release`) is one call whatever happened.
"""

from __future__ import annotations

import asyncio

from llamaswap_es.events.types import Reject, SelectorChose, SelectorRequested
from llamaswap_es.runtime.loop import SelectorTicket
from llamaswap_es.runtime.scheduler_door import SchedulerDoor
from llamaswap_es.web.boundary import recordable_event


async def choose(
    door: SchedulerDoor, request_id: str, selector: str, *, path: str, method: str
) -> tuple[SelectorTicket, SelectorChose | Reject]:
    """The scheduler's choice for this request (or its Reject), with the ticket to `release`.

    Raises what `SchedulerDoor.submit_selector` raises while new work is refused, and what its
    ticket fails with: `InputRefusedError` (this input alone was refused), `LogUnavailableError`
    (refused while waiting), `LoopStoppedError` (the loop stopped or died meanwhile); the loop
    has then ended the choice itself. A handler cancelled while waiting ends the choice that may
    still come (`SelectionEnded` reason `client_gone`)."""
    asked = SelectorRequested(request_id=request_id, selector=selector, path=path, method=method)
    ticket = door.submit_selector(recordable_event(asked))
    try:  # shielded: a cancelled handler must not cancel the answer the loop may be setting
        answer = await asyncio.shield(ticket.choice)
    except asyncio.CancelledError:
        door.end_selection(ticket, "client_gone")
        raise
    return ticket, answer


def release(door: SchedulerDoor, ticket: SelectorTicket, chose: SelectorChose) -> None:
    """The handler is done with its chosen target: release the reservation unless the choice
    became a local request (the loop knows: it then ends with that request, however it ends)."""
    door.end_selection(ticket, "served_by_peer" if not chose.model else "not_scheduled")
