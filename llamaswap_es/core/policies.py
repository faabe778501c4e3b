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

from llamaswap_es.core.effects import grant
from llamaswap_es.core.start_backoff import fail_for_start
from llamaswap_es.core.state import Out, SchedulerState, SchedulingPolicy, Swap

__all__ = ["SchedulingPolicy", "answer_waiters"]


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
