"""What systemd is told about the server, and when: the supervisor's view of the run loop.

* `READY=1` once the server listens and recovery is done (`ready`), so `systemctl start` and
  units ordered after ours wait for a server that can answer.
* `WATCHDOG=1` on every tick (half of `WatchdogSec=`) *only while the run loop turns*
  (`LoopHealth.turning`): a loop that stopped or hangs stops the feed, and systemd restarts the
  service after `WatchdogSec=` (recovery then adopts the running models). A log that cannot be
  written is not a reason: the loop still turns, refuses new work and heals by itself.
* `STATUS=` on every tick: models loaded and requests waiting while serving, the health report's
  reasons when not (`systemctl status` shows the line).
* `STOPPING=1` with the reason when the server shuts down (`stopping`).

Without `NOTIFY_SOCKET` nothing is created and nothing runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, MutableMapping

from llamaswap_es.runtime.loop_health import LoopHealth
from llamaswap_es.runtime.sd_notify import (
    Notifier,
    forget_notify_environment,
    one_line,
    watchdog_interval_s,
)
from llamaswap_es.runtime.service import SwapService

log = logging.getLogger("llamaswap_es.runtime.supervisor_feed")

STATUS_EVERY_S = 5.0
"""The tick without a watchdog: how fresh `systemctl status` is."""
MIN_TICK_S = 0.05


class SupervisorFeed:
    """Feeds one notify socket from the run loop's health and a status line."""

    def __init__(
        self,
        notifier: Notifier,
        health: LoopHealth,
        status: Callable[[], str],
        *,
        watchdog_s: float | None = None,
    ) -> None:
        self._notifier = notifier
        self._health = health
        self._status = status
        self.watchdog_s = watchdog_s
        self.tick_s = max(MIN_TICK_S, watchdog_s / 2) if watchdog_s else STATUS_EVERY_S
        self._task: asyncio.Task[None] | None = None

    @classmethod
    def from_environ(
        cls, environ: MutableMapping[str, str], health: LoopHealth, status: Callable[[], str]
    ) -> SupervisorFeed | None:
        """The feed systemd's variables ask for (None outside systemd); the variables are
        removed from `environ` so the models we start do not inherit them."""
        notifier = Notifier.from_environ(environ)
        watchdog_s = watchdog_interval_s(environ)
        forget_notify_environment(environ)
        if notifier is None:
            return None
        return cls(notifier, health, status, watchdog_s=watchdog_s)

    def ready(self) -> None:
        """The server listens and recovery is done: `READY=1`, then the ticks begin."""
        self._notifier.send("READY=1", f"STATUS={one_line(self._status_text())}")
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="systemd notify")

    async def stopping(self, reason: str) -> None:
        """The server is shutting down: no more watchdog, `STOPPING=1` and why."""
        await self._stop_ticking()
        self._notifier.send("STOPPING=1", f"STATUS={one_line(reason)}")

    async def close(self) -> None:
        await self._stop_ticking()
        self._notifier.close()

    def tick(self) -> None:
        """One message: `WATCHDOG=1` and the status while the loop turns, else the reasons."""
        if self._health.turning():
            lines = ["WATCHDOG=1"] if self.watchdog_s else []
            lines.append(f"STATUS={one_line(self._status_text())}")
        else:
            lines = [f"STATUS={one_line('not serving: ' + self._health.report().text())}"]
        self._notifier.send(*lines)

    async def _run(self) -> None:
        while True:
            try:
                self.tick()
            except Exception:  # the feed must never take the server down; systemd sees silence
                log.exception("could not notify systemd")
            await asyncio.sleep(self.tick_s)

    def _status_text(self) -> str:
        try:
            return self._status()
        except Exception as exc:  # a status line is never worth a failure
            return f"status unavailable: {exc}"

    async def _stop_ticking(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


def serving_status(service: SwapService) -> str:
    """`STATUS=` while serving: what is loaded and what waits, e.g.
    `serving: 2 models loaded (llama-8b, qwen-32b), 1 starting, 3 requests waiting`."""
    views = list(service.view.models.values())  # committed state only (ARCHITECTURE §11.5)
    loaded = sorted(v.model for v in views if v.state == "ready")
    starting = sum(1 for v in views if v.state == "starting")
    loop = service.loop
    waiting = loop.waiting_requests if loop is not None else 0
    noun = "model" if len(loaded) == 1 else "models"
    text = f"serving: {len(loaded)} {noun} loaded"
    if loaded:
        text += f" ({', '.join(loaded)})"
    if starting:
        text += f", {starting} starting"
    text += f", {waiting} request{'' if waiting == 1 else 's'} waiting"
    cause = service.health.degraded_cause
    if cause is not None:
        text += f"; new requests refused, the event log cannot be written: {cause}"
    return text
