"""Ours: a model whose start failed says why, and is not started again for a while.

llama-swap starts a model again for every request, so a model that cannot start (a binary not
found, a missing model file) is spawned hundreds of times a minute, and each client learns only
"upstream command exited prematurely". Here each failed start is recorded on its model
(`FailedStarts`): the answer carries the exit status and the tail of the model's own output, and
a backoff window opens (`start_backoff_ms`, doubled with each failure in a row up to
`start_backoff_max_ms`). A request that would start the model inside that window is answered at
once with the same cause (503 `start_backoff`, with the time left) instead of spawning it again;
no timer is needed, since nothing waits through a window.

A failure is *permanent* (clients are told not to retry) when the command cannot be run as
configured, or when the process exits during its start twice in a row with the same exit status
and output. The streak ends on a successful start (or an adopted process), on a reload that
changes the model, on an operator's load or unload, and on a new boot.

Pure, like the rest of the core: the time is the input's ts.
"""

from __future__ import annotations

from llamaswap_es.config.schedule import SchedulerConfig
from llamaswap_es.core.effects import fail
from llamaswap_es.core.state import (
    RUNNING_STATES,
    FailedStarts,
    ModelProc,
    Out,
    Request,
    SchedulerState,
)
from llamaswap_es.events.types import START_COMMAND, START_EXITED, ProcessStartFailed

START_BACKOFF = "start_backoff"
"""Reject code of a request answered inside a model's backoff window."""
START_FAILED = "start_failed"

_MAX_DOUBLINGS = 30
_SIGNALS = {
    1: "SIGHUP", 2: "SIGINT", 3: "SIGQUIT", 4: "SIGILL", 6: "SIGABRT", 7: "SIGBUS",
    8: "SIGFPE", 9: "SIGKILL", 11: "SIGSEGV", 13: "SIGPIPE", 15: "SIGTERM",
}  # fmt: skip
"""Linux numbers (the core may not import `signal`); others are shown by number only."""


def describe_exit(exit_code: int | None, signal: int | None) -> str:
    """How the process ended: `exit code 1`, `killed by signal 9 (SIGKILL)`, or "" if unknown."""
    if signal is not None:
        name = _SIGNALS.get(signal)
        return f"killed by signal {signal}" + (f" ({name})" if name else "")
    if exit_code is not None:
        return f"exit code {exit_code}"
    return ""


def describe_failure(
    error: str, exit_code: int | None = None, signal: int | None = None, output_tail: str = ""
) -> str:
    """A failure as the client, the log and the UI are told it: llama-swap's text, then how the
    process ended and its last output, when known (so an old log's text is unchanged)."""
    text = error
    how = describe_exit(exit_code, signal)
    if how:
        text += f" ({how})"
    if output_tail:
        text += f"; last output:\n{output_tail}"
    return text


def window_ms(config: SchedulerConfig | None, count: int) -> int:
    """The backoff after `count` failed starts in a row: the first window doubled each time,
    capped; 0 when the backoff is off."""
    if config is None or config.start_backoff_ms <= 0 or count <= 0:
        return 0
    first = config.start_backoff_ms
    cap = max(config.start_backoff_max_ms, first)
    return min(first << min(count - 1, _MAX_DOUBLINGS), cap)


def record_failure(st: SchedulerState, proc: ModelProc, event: ProcessStartFailed) -> str:
    """Count a failed start of the current instance and open its backoff window; returns the
    failure as the waiting clients are told it."""
    detail = describe_failure(event.error, event.exit_code, event.signal, event.output_tail)
    previous = proc.failed_starts
    count = 1 if previous is None else previous.count + 1
    repeated = (
        previous is not None
        and event.kind == START_EXITED
        and previous.kind == START_EXITED
        and previous.detail == detail
    )
    proc.failed_starts = FailedStarts(
        count=count,
        detail=detail,
        kind=event.kind,
        permanent=event.kind == START_COMMAND or repeated,
        retry_at_ms=st.now_ms + window_ms(st.config, count),
        instance=proc.instance,
    )
    return detail


def forget_failures(proc: ModelProc) -> None:
    """End the streak: the next request starts the model at once."""
    proc.failed_starts = None


def backing_off(st: SchedulerState, proc: ModelProc) -> FailedStarts | None:
    """The failure whose window is still open for this stopped model, or None."""
    failed = proc.failed_starts
    if failed is None or st.config is None or st.config.start_backoff_ms <= 0:
        return None  # off (or turned off by a reload): windows opened earlier no longer hold
    if proc.state in RUNNING_STATES or st.now_ms >= failed.retry_at_ms:
        return None
    return failed


def refuse_while_backing_off(st: SchedulerState, req: Request, out: Out) -> bool:
    """Answer a request that would start a model inside its backoff window (503, the time left,
    the last failure); True if it was answered. The caller has taken it out of the queue."""
    failed = backing_off(st, st.models[req.model])
    if failed is None:
        return False
    wait_ms = failed.retry_at_ms - st.now_ms
    times = "once" if failed.count == 1 else f"{failed.count} times in a row"
    message = (
        f'model "{req.model}" failed to start ({times}) and is not started again for '
        f"{_whole_seconds(wait_ms)} s: {failed.detail}"
    )
    permanent = failed.permanent
    fail(st, req, 503, START_BACKOFF, message, out, retry_after_ms=wait_ms, permanent=permanent)
    return True


def fail_for_start(st: SchedulerState, req: Request, error: str, out: Out) -> None:
    """Answer a waiter of a swap whose start failed (llama-swap's 500 "unspecific error: …"),
    with the backoff and permanence of that failure when the current instance is the one that
    failed (a start aborted by a stop has neither)."""
    proc = st.models[req.model]
    failed = proc.failed_starts
    retry_after_ms = None
    permanent = False
    if failed is not None and failed.instance == proc.instance:
        permanent = failed.permanent
        wait_ms = failed.retry_at_ms - st.now_ms
        retry_after_ms = wait_ms if wait_ms > 0 else None
    fail(
        st,
        req,
        500,
        START_FAILED,
        f"unspecific error: {error}",
        out,
        retry_after_ms=retry_after_ms,
        permanent=permanent,
    )


def _whole_seconds(ms: int) -> int:
    return max(1, -(-ms // 1000))
