"""The one door between HTTP and the scheduler: everything `web/` may do with the run loop.

A handler submits an input (a fact, or a request or a selector's request that waits for its
answer on a ticket), hands a request back when its grant could not be reached, gives up on a
ticket when its client left, ends a selector's choice that did not become a local request,
asks whether new work is admitted, and reads what was committed (the view after each commit, and
the committed envelopes through a listener). It never sees the live reducer state, the store or
the executor: the Dispatch carries the address to serve at. `RunLoop` is the one implementation;
`SwapService.door` hands it out under this type, so the type checker holds web/ to this surface
(and tests/test_architecture.py refuses `RunLoop` or `service.loop` in web/).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

from llamaswap_es.core.views import SchedulerView
from llamaswap_es.events.types import (
    DispatchUnreachable,
    Envelope,
    Event,
    RequestReceived,
    SelectorRequested,
)
from llamaswap_es.runtime.loop import RequestTicket, SelectorTicket


class SchedulerDoor(Protocol):
    def submit(self, event: Event) -> None:
        """Queue a fact (a request's end, a selector's choice ending, an operator's command)."""
        ...

    def submit_request(self, received: RequestReceived) -> RequestTicket:
        """Queue a request; its ticket resolves with the reducer's Dispatch or Reject."""
        ...

    def submit_selector(self, asked: SelectorRequested) -> SelectorTicket:
        """Queue a selector's request; its ticket resolves with the SelectorChose or Reject."""
        ...

    def end_selection(self, ticket: SelectorTicket, reason: str) -> None:
        """Done with a choice: release its reservation unless it became a local request."""
        ...

    def take_back(self, ticket: RequestTicket, unreachable: DispatchUnreachable) -> None:
        """The granted instance could not be reached: wait on the same ticket again."""
        ...

    def abandon_ticket(self, ticket: RequestTicket, cancelled_event: Event) -> None:
        """The client left before its decision."""
        ...

    def check_capacity(self, what: str) -> None:
        """Raise what `submit_request` would raise while new client work is refused."""
        ...

    def add_listener(self, listener: Callable[[Sequence[Envelope]], None]) -> None:
        """Be told each committed batch (must not block)."""
        ...

    async def flush(self) -> None:
        """Wait until everything submitted so far is committed and acted on."""
        ...

    @property
    def view(self) -> SchedulerView:
        """The scheduler as of the last commit: the only state a handler reads."""
        ...

    @property
    def fatal_error(self) -> BaseException | None:
        """Why the loop stopped for good (the server is exiting for its supervisor), or None."""
        ...
