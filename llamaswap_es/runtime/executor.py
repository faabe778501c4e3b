"""The process executor: carries out `StartProcess`/`StopProcess` and reports what happened.

The run loop hands it commands; it never blocks the caller and never decides anything. Each
instance is driven by one `UpstreamProcess` task, and every transition comes back as an event
through `report` (which the run loop appends to the log). The executor is the only thing that
knows pids; the scheduler knows models and instances.

Instances are keyed by (model, instance): a late command for an older instance of a model never
touches a newer one. A stop for an instance that is not running is answered with
`ProcessStopped` all the same, so the scheduler never waits forever for one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Callable, Coroutine
from typing import Any

import aiohttp

from llamaswap_es.events.types import Event, ProcessStartFailed, ProcessStopped
from llamaswap_es.runtime.clock import SystemClock
from llamaswap_es.runtime.hang_watch import HangDetection
from llamaswap_es.runtime.health import probe_session
from llamaswap_es.runtime.logs import UpstreamLogs
from llamaswap_es.runtime.orphans import format_tag, tagged_with
from llamaswap_es.runtime.port_choice import PortChooser
from llamaswap_es.runtime.process_group import KILL_WAIT_S, signal_group
from llamaswap_es.runtime.process_spec import ProcessSpec
from llamaswap_es.runtime.teardown import signal_each
from llamaswap_es.runtime.upstream_process import ProcessInfo, Tuning, UpstreamProcess

log = logging.getLogger("llamaswap_es.runtime.executor")

__all__ = ["ProcessExecutor", "ProcessInfo", "Tuning"]


class ProcessExecutor:
    """Spawns, probes, watches and stops upstream processes; see the module doc.

    All methods must be called from the event loop the executor runs on. `tuning`, when given,
    carries every timing knob (and overrides `probe_interval_ms`); `clock_ms` is the wall clock
    used where the OS cannot tell a process's creation time. `hang_detection` is how ready
    instances are watched for a hang (`set_hang_detection` changes it for running ones too).
    """

    def __init__(
        self,
        *,
        report: Callable[[Event], None],
        logs: UpstreamLogs,
        env_tag: str,
        probe_interval_ms: int = 100,
        clock_ms: Callable[[], int] | None = None,
        tuning: Tuning | None = None,
        hang_detection: HangDetection | None = None,
    ) -> None:
        if tuning is None:
            tuning = Tuning(probe_interval_ms=probe_interval_ms)
        self._report = report
        self._logs = logs
        self._env_tag = env_tag
        self._clock_ms = clock_ms or SystemClock().now_ms
        self._tuning = tuning
        self._hang_detection = hang_detection or HangDetection()
        self._processes: dict[tuple[str, int], UpstreamProcess] = {}
        self._ports = PortChooser()
        self._tasks: dict[tuple[str, int], asyncio.Task[None]] = {}
        self._session: aiohttp.ClientSession | None = None
        self._closed = False

    @property
    def env_tag(self) -> str:
        return self._env_tag

    # -- commands -----------------------------------------------------------------------------

    def start(self, spec: ProcessSpec, instance: int) -> None:
        """Start an instance of `spec`; returns at once, the outcome comes as events."""
        key = (spec.model_id, instance)
        if self._closed:
            self._report_soon(
                ProcessStartFailed(
                    model=spec.model_id, instance=instance, error="executor is shut down"
                )
            )
            return
        if key in self._processes:
            log.warning("start ignored, already running model=%s instance=%s", *key)
            return
        upstream = self._new_upstream(spec, instance)
        self._own(key, upstream, upstream.run())

    def adopt(
        self,
        spec: ProcessSpec,
        instance: int,
        pid: int,
        pgid: int,
        started_at_ms: int | None = None,
    ) -> None:
        """Take over a live, healthy process from a previous run as a ready instance.

        The caller (recovery) has checked that pid and start time match and that it answers its
        health check. It is then watched and stopped like our own; its exit is detected with a
        pidfd (or by polling) since it is not our child, and its exit code is unknown. Its output
        pipe lost its reader with the previous server; it is opened again through `/proc`
        (`adopted_output`), so its new output reaches the log streams once more (what it wrote
        in between is lost).
        """
        key = (spec.model_id, instance)
        if key in self._processes or self._closed:
            log.warning("adopt ignored model=%s instance=%s", *key)
            return
        upstream = self._new_upstream(spec, instance)
        upstream.mark_adopted(pid, pgid, started_at_ms)
        self._own(key, upstream, upstream.run_adopted())

    def stop(self, model: str, instance: int, grace_ms: int, cmd_stop: str | None = None) -> None:
        """Stop an instance: `cmdStop` or SIGTERM to its group, SIGKILL after `grace_ms`.

        `cmd_stop` None means the spec's `cmdStop`; "" forces SIGTERM. Descendants that left
        the group but carry the instance's tag get SIGTERM and the rest of the grace, then
        SIGKILL. Returns at once; `ProcessStopped` comes when the whole group and those
        descendants are gone (also for an instance that is not
        running, and only once when a stop is already under way, whose grace it may shorten).
        A stop during a start aborts the start and reports only `ProcessStopped`.
        """
        upstream = self._processes.get((model, instance))
        if upstream is None:
            self._report_soon(ProcessStopped(model=model, instance=instance))
            return
        upstream.request_stop(grace_ms, upstream.spec.cmd_stop if cmd_stop is None else cmd_stop)

    def set_hang_detection(self, settings: HangDetection) -> None:
        """New hang-watch settings (a reload); running watches use them from their next probe."""
        self._hang_detection = settings

    # -- queries ------------------------------------------------------------------------------

    def address(self, model: str) -> tuple[int, str] | None:
        """(instance, base URL) of the model's ready instance (the newest if several).

        For what bypasses the scheduler (ignored websockets); a granted request forwards to the
        address its `Dispatch` carries, which the reducer took from `ProcessReady`."""
        ready = [up for (name, _), up in self._processes.items() if name == model and up.serves()]
        if not ready:
            return None
        newest = max(ready, key=lambda up: up.instance)
        return newest.instance, newest.spec.proxy

    def running(self) -> dict[str, ProcessInfo]:
        """Per model, its newest live instance (starting, ready or stopping)."""
        result: dict[str, ProcessInfo] = {}
        for (model, instance), up in sorted(self._processes.items()):
            if up.state != "exited" and (model not in result or instance > result[model].instance):
                result[model] = up.info()
        return result

    def instances(self) -> list[ProcessInfo]:
        """Every instance the executor still owns, oldest first."""
        return [up.info() for _, up in sorted(self._processes.items())]

    # -- shutdown -----------------------------------------------------------------------------

    def kill_all_now(self) -> int:
        """SIGKILL every process group we own, synchronously; the number of groups signalled.

        For an immediate exit (a second stop signal): nothing is left behind, and the next
        start finds nothing to reap. The log records no stop; recovery settles that. Processes
        that left their group but carry one of our instances' tags are killed too (one scan).
        """
        killed = 0
        for info in self.instances():
            if info.pgid is not None:
                with contextlib.suppress(ValueError, PermissionError):  # unsafe or foreign group
                    killed += signal_group(info.pgid, signal.SIGKILL)
        tags = [format_tag(self._env_tag, model, instance) for model, instance in self._processes]
        if tags:
            signal_each(tagged_with(tags), signal.SIGKILL)
        return killed

    async def close(self, grace_ms: int) -> None:
        """Stop everything with `grace_ms`, wait until every group is gone, release resources."""
        self._closed = True
        for (model, instance), up in list(self._processes.items()):
            if up.state != "exited":
                self.stop(model, instance, grace_ms)
        tasks = list(self._tasks.values())
        if tasks:
            budget_s = (
                grace_ms + self._tuning.abort_grace_ms + 2 * self._tuning.pipe_backstop_ms
            ) / 1000 + KILL_WAIT_S
            _, pending = await asyncio.wait(tasks, timeout=budget_s)
            for task in pending:
                log.error("executor task did not finish in time, cancelling %s", task.get_name())
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        if self._session is not None:
            await self._session.close()
            self._session = None

    # -- plumbing -----------------------------------------------------------------------------

    def _new_upstream(self, spec: ProcessSpec, instance: int) -> UpstreamProcess:
        return UpstreamProcess(
            spec,
            instance,
            tag=format_tag(self._env_tag, spec.model_id, instance),
            logs=self._logs,
            report=self._report,
            session=self._probe_session,
            tuning=self._tuning,
            clock_ms=self._clock_ms,
            hang_detection=self._current_hang_detection,
            ports=self._ports,
        )

    def _own(
        self, key: tuple[str, int], upstream: UpstreamProcess, coro: Coroutine[Any, Any, None]
    ) -> None:
        self._processes[key] = upstream
        task = asyncio.ensure_future(coro)
        task.set_name(f"upstream {key[0]}#{key[1]}")
        self._tasks[key] = task

        def forget(_: asyncio.Task[None]) -> None:
            if self._processes.get(key) is upstream:
                del self._processes[key]
                del self._tasks[key]
                self._ports.release(key)

        task.add_done_callback(forget)

    def _current_hang_detection(self) -> HangDetection:
        return self._hang_detection

    def _probe_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = probe_session()
        return self._session

    def _report_soon(self, event: Event) -> None:
        """Report from the loop, never inside the caller's own call (no re-entrancy)."""
        asyncio.get_running_loop().call_soon(self._report, event)
