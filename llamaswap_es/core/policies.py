"""Scheduling policies: the contract, and the shared answer to a finished swap.

A policy decides what happens to admitted requests: grant now, join a swap, queue, or start a
swap, and what to do when something that may unblock the queue happens (`wake`). Everything else
(process states, swap execution, accounting, unload, reload, shutdown) is common and lives in the
reducer. A policy holds no state of its own: what it needs is in `SchedulerState`, so snapshots
need no policy-specific code. Adding a policy: write one module with a class like fifo's or
serial's, in this package or in your own, and register it in the entry point group
`llamaswap_es.policies` (`config.policy_registry`); docs/scheduling-policies.md walks through
it with a worked example.
"""

from __future__ import annotations

from typing import ClassVar, Protocol

from llamaswap_es.core.effects import Out, grant
from llamaswap_es.core.eviction import Planner
from llamaswap_es.core.start_backoff import fail_for_start
from llamaswap_es.core.state import ModelProc, Request, SchedulerState, Swap


class SchedulingPolicy(Protocol):
    name: ClassVar[str]

    def planner(self, st: SchedulerState) -> Planner:
        """What "cannot run beside" means under this policy."""
        ...

    def queue_key(self, req: Request) -> tuple[int, ...]:
        """Sort key of the queue order this policy keeps (used to re-sort after a reload)."""
        ...

    def place(self, st: SchedulerState, req: Request, out: Out) -> None:
        """An admitted request (or load) arrives; its slot is already reserved."""
        ...

    def on_swap_done(self, st: SchedulerState, swap: Swap, error: str | None, out: Out) -> None:
        """A swap ended (its entry is already removed): answer its waiters, then move on.

        Called by the reducer for a `SwapEnded` follow-up, never from inside another policy
        call: a swap that `start_swap` ends at once (its target was ready, nothing to evict)
        is handed over here after the call that started it has returned."""
        ...

    def on_request_ended(self, st: SchedulerState, proc: ModelProc, out: Out) -> None:
        """A dispatched request finished (its in-flight slot is already released)."""
        ...

    def wake(self, st: SchedulerState, out: Out) -> None:
        """Something that may unblock waiting requests happened (a stop completed, a timer,
        a reload, a cancel): re-examine them."""
        ...


def answer_waiters(st: SchedulerState, swap: Swap, error: str | None, out: Out) -> None:
    """Grant every waiter in join order, or fail each with llama-swap's 500 (§3.6), with the
    failure's retry hints (`start_backoff`)."""
    requests = st.requests
    for rid in swap.waiters:
        req = requests.get(rid)
        if req is None:
            continue
        if error is None:
            grant(st, req, out)
        else:
            fail_for_start(st, req, error, out)
