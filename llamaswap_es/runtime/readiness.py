"""Waiting for a freshly spawned upstream to become healthy, while watching for a stop or an exit.

The probe loop of a start (spec/core.md §1.4): a probe every `probe_interval_ms` until one
answers 200, each bounded by `probe_timeout_ms` and by what is left of `healthCheckTimeout`. A
stop request or the leader's exit ends the wait at once, whatever the probe is doing.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, Literal

import aiohttp

from llamaswap_es.runtime.health import probe_once
from llamaswap_es.runtime.process_spec import ProcessSpec

Outcome = Literal["ready", "stop", "exited", "timeout"]


async def await_ready(
    spec: ProcessSpec,
    session: Callable[[], aiohttp.ClientSession],
    *,
    stop: asyncio.Event,
    exited: asyncio.Event,
    probe_interval_ms: int,
    probe_timeout_ms: int,
) -> Outcome:
    """Probe `spec`'s health URL until it answers 200, a stop, an exit or the timeout."""
    if spec.skips_health_check:
        return "stop" if stop.is_set() else "ready"
    loop = asyncio.get_running_loop()
    deadline = loop.time() + spec.health_check_timeout_ms / 1000
    interval_s = probe_interval_ms / 1000
    while True:
        if stop.is_set():
            return "stop"
        if exited.is_set():
            return "exited"
        remaining = deadline - loop.time()
        if remaining <= 0:
            return "timeout"
        timeout_ms = int(min(probe_timeout_ms, remaining * 1000))
        probe = asyncio.ensure_future(probe_once(session(), spec.health_url, timeout_ms))
        try:
            await wait_first(stop, exited, probe=probe)
        finally:
            if not probe.done():
                probe.cancel()
        if probe.done() and not probe.cancelled() and probe.result():
            return "ready"
        await wait_first(stop, exited, timeout_s=min(interval_s, remaining))


async def wait_first(
    *events: asyncio.Event,
    probe: asyncio.Future[Any] | None = None,
    timeout_s: float | None = None,
) -> None:
    """Wait until any event is set, the probe (or any other future) is done, or the timeout
    passes."""
    if any(event.is_set() for event in events):
        return
    waiters = [asyncio.ensure_future(event.wait()) for event in events]
    pending: set[asyncio.Future[Any]] = set(waiters)
    if probe is not None:
        pending.add(probe)
    try:
        await asyncio.wait(pending, timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()


__all__ = ["Outcome", "await_ready", "wait_first"]
