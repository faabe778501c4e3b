"""Follow-ups: what an input sets off inside the core, handled as inputs of the same step.

A swap that ends (its target became ready, failed to start, or was already ready once its
evictions were done) used to call the policy back from deep inside the code that noticed it,
which could be the policy's own drain: the core re-entered itself and guarded that with flags on
the state. Now the code that notices records a `SwapEnded`, and `reduce` hands the follow-ups to
the policy one at a time, in the order they were recorded, after the input's handler returned
and before the step's queue positions go out. A follow-up may record more follow-ups (answering
a swap's waiters can start the next swap); they are handled in the same loop. A `WakePolicy`
keeps a handler's own "re-examine the queue" in its place behind the swaps it ended.

Between steps the list is always empty, so it is never snapshotted.
"""

from __future__ import annotations

from llamaswap_es.core.state import (
    WAKE_POLICY,
    FollowUp,
    Out,
    SchedulerState,
    SwapEnded,
    WakePolicy,
)

__all__ = ["WAKE_POLICY", "FollowUp", "SwapEnded", "WakePolicy", "drain_followups"]


def drain_followups(st: SchedulerState, out: Out) -> None:
    """Hand every recorded follow-up to the policy, oldest first, until none is left."""
    pending = st.followups
    while pending:
        item = pending.pop(0)
        if isinstance(item, SwapEnded):
            st.policy.on_swap_done(st, item.swap, item.error, out)
        else:
            st.policy.wake(st, out)
