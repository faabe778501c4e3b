"""Inputs in plain words: the first sentence of an explanation ("request r2 for b arrived").

Kept apart from `explain` so the timeline and future UI texts can word inputs the same way.
"""

from __future__ import annotations

from llamaswap_es.core.state import SchedulerState
from llamaswap_es.events.types import (
    ConfigApplied,
    Envelope,
    LoadRequested,
    ProcessAdopted,
    ProcessExited,
    ProcessHung,
    ProcessReady,
    ProcessStartFailed,
    ProcessStopped,
    RequestAbandoned,
    RequestCancelled,
    RequestFinished,
    RequestReceived,
    ServerStarted,
    ShutdownRequested,
    TimerFired,
    UnloadRequested,
)
from tools.replay.render import local_time, summary


def input_sentence(env: Envelope, st: SchedulerState | None = None) -> str:
    """What happened at `env`, as one sentence that starts with its time."""
    when = f"At {local_time(env.ts_ms)} (seq {env.seq})"
    return f"{when} {_what(env, st)}."


def _what(env: Envelope, st: SchedulerState | None) -> str:
    b = env.body
    if isinstance(b, RequestReceived):
        return f"request {b.request_id} for model {b.model} arrived"
    if isinstance(b, RequestFinished):
        return f"request {b.request_id} on {b.model} finished with status {b.status}"
    if isinstance(b, RequestCancelled):
        return f"the client of request {b.request_id} left before it was dispatched"
    if isinstance(b, RequestAbandoned):
        return f"request {b.request_id} was abandoned ({b.reason})"
    if isinstance(b, ProcessReady):
        return f"model {b.model} (instance {b.instance}) became ready"
    if isinstance(b, ProcessStopped):
        return f"model {b.model} (instance {b.instance}) stopped"
    if isinstance(b, ProcessStartFailed):
        return f"model {b.model} (instance {b.instance}) failed to start: {b.error}"
    if isinstance(b, ProcessExited):
        return f"model {b.model} (instance {b.instance}) exited unexpectedly (code {b.exit_code})"
    if isinstance(b, ProcessHung):
        return f"model {b.model} (instance {b.instance}) stopped responding: {b.error}"
    if isinstance(b, ProcessAdopted):
        return f"recovery adopted the running process of {b.model} (instance {b.instance})"
    if isinstance(b, TimerFired):
        return f"timer {b.timer_id} fired"
    if isinstance(b, ConfigApplied):
        return f"a configuration was applied ({b.reason}, hash {b.config_hash[:12]})"
    if isinstance(b, UnloadRequested):
        which = ", ".join(b.models) or "all models"
        return f"an unload of {which} was requested ({b.origin})"
    if isinstance(b, LoadRequested):
        return f"a load of {b.model} was requested ({b.origin})"
    if isinstance(b, ShutdownRequested):
        return f"a shutdown was requested ({b.reason})"
    if isinstance(b, ServerStarted):
        return f"the server started (boot {b.boot_id}, llamaswap-es {b.version})"
    return f"the input {summary(env)} arrived"
