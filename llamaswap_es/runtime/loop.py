"""The run loop: the only writer of the log and the only owner of the scheduler state.

Each turn drains everything waiting in the inbox and, for each input in order,
  1. stamps it with its seq: the loop is the log's only producer on a running server, so it
     assigns every seq itself, once, counting on from the log's last seq at start,
  2. encodes it, reduces it: `reduce(state, envelope) -> (state, decisions)`, encodes the decisions,
then hands the numbered batch to the store's writer thread (`commit_rows`, one transaction), and
only then acts: resolves waiting requests, hands process and timer commands to the actuator,
publishes to projections. Write-ahead: nothing is acted on before it is in the log.

This is the only write pipeline (there is no second queue in the store): inputs that arrive while
a commit is in flight wait in the inbox and form the next batch, which is what group commit is;
the inbox's bound (`max_pending_requests`) is the back-pressure. `ServerStarted` is an input like
any other: the service passes it to `start(first=...)`, ahead of anything else of the boot.

Fault containment (ARCHITECTURE §11, docs/architecture.md "Failure modes"):
* An input that cannot be encoded is refused alone: a request gets 400 naming the field, an
  internal fact is repaired (`made_encodable`) and recorded; `InputRefused` takes its place.
* If the reducer raises on a request, load or unload, that input alone is refused (500, recorded
  as `InputRefused`), the batch before it commits, and the state is rebuilt from the committed log,
  so the loop goes on from exactly what a replay gives. On any other input (a process or timer
  fact, whose loss would leave the state out of step with the world), or when failures repeat,
  the loop stops: `/health` turns 503 and the server exits non-zero for its supervisor.
* A log that cannot be written (disk full, I/O error, read-only) degrades the loop instead of
  ending it: the batch is retried with backoff for as long as it takes, new requests are refused
  with 503, waiting ones are answered 503 after a second, and the loop heals when a write succeeds.

Every client input that waits for an answer holds a ticket, answered here and only here: a
request (`RequestTicket`: its Dispatch or Reject) and a selector's request (`SelectorTicket`: its
SelectorChose or Reject, then the target's reservation until the request goes on). Each is
answered alike when its input is refused, when waiting requests are refused because the log
cannot be written, when the loop stops and when it dies.

Handlers and the executor never touch the state: they `submit` events and await results.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from llamaswap_es.errors import (
    InputRefusedError,
    LogUnavailableError,
    StoreError,
    StoreOverloadedError,
)
from llamaswap_es.events.encodable import made_encodable, safe_text, unencodable_field
from llamaswap_es.events.rows import Row, encode_envelopes
from llamaswap_es.events.types import (
    Decision,
    Dispatch,
    DispatchUnreachable,
    Envelope,
    Event,
    InputRefused,
    LoadRequested,
    Reject,
    RequestCancelled,
    RequestFinished,
    RequestReceived,
    SelectionEnded,
    SelectorChose,
    SelectorRequested,
    UnloadRequested,
)
from llamaswap_es.runtime.clock import Clock
from llamaswap_es.runtime.loop_health import HEARTBEAT_S, LoopHealth

log = logging.getLogger("llamaswap_es.runtime.loop")

Reducer = Callable[[Any, Envelope], tuple[Any, list[Decision]]]
Listener = Callable[[Sequence[Envelope]], None]
StateRebuilder = Callable[[], Awaitable[Any]]
Viewer = Callable[[Any], Any]
FatalHandler = Callable[[BaseException], None]

CONTAINED_INPUTS: tuple[type[Event], ...] = (
    RequestReceived,
    LoadRequested,
    UnloadRequested,
    SelectorRequested,
)
"""Inputs whose refusal leaves nothing behind: a reducer failure on one of them is contained.
Any other input (a process, timer or finished-request fact) is part of the world the state must
follow, so a failure on it stops the loop rather than go on with a state that misses it."""

MAX_REDUCER_FAILURES = 5
REDUCER_FAILURE_WINDOW_S = 60.0
"""More contained reducer failures than this within the window stop the loop: a scheduler that
fails this often is not to be trusted, and each failure costs a replay of the log."""

REFUSE_WAITERS_AFTER_S = 1.0
"""How long waiting requests are held while the log cannot be written before they get 503."""
RETRY_AFTER_S = 5
"""The `Retry-After` given to requests refused while the log cannot be written."""
STILL_FAILING_LOG_EVERY_S = 30.0


class BatchCommitter(Protocol):
    """What the loop needs of the event store: where to count seqs from, and the writer."""

    @property
    def boot_id(self) -> str: ...

    async def last_seq(self) -> int: ...

    async def commit_rows(self, rows: Sequence[Row]) -> None:
        """Write the numbered rows in one transaction; `StoreError` on a storage fault."""
        ...


class Actuator(Protocol):
    """Carries out process and timer commands (StartProcess, StopProcess, SetTimer …)."""

    def apply(self, decision: Decision) -> None: ...


class LoopStoppedError(RuntimeError):
    """The loop is not running (shutting down, or stopped after a fatal error)."""


class _GaveUp(Exception):
    """The loop was stopped while the log could not be written: the batch is dropped unacted."""


@dataclass(eq=False)
class RequestTicket:
    """A handler's view of its request while the scheduler decides about it."""

    request_id: str
    model: str
    decision: asyncio.Future[Dispatch | Reject]
    position: int | None = None
    """Its 1-based place in the queue as last committed (None: not queued)."""
    phase: str | None = None
    """`queued` or `waiting` (on a swap) as last committed; None before, or once dispatched."""
    on_change: Callable[[RequestTicket], None] | None = None
    """Called in the commit that moved the waiting request or changed its phase (the handler's
    loading stream and in-flight entry follow it): a call, not a wake-up, because one dispatch
    moves every queued request and a deep queue's handlers woke by the hundred per commit."""
    admitted: asyncio.Event = field(default_factory=asyncio.Event)
    """Set once the scheduler has taken the request in (admission passed: no 404/429 yet), or
    once its first decision has come, whichever is first."""
    client_gone: bool = False
    gone_status: int = 499
    gone_reason: str = "the client left before its request was dispatched"
    """How a Dispatch that arrives after the handler stopped waiting is finished in the log."""


@dataclass(eq=False)
class SelectorTicket:
    """A handler's view of its selector request: the scheduler's choice, then the reservation
    the choice holds on its target until the request goes on.

    The loop holds the ticket from `submit_selector` until the reservation is no longer the
    handler's to end: the choice was a Reject (none was held), the request was submitted under
    the same id (`handed_over`: its `RequestReceived` takes the reservation over, or, refused,
    the loop ends it), or the choice was ended (`end_selection`, or the loop's own refusal)."""

    request_id: str
    selector: str
    choice: asyncio.Future[SelectorChose | Reject]
    handed_over: bool = False
    """A request under this id was submitted: it ends the reservation, not the handler."""


@dataclass(frozen=True, slots=True)
class _Input:
    body: Event
    ts_ms: int


@dataclass(slots=True)
class _Turn:
    """One batch after reducing: what to commit, and the input the reducer failed on (if any)."""

    envelopes: list[Envelope] = field(default_factory=list)
    rows: list[Row] = field(default_factory=list)
    failed: _Input | None = None
    error: BaseException | None = None
    rest: list[_Input] = field(default_factory=list)


class RunLoop:
    def __init__(
        self,
        store: BatchCommitter,
        *,
        reduce: Reducer,
        state: Any,
        clock: Clock,
        actuator: Actuator,
        rebuild_state: StateRebuilder | None = None,
        on_fatal: FatalHandler | None = None,
        health: LoopHealth | None = None,
        view: Viewer | None = None,
        max_pending_requests: int = 10_000,
        max_batch: int = 2_000,
        retry_delays_s: Sequence[float] = (0.05, 0.1, 0.2, 0.5, 1.0),
    ) -> None:
        self._store = store
        self._reduce = reduce
        self._state = state
        self._clock = clock
        self._actuator = actuator
        self._rebuild_state = rebuild_state
        self._on_fatal = on_fatal
        self.health = health or LoopHealth()
        self._viewer = view
        self._view: Any = view(state) if view is not None else None
        self._max_pending_requests = max_pending_requests
        self._max_batch = max_batch
        self._retry_delays_s = tuple(retry_delays_s) or (1.0,)
        self._inbox: deque[_Input] = deque()
        self._wakeup = asyncio.Event()
        self._tickets: dict[str, RequestTicket] = {}
        self._selections: dict[str, SelectorTicket] = {}
        self._listeners: list[Listener] = []
        self._next_seq = 0
        """The seq the next input gets: assigned here and nowhere else (the writer only checks
        that a batch continues the log)."""
        self._task: asyncio.Task[None] | None = None
        self._accepting = False
        self._stopping = False
        self._fatal: BaseException | None = None
        self._reducer_failures: deque[float] = deque()
        self._idle = asyncio.Event()
        self._idle.set()

    # ------------------------------------------------------------------ life cycle

    async def start(self, first: Event | None = None) -> None:
        """Count seqs on from the log's last one and start turning.

        `first` (the boot's `ServerStarted`) is recorded before any other input, even one
        submitted before the start, so each boot's events follow its own record in the log.
        """
        self._next_seq = await self._store.last_seq() + 1
        if first is not None:
            self._inbox.appendleft(_Input(first, self._clock.now_ms()))
            self._idle.clear()
        self._accepting = True
        self.health.beat()
        self._task = asyncio.create_task(self._run(), name="llamaswap-es run loop")

    async def stop(self) -> None:
        """Process what is already in the inbox, then end the loop.

        While the log cannot be written the batch in hand is retried until its next failure and
        then dropped: it was never acted on, so nothing anyone was told is lost.
        """
        self._accepting = False
        self._stopping = True
        if self._task is not None and not self._task.done():
            while not self._idle.is_set():
                await self._idle.wait()
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None
        self.health.stopped()
        self._answer_all_waiting("the server is shutting down")
        self._tickets.clear()
        self._selections.clear()  # a new boot forgets every choice (`core.selectors`)

    async def flush(self) -> None:
        """Wait until everything submitted so far is committed and acted on."""
        while self._task is not None and not self._task.done() and not self._idle.is_set():
            await self._idle.wait()
        if self._fatal is not None:
            raise LoopStoppedError("the run loop stopped after a fatal error") from self._fatal

    @property
    def state(self) -> Any:
        """The live scheduler state: for the loop's own step and the snapshot taken between
        batches. It runs ahead of the log while a batch is written: read `view` instead."""
        return self._state

    @property
    def view(self) -> Any:
        """What the state was after the last committed batch (`view(state)` taken then): the
        only thing handlers, pages and projections read (ARCHITECTURE §11.5)."""
        return self._view

    @property
    def waiting_requests(self) -> int:
        """Requests registered and not yet answered (their handlers wait on a decision)."""
        return len(self._tickets)

    @property
    def fatal_error(self) -> BaseException | None:
        return self._fatal

    @property
    def pending_inputs(self) -> int:
        """Inputs submitted and not yet taken into a batch."""
        return len(self._inbox)

    def add_listener(self, listener: Listener) -> None:
        """Call `listener(envelopes)` after each committed batch (must not block)."""
        self._listeners.append(listener)

    # ------------------------------------------------------------------ submitting

    def submit(self, event: Event) -> None:
        """Queue a fact for the reducer. Internal facts (processes, timers) are never refused,
        not even while the log cannot be written: they are bounded by the work already admitted."""
        if self._fatal is not None:
            raise LoopStoppedError("the run loop stopped after a fatal error") from self._fatal
        self._inbox.append(_Input(event, self._clock.now_ms()))
        self._idle.clear()
        self._wakeup.set()

    def submit_request(self, received: RequestReceived) -> RequestTicket:
        """Register a request and queue it; the ticket's future resolves with Dispatch or Reject.

        Raises StoreOverloadedError when too many inputs are waiting and LogUnavailableError while
        the log cannot be written (the caller answers 503), LoopStoppedError when the server no
        longer accepts requests. The future may also fail with InputRefusedError (this request
        alone was refused) or LogUnavailableError (refused while waiting).
        """
        self.check_capacity(f"request {received.request_id} for model {received.model!r}")
        future: asyncio.Future[Dispatch | Reject] = asyncio.get_running_loop().create_future()
        ticket = RequestTicket(received.request_id, received.model, future)
        # However the first decision comes (dispatched with its admission, rejected, refused,
        # the loop stopped), it also ends the wait for admission: one future to await, not two.
        future.add_done_callback(lambda _: ticket.admitted.set())
        self._tickets[received.request_id] = ticket
        chosen = self._selections.get(received.request_id)
        if chosen is not None:  # a selector chose this model: the request carries its reservation
            chosen.handed_over = True
        self.submit(received)
        return ticket

    def submit_selector(self, asked: SelectorRequested) -> SelectorTicket:
        """Queue a selector's request; the ticket's `choice` resolves with the committed
        SelectorChose or Reject.

        Raises as `submit_request` does while new client work is refused. The future may also
        fail as a request's does: InputRefusedError (this input alone was refused: 400/500),
        LogUnavailableError (refused while waiting; the loop then ends the choice itself),
        LoopStoppedError (the loop stopped or died while it waited)."""
        self.check_capacity(f"request {asked.request_id} for selector {asked.selector!r}")
        future: asyncio.Future[SelectorChose | Reject] = asyncio.get_running_loop().create_future()
        ticket = SelectorTicket(asked.request_id, asked.selector, future)
        self._selections[asked.request_id] = ticket
        self.submit(asked)
        return ticket

    def end_selection(self, ticket: SelectorTicket, reason: str) -> None:
        """The handler is done with its selector's choice: release the target's reservation
        (`SelectionEnded(reason)`) unless the choice became a local request, which ends it, or
        was already ended or never held (a Reject, a refusal). A choice still on its way is
        ended as soon as it is made. A dead loop records nothing more: the reservation lasts
        until the next start, which forgets every choice (a warning names the request)."""
        held = self._selections.get(ticket.request_id)
        if held is not ticket or ticket.handed_over:
            return
        del self._selections[ticket.request_id]
        if not ticket.choice.done():
            ticket.choice.cancel()  # nobody waits on it any more
        try:
            self.submit(SelectionEnded(request_id=ticket.request_id, reason=reason))
        except LoopStoppedError:
            log.warning(
                "the end of selector choice %s was not recorded: the run loop stopped",
                ticket.request_id,
            )

    def check_capacity(self, what: str) -> None:
        """Refuse new client work as `submit_request` does, for work that needs no decision but
        will be recorded (a peer request): LoopStoppedError while shutting down,
        LogUnavailableError while the log cannot be written, StoreOverloadedError when too many
        inputs are waiting (`what` names the refused work)."""
        if not self._accepting:
            if self._fatal is not None:
                raise LoopStoppedError("the scheduler stopped after an internal error")
            raise LoopStoppedError("the server is shutting down")
        cause = self.health.degraded_cause
        if cause is not None:
            raise LogUnavailableError(
                f"{what} was refused: the event log cannot be written ({cause}); new requests "
                f"are refused until it can be, and the server resumes by itself",
                retry_after_s=RETRY_AFTER_S,
            )
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
                self.health.beat()
                if not self._inbox:
                    self._idle.set()
                    self._wakeup.clear()
                    try:  # wake now and then only to beat: an idle loop is a live loop
                        await asyncio.wait_for(self._wakeup.wait(), HEARTBEAT_S)
                    except TimeoutError:
                        pass
                    continue
                batch = [
                    self._inbox.popleft() for _ in range(min(self._max_batch, len(self._inbox)))
                ]
                turn = self._reduce_batch(batch)
                if turn.rows:
                    await self._commit(turn)
                if turn.failed is not None:
                    # The state is half-changed: rebuild it from the log (or stop) before anyone
                    # acts on this batch, so no view, listener or snapshot ever sees it.
                    await self._contain_reducer_failure(turn)
                if turn.rows:
                    self._act(turn.envelopes)
        except asyncio.CancelledError:
            raise
        except _GaveUp as exc:
            log.error("%s", exc)
            self._idle.set()
        except BaseException as exc:  # a bug the loop cannot contain, or a foreign writer
            self._die(exc)

    def _reduce_batch(self, batch: list[_Input]) -> _Turn:
        """Encode and reduce each input in order; stop at the first one the reducer fails on."""
        boot = self._store.boot_id
        turn = _Turn()
        seq = self._next_seq
        for index, item in enumerate(batch):
            source, row = self._encoded_input(item, boot, seq)
            try:
                state, decisions = self._reduce(self._state, source)
                made = [
                    Envelope(body=d, ts_ms=item.ts_ms, boot=boot, seq=seq + 1 + i, cause=seq)
                    for i, d in enumerate(decisions)
                ]
                rows = [(seq + 1 + i, *r) for i, r in enumerate(encode_envelopes(made, boot))]
            except Exception as exc:  # the state may be half-changed: it is rebuilt
                turn.failed, turn.error, turn.rest = item, exc, batch[index + 1 :]
                return turn
            self._state = state
            turn.envelopes.append(source)
            turn.rows.append(row)
            turn.envelopes.extend(made)
            turn.rows.extend(rows)
            seq += 1 + len(made)
        return turn

    def _encoded_input(self, item: _Input, boot: str, seq: int) -> tuple[Envelope, Row]:
        """The input's envelope and row; a request that cannot be encoded becomes its refusal,
        an internal fact that cannot be encoded is repaired (and recorded as repaired)."""
        source = Envelope(body=item.body, ts_ms=item.ts_ms, boot=boot, seq=seq)
        try:
            return source, (seq, *encode_envelopes([source], boot)[0])
        except (TypeError, ValueError, RecursionError) as exc:
            problem = unencodable_field(item.body) or safe_text(str(exc), 300)
        body = item.body
        if isinstance(body, RequestReceived | SelectorRequested):  # a client's: refused, answered
            replacement: Event = InputRefused(
                input_type=body.type_name,
                key=safe_text(body.request_id, 200),
                stage="encode",
                error=problem,
            )
            log.warning("request %s refused: it cannot be recorded (%s)", replacement.key, problem)
        else:
            replacement = made_encodable(body)  # type: ignore[assignment]
            log.warning("%s repaired before recording: %s", body.type_name, problem)
        source = Envelope(body=replacement, ts_ms=item.ts_ms, boot=boot, seq=seq)
        return source, (seq, *encode_envelopes([source], boot)[0])

    async def _commit(self, turn: _Turn) -> None:
        """Hand the numbered batch to the writer (one transaction); while the log cannot be
        written, degrade and retry the same rows with backoff for as long as it takes (memory
        stays bounded: new requests are refused meanwhile), then heal."""
        attempt = 0
        failing_since: float | None = None
        logged_at = 0.0
        while True:
            try:
                await self._store.commit_rows(turn.rows)
                break
            except StoreError as exc:
                now = time.monotonic()
                cause = str(exc)
                if self._stopping:
                    raise _GaveUp(
                        f"shutting down with {len(turn.rows)} events that cannot be written "
                        f"({cause}); they were never acted on"
                    ) from exc
                if failing_since is None:
                    failing_since = now
                if now - logged_at >= STILL_FAILING_LOG_EVERY_S:
                    logged_at = now
                    log.error(
                        "cannot write %d events to the log (for %.0f s, retrying): %s",
                        len(turn.rows), now - failing_since, cause,
                    )  # fmt: skip
                self.health.degraded(cause)
                if now - failing_since >= REFUSE_WAITERS_AFTER_S:
                    self._refuse_waiters(cause)
                delay = self._retry_delays_s[min(attempt, len(self._retry_delays_s) - 1)]
                attempt += 1
                self.health.beat()
                await asyncio.sleep(delay)
        if failing_since is not None:
            lasted = self.health.healed()
            log.warning("the event log is writable again after %.1f s; serving resumes", lasted)
        self._next_seq = turn.rows[-1][0] + 1

    def _refuse_waiters(self, cause: str) -> None:
        """Answer every waiting request 503 now; the log records each as cancelled (or, if its
        dispatch is in the batch being retried, as finished with that 503) once it is writable,
        and each selector's request still waiting for its choice as ended (`SelectionEnded`,
        which releases the reservation the choice may take in the batch being retried)."""
        for ticket in list(self._tickets.values()):
            if ticket.client_gone or ticket.decision.done():
                continue
            message = (
                f"request {ticket.request_id} for model {ticket.model!r} was refused: the event "
                f"log cannot be written ({cause})"
            )
            ticket.decision.set_exception(LogUnavailableError(message, retry_after_s=RETRY_AFTER_S))
            ticket.gone_status, ticket.gone_reason = 503, message
            self.abandon_ticket(
                ticket, RequestCancelled(request_id=ticket.request_id, reason="log_unavailable")
            )
        for chosen in list(self._selections.values()):
            if chosen.choice.done():
                continue
            message = (
                f"request {chosen.request_id} for selector {chosen.selector!r} was refused: the "
                f"event log cannot be written ({cause})"
            )
            chosen.choice.set_exception(LogUnavailableError(message, retry_after_s=RETRY_AFTER_S))
            del self._selections[chosen.request_id]
            self.submit(SelectionEnded(request_id=chosen.request_id, reason="log_unavailable"))

    async def _contain_reducer_failure(self, turn: _Turn) -> None:
        """The reducer raised on `turn.failed`: refuse it alone and rebuild the state from the
        committed log, or stop the loop when that cannot be trusted (see the module's text)."""
        item, error = turn.failed, turn.error
        assert item is not None and error is not None
        body = item.body
        key = body.key if isinstance(body.key, str) else None
        what = f"{body.type_name}" + (f" {key}" if key else "")
        now = time.monotonic()
        self._reducer_failures.append(now)
        while self._reducer_failures and now - self._reducer_failures[0] > REDUCER_FAILURE_WINDOW_S:
            self._reducer_failures.popleft()
        if not isinstance(body, CONTAINED_INPUTS) or self._rebuild_state is None:
            raise RuntimeError(f"the scheduler failed on {what}: {error!r}") from error
        if len(self._reducer_failures) > MAX_REDUCER_FAILURES:
            raise RuntimeError(
                f"the scheduler failed {len(self._reducer_failures)} times within "
                f"{REDUCER_FAILURE_WINDOW_S:.0f} s, the last on {what}: {error!r}"
            ) from error
        log.critical(
            "the scheduler failed on %s (a bug: please report it with this traceback); that input "
            "alone is refused and the state is rebuilt from the log", what, exc_info=error,
        )  # fmt: skip
        refused = InputRefused(
            input_type=body.type_name,
            key=safe_text(key, 200) if key else None,
            stage="reduce",
            error=safe_text(f"{type(error).__name__}: {error}", 500),
        )
        self._state = await self._rebuilt_state(self._rebuild_state)
        if self._viewer is not None:
            self._view = self._viewer(self._state)
        self._inbox.extendleft(reversed([_Input(refused, item.ts_ms), *turn.rest]))
        self._idle.clear()

    async def _rebuilt_state(self, rebuild: StateRebuilder) -> Any:
        """The replay runs on a thread; the loop is at work meanwhile, so it keeps beating (a
        long replay must not read as a stuck loop to /health or the watchdog)."""
        task = asyncio.ensure_future(rebuild())
        while not task.done():
            self.health.beat()
            await asyncio.wait({task}, timeout=HEARTBEAT_S)
        self.health.beat()
        return task.result()

    def _die(self, exc: BaseException) -> None:
        self._fatal = exc
        self._accepting = False
        self.health.fatal(safe_text(str(exc), 300) or type(exc).__name__)
        log.critical("run loop stopped: %r", exc, exc_info=exc)
        self._answer_all_waiting("the scheduler stopped after an internal error")
        self._idle.set()
        if self._on_fatal is not None:
            try:
                self._on_fatal(exc)
            except Exception:
                log.exception("the fatal-error handler failed")

    def _answer_all_waiting(self, message: str) -> None:
        """No answer will come from this loop: every handler still waiting on a ticket gets
        LoopStoppedError(`message`)."""
        for ticket in self._tickets.values():
            if not ticket.decision.done():
                ticket.decision.set_exception(LoopStoppedError(message))
        for chosen in self._selections.values():
            if not chosen.choice.done():
                chosen.choice.set_exception(LoopStoppedError(message))

    def _act(self, envelopes: list[Envelope]) -> None:
        if self._viewer is not None:  # committed: publish before anyone is told
            self._view = self._viewer(self._state)
        for envelope in envelopes:
            body = envelope.body
            if isinstance(body, RequestReceived):
                # A selector's choice became this request: the reservation is the request's now.
                self._selections.pop(body.request_id, None)
                ticket = self._tickets.get(body.request_id)
                if ticket is not None:
                    ticket.admitted.set()
            elif isinstance(body, SelectorChose):
                chosen = self._selections.get(body.request_id)
                if chosen is not None and not chosen.choice.done():
                    chosen.choice.set_result(body)  # held on: the handler ends it, or hands over
            elif isinstance(body, SelectionEnded):
                self._selections.pop(body.request_id, None)
            elif isinstance(body, Dispatch | Reject):
                self._answer(body)
            elif isinstance(body, RequestCancelled):
                # Acted on in log order: a Dispatch decided before the cancel has already taken
                # the ticket; otherwise no decision will ever come for it.
                ticket = self._tickets.get(body.request_id)
                if ticket is not None and ticket.client_gone:
                    del self._tickets[body.request_id]
            elif isinstance(body, InputRefused):
                self._answer_refused(body, envelope.seq)
            elif isinstance(body, Decision):
                try:
                    self._actuator.apply(body)
                except Exception:  # the actuator reports failures as events; never stop here
                    log.exception("could not carry out %s (seq %d)", body.type_name, envelope.seq)
        self._tell_positions()
        for listener in self._listeners:
            try:
                listener(envelopes)
            except Exception:
                log.exception(
                    "a log listener failed on seqs %d..%d", envelopes[0].seq, envelopes[-1].seq
                )

    def _answer_refused(self, refused: InputRefused, seq: int) -> None:
        """A client's input was refused alone: answer its ticket as a request's (400 when it
        cannot be recorded, 500 when the scheduler failed on it). A request a selector chose
        ends that choice here: it never took the reservation over."""
        if refused.key is None:
            return
        waiting: asyncio.Future[Any] | None = None
        if refused.input_type == "RequestReceived":
            ticket = self._tickets.pop(refused.key, None)
            waiting = ticket.decision if ticket is not None else None
            chosen = self._selections.pop(refused.key, None)
            if chosen is not None:
                self.submit(SelectionEnded(request_id=refused.key, reason="not_scheduled"))
        elif refused.input_type == "SelectorRequested":
            selection = self._selections.pop(refused.key, None)
            waiting = selection.choice if selection is not None else None
        if waiting is None or waiting.done():
            return
        if refused.stage == "encode":
            message = f"request {refused.key} cannot be recorded: {refused.error}"
            status = 400
        else:
            message = (
                f"the scheduler failed on request {refused.key} ({refused.error}); it was not "
                f"served, and the failure is recorded in the event log at seq {seq}"
            )
            status = 500
        waiting.set_exception(InputRefusedError(message, status=status))

    def _answer(self, decision: Dispatch | Reject) -> None:
        chosen = self._selections.get(decision.request_id)
        if isinstance(decision, Reject) and chosen is not None and not chosen.choice.done():
            del self._selections[decision.request_id]  # no choice, so no reservation to end
            chosen.choice.set_result(decision)
            return
        ticket = self._tickets.pop(decision.request_id, None)
        if ticket is not None and not ticket.client_gone and not ticket.decision.done():
            ticket.decision.set_result(decision)
        elif isinstance(decision, Dispatch):
            self._finish_unclaimed(decision, ticket)

    def _finish_unclaimed(self, dispatch: Dispatch, ticket: RequestTicket | None) -> None:
        """A dispatch whose client already left: end it at once so in-flight counts stay exact."""
        self.submit(
            RequestFinished(
                request_id=dispatch.request_id,
                model=dispatch.model,
                status=ticket.gone_status if ticket is not None else 499,
                error=ticket.gone_reason if ticket is not None else RequestTicket.gone_reason,
            )
        )

    def _tell_positions(self) -> None:
        """Tell each waiting ticket its new queue position and phase, read from the committed
        view.

        Positions are derived state (the reducer logs no decision for them since core-4): after
        every commit the view's queue is walked once and only the tickets whose place changed
        are told. Without a viewer (bare loops in tests) nobody is told."""
        view = self._view
        if not self._tickets or view is None:
            return
        for request in getattr(view, "queue", ()):
            ticket = self._tickets.get(request.request_id)
            placed = (request.position, request.phase)
            if ticket is None or (ticket.position, ticket.phase) == placed:
                continue
            ticket.position, ticket.phase = request.position, request.phase
            if ticket.on_change is not None:
                try:
                    ticket.on_change(ticket)
                except Exception:  # a handler's display must never stop the loop
                    log.exception("telling request %s its queue place failed", ticket.request_id)

    def take_back(self, ticket: RequestTicket, unreachable: DispatchUnreachable) -> None:
        """The handler could not reach the instance its Dispatch named: wait on the same ticket
        for the reducer's next answer (a new Dispatch, or a Reject) and report why.

        The ticket gets a fresh decision future and is registered again before the report is
        queued, so the answer cannot be missed. Raises LoopStoppedError as `submit` does (the
        ticket is then not registered)."""
        ticket.decision = asyncio.get_running_loop().create_future()
        ticket.position = ticket.phase = None
        self._tickets[ticket.request_id] = ticket
        try:
            self.submit(unreachable)
        except LoopStoppedError:
            del self._tickets[ticket.request_id]
            raise

    def abandon_ticket(self, ticket: RequestTicket, cancelled_event: Event) -> None:
        """The handler's client left before a decision: tell the reducer, keep the ticket so a
        Dispatch that is already on its way is finished at once instead of leaking in flight."""
        ticket.client_gone = True
        self.submit(cancelled_event)
