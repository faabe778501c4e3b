"""The run loop: the only writer of the log and the only owner of the scheduler state.

Each turn drains everything waiting in the inbox and, for each input in order,
  1. stamps it with its seq (the loop is the only writer, so seqs are known in advance),
  2. reduces it: `reduce(state, envelope) -> (state, decisions)`,
  3. appends the input and its decisions (each decision's `cause` is the input's seq),
then commits the whole batch in one transaction (group commit), and only then acts: resolves
waiting requests, hands process and timer commands to the actuator, publishes to projections.
Write-ahead: nothing is acted on before it is in the log.

Handlers and the executor never touch the state: they `submit` events and await results.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from llamaswap_es.errors import StoreError, StoreOverloadedError
from llamaswap_es.events.types import (
    Decision,
    Dispatch,
    Envelope,
    Event,
    QueuePositions,
    Reject,
    RequestCancelled,
    RequestFinished,
    RequestReceived,
)
from llamaswap_es.runtime.clock import Clock

log = logging.getLogger("llamaswap_es.runtime.loop")

Reducer = Callable[[Any, Envelope], tuple[Any, list[Decision]]]
Listener = Callable[[Sequence[Envelope]], None]


class LogWriter(Protocol):
    """What the loop needs of the event store."""

    @property
    def boot_id(self) -> str: ...

    async def append_batch(self, envelopes: Sequence[Envelope]) -> list[int]: ...

    async def last_seq(self) -> int: ...


class Actuator(Protocol):
    """Carries out process and timer commands (StartProcess, StopProcess, SetTimer …)."""

    def apply(self, decision: Decision) -> None: ...


class LoopStoppedError(RuntimeError):
    """The loop is not running (shutting down, or stopped after a fatal error)."""


@dataclass(eq=False)
class RequestTicket:
    """A handler's view of its request while the scheduler decides about it."""

    request_id: str
    model: str
    decision: asyncio.Future[Dispatch | Reject]
    position: int | None = None
    position_changed: asyncio.Event = field(default_factory=asyncio.Event)
    admitted: asyncio.Event = field(default_factory=asyncio.Event)
    """Set once the scheduler has taken the request in (admission passed: no 404/429 yet)."""
    client_gone: bool = False


@dataclass(frozen=True, slots=True)
class _Input:
    body: Event
    ts_ms: int


class RunLoop:
    def __init__(
        self,
        store: LogWriter,
        *,
        reduce: Reducer,
        state: Any,
        clock: Clock,
        actuator: Actuator,
        max_pending_requests: int = 10_000,
        max_batch: int = 2_000,
        retry_delays_s: Sequence[float] = (0.05, 0.2, 1.0, 2.0, 5.0),
    ) -> None:
        self._store = store
        self._reduce = reduce
        self._state = state
        self._clock = clock
        self._actuator = actuator
        self._max_pending_requests = max_pending_requests
        self._max_batch = max_batch
        self._retry_delays_s = tuple(retry_delays_s)
        self._inbox: deque[_Input] = deque()
        self._wakeup = asyncio.Event()
        self._tickets: dict[str, RequestTicket] = {}
        self._listeners: list[Listener] = []
        self._next_seq = 0
        self._task: asyncio.Task[None] | None = None
        self._accepting = False
        self._fatal: BaseException | None = None
        self._idle = asyncio.Event()
        self._idle.set()

    # ------------------------------------------------------------------ life cycle

    async def start(self) -> None:
        self._next_seq = await self._store.last_seq() + 1
        self._accepting = True
        self._task = asyncio.create_task(self._run(), name="llamaswap-es run loop")

    async def stop(self) -> None:
        """Process what is already in the inbox, then end the loop."""
        self._accepting = False
        await self.flush()
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None
        for ticket in self._tickets.values():
            if not ticket.decision.done():
                ticket.decision.set_exception(LoopStoppedError("the server is shutting down"))
        self._tickets.clear()

    async def flush(self) -> None:
        """Wait until everything submitted so far is committed and acted on."""
        while self._task is not None and not self._task.done() and not self._idle.is_set():
            await self._idle.wait()
        if self._fatal is not None:
            raise LoopStoppedError("the run loop stopped after a fatal error") from self._fatal

    @property
    def state(self) -> Any:
        """The scheduler state, read-only for callers (views for /running, the queue …)."""
        return self._state

    @property
    def waiting_requests(self) -> int:
        """Requests registered and not yet answered (their handlers wait on a decision)."""
        return len(self._tickets)

    @property
    def fatal_error(self) -> BaseException | None:
        return self._fatal

    def add_listener(self, listener: Listener) -> None:
        """Call `listener(envelopes)` after each committed batch (must not block)."""
        self._listeners.append(listener)

    # ------------------------------------------------------------------ submitting

    def submit(self, event: Event) -> None:
        """Queue a fact for the reducer. Internal facts (processes, timers) are never refused."""
        if self._fatal is not None:
            raise LoopStoppedError("the run loop stopped after a fatal error") from self._fatal
        self._inbox.append(_Input(event, self._clock.now_ms()))
        self._idle.clear()
        self._wakeup.set()

    def submit_request(self, received: RequestReceived) -> RequestTicket:
        """Register a request and queue it; the ticket's future resolves with Dispatch or Reject.

        Raises StoreOverloadedError when too many inputs are waiting (the caller answers 503),
        and LoopStoppedError when the server no longer accepts requests.
        """
        self.check_capacity(f"request {received.request_id} for model {received.model!r}")
        future: asyncio.Future[Dispatch | Reject] = asyncio.get_running_loop().create_future()
        ticket = RequestTicket(received.request_id, received.model, future)
        self._tickets[received.request_id] = ticket
        self.submit(received)
        return ticket

    def check_capacity(self, what: str) -> None:
        """Refuse new client work as `submit_request` does, for work that needs no decision but
        will be recorded (a peer request): LoopStoppedError while shutting down,
        StoreOverloadedError when too many inputs are waiting (`what` names the refused work)."""
        if not self._accepting:
            raise LoopStoppedError("the server is shutting down")
        if len(self._inbox) >= self._max_pending_requests:
            raise StoreOverloadedError(
                f"{len(self._inbox)} events are waiting to be written; {what} was refused"
            )

    def stop_accepting(self) -> None:
        self._accepting = False

    # ------------------------------------------------------------------ the loop

    async def _run(self) -> None:
        try:
            while True:
                if not self._inbox:
                    self._idle.set()
                    self._wakeup.clear()
                    await self._wakeup.wait()
                    continue
                batch = [
                    self._inbox.popleft() for _ in range(min(self._max_batch, len(self._inbox)))
                ]
                envelopes = self._reduce_batch(batch)
                await self._commit(envelopes)
                self._act(envelopes)
        except asyncio.CancelledError:
            raise
        except BaseException as exc:  # a reducer bug or a store that cannot be written
            self._fatal = exc
            self._accepting = False
            log.critical("run loop stopped: %r", exc, exc_info=exc)
            for ticket in self._tickets.values():
                if not ticket.decision.done():
                    ticket.decision.set_exception(
                        LoopStoppedError("the scheduler stopped after an internal error")
                    )
            self._idle.set()

    def _reduce_batch(self, batch: list[_Input]) -> list[Envelope]:
        boot = self._store.boot_id
        envelopes: list[Envelope] = []
        seq = self._next_seq
        for item in batch:
            source = Envelope(body=item.body, ts_ms=item.ts_ms, boot=boot, seq=seq)
            envelopes.append(source)
            seq += 1
            self._state, decisions = self._reduce(self._state, source)
            for decision in decisions:
                envelopes.append(
                    Envelope(body=decision, ts_ms=item.ts_ms, boot=boot, seq=seq, cause=source.seq)
                )
                seq += 1
        return envelopes

    async def _commit(self, envelopes: list[Envelope]) -> None:
        """Append the batch in one transaction, retrying a failing disk before giving up."""
        attempt = 0
        while True:
            try:
                seqs = await self._store.append_batch(envelopes)
                break
            except StoreOverloadedError:
                raise
            except StoreError as exc:
                if attempt >= len(self._retry_delays_s):
                    raise
                log.error(
                    "could not write %d events to the log (attempt %d): %s; retrying",
                    len(envelopes),
                    attempt + 1,
                    exc,
                )
                await asyncio.sleep(self._retry_delays_s[attempt])
                attempt += 1
        expected = [e.seq for e in envelopes]
        if seqs != expected:
            raise StoreError(
                f"the log assigned seqs {seqs[:1]}…{seqs[-1:]} but the run loop expected "
                f"{expected[:1]}…{expected[-1:]}: another writer is using this log"
            )
        self._next_seq = expected[-1] + 1 if expected else self._next_seq

    def _act(self, envelopes: list[Envelope]) -> None:
        for envelope in envelopes:
            body = envelope.body
            if isinstance(body, RequestReceived):
                ticket = self._tickets.get(body.request_id)
                if ticket is not None:
                    ticket.admitted.set()
            elif isinstance(body, Dispatch | Reject):
                self._answer(body)
            elif isinstance(body, RequestCancelled):
                # Acted on in log order: a Dispatch decided before the cancel has already taken
                # the ticket; otherwise no decision will ever come for it.
                ticket = self._tickets.get(body.request_id)
                if ticket is not None and ticket.client_gone:
                    del self._tickets[body.request_id]
            elif isinstance(body, QueuePositions):
                self._tell_positions(body.positions)
            elif isinstance(body, Decision):
                try:
                    self._actuator.apply(body)
                except Exception:  # the actuator reports failures as events; never stop here
                    log.exception("could not carry out %s (seq %d)", body.type_name, envelope.seq)
        for listener in self._listeners:
            try:
                listener(envelopes)
            except Exception:
                log.exception(
                    "a log listener failed on seqs %d..%d", envelopes[0].seq, envelopes[-1].seq
                )

    def _answer(self, decision: Dispatch | Reject) -> None:
        ticket = self._tickets.pop(decision.request_id, None)
        if ticket is not None and not ticket.client_gone and not ticket.decision.done():
            ticket.decision.set_result(decision)
        elif isinstance(decision, Dispatch):
            self._finish_unclaimed(decision)

    def _finish_unclaimed(self, dispatch: Dispatch) -> None:
        """A dispatch whose client already left: end it at once so in-flight counts stay exact."""
        self.submit(
            RequestFinished(
                request_id=dispatch.request_id,
                model=dispatch.model,
                status=499,
                error="the client left before its request was dispatched",
            )
        )

    def _tell_positions(self, positions: dict[str, int]) -> None:
        for request_id, position in positions.items():
            ticket = self._tickets.get(request_id)
            if ticket is not None and ticket.position != position:
                ticket.position = position
                ticket.position_changed.set()

    def abandon_ticket(self, ticket: RequestTicket, cancelled_event: Event) -> None:
        """The handler's client left before a decision: tell the reducer, keep the ticket so a
        Dispatch that is already on its way is finished at once instead of leaking in flight."""
        ticket.client_gone = True
        self.submit(cancelled_event)
