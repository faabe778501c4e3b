"""The life of one upstream instance: spawn, probe until healthy, watch, stop, report.

One task per instance owns every transition, so a stop that lands mid-start, a crash and a
health timeout can never race each other: the task sees whichever happened first and settles it.
Every outcome is reported as one event (spec/core.md §1.3-1.6, ARCHITECTURE §6 and §9):

* spawn error, early exit, health timeout -> `ProcessStartFailed` (group already cleaned up);
* healthy -> `ProcessReady`; later exit nobody asked for -> rest of the group killed,
  `ProcessExited`;
* stop requested (at any point, also before the spawn) -> `ProcessStopped` only, once the whole
  group is gone and reaped.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import aiohttp

from llamaswap_es.errors import ProcessError
from llamaswap_es.events.types import (
    Event,
    ProcessExited,
    ProcessReady,
    ProcessSpawned,
    ProcessStartFailed,
    ProcessStopped,
)
from llamaswap_es.runtime.exit_watch import open_pidfd, wait_exit
from llamaswap_es.runtime.health import probe_once
from llamaswap_es.runtime.logs import UpstreamLogs
from llamaswap_es.runtime.orphans import process_started_at_ms
from llamaswap_es.runtime.output_pipe import OutputPipe
from llamaswap_es.runtime.port_guard import port_taken
from llamaswap_es.runtime.process_group import (
    GROUP_POLL_S,
    KILL_WAIT_S,
    group_alive,
    signal_group,
    wait_group_gone,
)
from llamaswap_es.runtime.process_spec import ENV_TAG_VAR, ProcessSpec, stop_command

log = logging.getLogger("llamaswap_es.runtime.executor")

State = Literal["starting", "ready", "stopping", "exited"]
_Outcome = Literal["ready", "stop", "exited", "timeout"]


@dataclass(frozen=True, slots=True)
class Tuning:
    """The executor's timing knobs (all in ms)."""

    probe_interval_ms: int = 100
    probe_timeout_ms: int = 2_000
    abort_grace_ms: int = 5_000
    """Grace for tearing down a start that failed its health check (llama-swap's 5 s)."""
    pipe_backstop_ms: int = 2_000
    """How long after the group is gone we wait for the output pipe to end before closing it."""


@dataclass(frozen=True, slots=True)
class ProcessInfo:
    """A snapshot of one instance for status views and recovery."""

    model: str
    instance: int
    pid: int | None
    pgid: int | None
    state: State
    started_at_ms: int | None
    adopted: bool = False


def spawn_env(spec: ProcessSpec, tag: str, role: str = "upstream") -> dict[str, str]:
    """The server's environment plus the model's `env` plus our tag (later entries win)."""
    env = dict(os.environ)
    env.update(spec.env)
    env[ENV_TAG_VAR] = tag
    env[ENV_TAG_VAR + "_ROLE"] = role
    return env


def spawn(argv: list[str], spec: ProcessSpec, env: dict[str, str]) -> subprocess.Popen[bytes]:
    """Start `argv` as the leader of a new session, stdout and stderr on one pipe.

    `restore_signals=False` keeps SIGPIPE ignored in the child: if this server dies, an upstream
    writing to the now-reader-less pipe gets EPIPE instead of being killed, so it survives to be
    adopted by the next run (ARCHITECTURE §9.7).
    """
    return subprocess.Popen(
        argv,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=env,
        cwd=spec.cwd,
        start_new_session=True,
        restore_signals=False,
    )


class UpstreamProcess:
    """One instance of one model's upstream, driven by its own task (see the module doc)."""

    def __init__(
        self,
        spec: ProcessSpec,
        instance: int,
        *,
        tag: str,
        logs: UpstreamLogs,
        report: Callable[[Event], None],
        session: Callable[[], aiohttp.ClientSession],
        tuning: Tuning,
        clock_ms: Callable[[], int],
    ) -> None:
        self.spec = spec
        self.model = spec.model_id
        self.instance = instance
        self.state: State = "starting"
        self.pid: int | None = None
        self.pgid: int | None = None
        self.started_at_ms: int | None = None
        self.adopted = False
        self._tag = tag
        self._logs = logs
        self._report = report
        self._session = session
        self._tuning = tuning
        self._clock_ms = clock_ms
        self._popen: subprocess.Popen[bytes] | None = None
        self._pipe = OutputPipe()
        self._exited = asyncio.Event()
        self._exit_code: int | None = None
        self._exit_signal: int | None = None
        self._stop = asyncio.Event()
        self._stop_deadline = 0.0
        self._stop_grace_ms = 0
        self._stop_cmd: str | None = None
        self._helpers: set[asyncio.Task[None]] = set()

    # -- control from the executor ------------------------------------------------------------

    def info(self) -> ProcessInfo:
        return ProcessInfo(
            model=self.model,
            instance=self.instance,
            pid=self.pid,
            pgid=self.pgid,
            state=self.state,
            started_at_ms=self.started_at_ms,
            adopted=self.adopted,
        )

    def request_stop(self, grace_ms: int, cmd_stop: str | None) -> None:
        """Ask the task to stop; a second request can only shorten the grace."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max(grace_ms, 0) / 1000
        if self._stop.is_set():
            if deadline < self._stop_deadline:
                self._stop_deadline = deadline
                self._stop_grace_ms = grace_ms
            return
        self._stop_deadline = deadline
        self._stop_grace_ms = grace_ms
        self._stop_cmd = cmd_stop
        self._stop.set()
        if self.state == "ready":
            self.state = "stopping"  # at once: address() must stop handing it out

    def kill_now(self) -> None:
        """Last resort when the task is cancelled: SIGKILL whatever is left, synchronously."""
        if self.pgid is not None:
            try:
                signal_group(self.pgid, signal.SIGKILL)
            except ValueError:
                pass
        self._pipe.close_now()

    # -- the life cycle -----------------------------------------------------------------------

    async def run(self) -> None:
        """Spawn, probe, watch and settle; reports every outcome. Never raises (but cancels)."""
        try:
            await self._run()
        except asyncio.CancelledError:
            self.kill_now()
            raise
        except Exception as exc:  # a bug must not leave a process or a waiting scheduler
            log.exception("executor failure model=%s instance=%s", self.model, self.instance)
            self.kill_now()
            if self._stop.is_set():
                self._emit(ProcessStopped(model=self.model, instance=self.instance, forced=True))
            elif self.state == "starting":
                self._emit(self._start_failed(f"internal error: {exc}"))
            else:
                self._emit(ProcessExited(model=self.model, instance=self.instance, pid=self.pid))
        finally:
            self.state = "exited"
            await self._end_helpers()

    def mark_adopted(self, pid: int, pgid: int, started_at_ms: int | None) -> None:
        """Take over a live process from a previous run (not our child) as a ready instance."""
        self.adopted = True
        self.pid, self.pgid, self.started_at_ms = pid, pgid, started_at_ms
        self.state = "ready"

    async def run_adopted(self) -> None:
        """Watch an adopted process until it exits or is stopped (see `mark_adopted`)."""
        assert self.pid is not None
        pidfd = open_pidfd(self.pid)
        self._spawn_helper(self._watch_foreign_exit(self.pid, pidfd))
        try:
            await self._settle_ready()
        except asyncio.CancelledError:
            self.kill_now()
            raise
        finally:
            self.state = "exited"
            await self._end_helpers()

    async def _run(self) -> None:
        if self._stop.is_set():
            self._emit(ProcessStopped(model=self.model, instance=self.instance))
            return
        if not await self._spawn():
            return
        outcome = await self._await_ready()
        if outcome == "ready":
            log.info("health check passed model=%s instance=%s", self.model, self.instance)
            self.state = "ready"
            self._emit(ProcessReady(model=self.model, instance=self.instance, pid=self.pid))
            await self._settle_ready()
            return
        if outcome == "stop":
            await self._stop_and_report()
            return
        if outcome == "exited":
            error = "upstream command exited prematurely"
            await self._reap_group_after_exit()
        else:
            timeout_s = self.spec.health_check_timeout_ms / 1000
            error = f"health check timed out after {timeout_s:g}s"
            await self._teardown(self._tuning.abort_grace_ms, self.spec.cmd_stop)
        log.warning("start failed model=%s instance=%s error=%r", self.model, self.instance, error)
        self._emit(self._start_failed(error))
        if self._stop.is_set():
            self._emit(ProcessStopped(model=self.model, instance=self.instance))

    async def _settle_ready(self) -> None:
        """Wait for a stop or an exit of a ready instance and settle it."""
        await self._first(self._stop, self._exited)
        if self._stop.is_set():
            await self._stop_and_report()
            return
        log.warning(
            "upstream exited unexpectedly model=%s instance=%s code=%s signal=%s",
            self.model,
            self.instance,
            self._exit_code,
            self._exit_signal,
        )
        await self._reap_group_after_exit()
        self._emit(
            ProcessExited(
                model=self.model,
                instance=self.instance,
                pid=self.pid,
                exit_code=self._exit_code,
                signal=self._exit_signal,
            )
        )

    async def _stop_and_report(self) -> None:
        self.state = "stopping"
        forced = await self._teardown(None, self._stop_cmd)
        self._emit(
            ProcessStopped(
                model=self.model,
                instance=self.instance,
                exit_code=self._exit_code,
                signal=self._exit_signal,
                forced=forced,
            )
        )

    # -- spawning -----------------------------------------------------------------------------

    async def _spawn(self) -> bool:
        if not self.spec.proxy.strip():
            self._emit(self._start_failed("upstream proxy missing"))
            return False
        try:
            argv = self.spec.argv()
        except ProcessError as exc:
            self._emit(self._start_failed(str(exc)))
            return False
        taken = None
        if not self.spec.skips_health_check:
            taken = await asyncio.to_thread(port_taken, self.spec.proxy, self.spec.port)
        if taken:
            self._emit(self._start_failed(taken))
            return False
        try:
            popen = spawn(argv, self.spec, spawn_env(self.spec, self._tag))
        except (OSError, ValueError, subprocess.SubprocessError) as exc:
            self._emit(self._start_failed(f"failed to start command '{' '.join(argv)}': {exc}"))
            return False
        self._popen = popen
        self.pid = self.pgid = popen.pid
        pidfd = open_pidfd(popen.pid)
        self.started_at_ms = process_started_at_ms(popen.pid) or self._clock_ms()
        assert popen.stdout is not None
        await self._pipe.attach(popen.stdout, self._write_output)
        self._spawn_helper(self._watch_child_exit(popen, pidfd))
        log.info("spawned model=%s instance=%s pid=%s", self.model, self.instance, popen.pid)
        self._emit(
            ProcessSpawned(
                model=self.model,
                instance=self.instance,
                pid=popen.pid,
                pgid=popen.pid,
                started_at_ms=self.started_at_ms,
                port=self.spec.port,
                argv=tuple(argv),
            )
        )
        return True

    def _write_output(self, text: str) -> None:
        self._logs.write_upstream(self.model, text)

    async def _watch_child_exit(self, popen: subprocess.Popen[bytes], pidfd: int | None) -> None:
        await wait_exit(popen.pid, pidfd)
        code = popen.poll()
        while code is None:  # readable pidfd but not yet reapable: only a moment away
            await asyncio.sleep(0.005)
            code = popen.poll()
        self._record_exit(code)

    async def _watch_foreign_exit(self, pid: int, pidfd: int | None) -> None:
        await wait_exit(pid, pidfd)
        self._exited.set()

    def _record_exit(self, code: int) -> None:
        if code < 0:
            self._exit_signal = -code
        else:
            self._exit_code = code
        self._exited.set()

    # -- health -------------------------------------------------------------------------------

    async def _await_ready(self) -> _Outcome:
        if self.spec.skips_health_check:
            return "stop" if self._stop.is_set() else "ready"
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.spec.health_check_timeout_ms / 1000
        url = self.spec.health_url
        interval_s = self._tuning.probe_interval_ms / 1000
        while True:
            if self._stop.is_set():
                return "stop"
            if self._exited.is_set():
                return "exited"
            remaining = deadline - loop.time()
            if remaining <= 0:
                return "timeout"
            timeout_ms = int(min(self._tuning.probe_timeout_ms, remaining * 1000))
            probe = asyncio.ensure_future(probe_once(self._session(), url, timeout_ms))
            try:
                await self._first(self._stop, self._exited, probe=probe)
            finally:
                if not probe.done():
                    probe.cancel()
            if probe.done() and not probe.cancelled() and probe.result():
                return "ready"
            await self._first(self._stop, self._exited, timeout_s=min(interval_s, remaining))

    @staticmethod
    async def _first(
        *events: asyncio.Event,
        probe: asyncio.Future[bool] | None = None,
        timeout_s: float | None = None,
    ) -> None:
        """Wait until any event is set, the probe is done, or the timeout passes."""
        if any(event.is_set() for event in events):
            return
        waiters = [asyncio.ensure_future(event.wait()) for event in events]
        pending = set(waiters)
        if probe is not None:
            pending.add(probe)
        try:
            await asyncio.wait(pending, timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()

    # -- stopping -----------------------------------------------------------------------------

    async def _teardown(self, grace_ms: int | None, cmd_stop: str | None) -> bool:
        """Gracefully stop the group, SIGKILL it when the grace runs out; True if killed.

        `grace_ms` None means the grace of the stop request (which a later stop may shorten).
        """
        loop = asyncio.get_running_loop()
        if grace_ms is not None:
            self._stop_deadline = loop.time() + grace_ms / 1000
        pgid = self.pgid
        forced = False
        if pgid is not None and await self._alive(pgid):
            self._graceful_stop(pgid, cmd_stop)
            while await self._alive(pgid) and loop.time() < self._stop_deadline:
                if self._exited.is_set():  # the leader is gone, other members linger: poll
                    await asyncio.sleep(GROUP_POLL_S)
                else:
                    await self._first(self._exited, timeout_s=GROUP_POLL_S)
            if await self._alive(pgid):
                forced = True
                log.warning(
                    "grace ran out, killing model=%s instance=%s pgid=%s",
                    self.model,
                    self.instance,
                    pgid,
                )
                signal_group(pgid, signal.SIGKILL)
                await wait_group_gone(pgid, KILL_WAIT_S)
        await self._finish_output()
        return forced

    async def _alive(self, pgid: int) -> bool:
        """While our leader runs the group is alive; after, scan for members off the loop."""
        if self._popen is not None and not self._exited.is_set():
            return True
        return await asyncio.to_thread(group_alive, pgid)

    def _graceful_stop(self, pgid: int, cmd_stop: str | None) -> None:
        argv = None
        if cmd_stop and self.pid is not None:
            try:
                argv = stop_command(cmd_stop, self.pid, model_id=self.model)
            except ProcessError as exc:
                log.warning("cmdStop unusable, sending SIGTERM model=%s error=%s", self.model, exc)
        if argv is not None:
            self._spawn_helper(self._run_cmd_stop(argv))
            return
        if not signal_group(pgid, signal.SIGTERM) and self.pid is not None:
            try:
                os.kill(self.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass

    async def _run_cmd_stop(self, argv: list[str]) -> None:
        """Run `cmdStop` with the upstream's env; its output goes to the model's log."""
        log.info("running cmdStop model=%s argv=%s", self.model, argv)
        try:
            popen = spawn(argv, self.spec, spawn_env(self.spec, self._tag, role="stop"))
        except (OSError, ValueError, subprocess.SubprocessError) as exc:
            log.warning(
                "cmdStop failed to start, sending SIGTERM model=%s error=%s", self.model, exc
            )
            if self.pgid is not None:
                signal_group(self.pgid, signal.SIGTERM)
            return
        pipe = OutputPipe()
        assert popen.stdout is not None
        await pipe.attach(popen.stdout, self._write_output)
        try:
            await wait_exit(popen.pid)
            code = popen.poll()
            if code:
                log.warning("cmdStop exited model=%s code=%s", self.model, code)
        finally:
            if popen.poll() is None:  # still running when we are cancelled: do not leak it
                signal_group(popen.pid, signal.SIGKILL)
                await asyncio.shield(asyncio.to_thread(popen.wait))
            await pipe.close_after(self._tuning.pipe_backstop_ms / 1000)

    async def _reap_group_after_exit(self) -> None:
        """The leader exited on its own: kill what is left of its group, collect the output."""
        if self.pgid is not None and await asyncio.to_thread(group_alive, self.pgid):
            signal_group(self.pgid, signal.SIGKILL)
            await wait_group_gone(self.pgid, KILL_WAIT_S)
        await self._finish_output()

    async def _finish_output(self) -> None:
        if self._popen is not None and not self._exited.is_set():
            try:  # SIGKILLed by now; only a process stuck in the kernel can take longer
                await asyncio.wait_for(self._exited.wait(), KILL_WAIT_S)
            except TimeoutError:
                log.error("leader did not exit after SIGKILL model=%s pid=%s", self.model, self.pid)
        ended = await self._pipe.close_after(self._tuning.pipe_backstop_ms / 1000)
        if not ended:
            log.warning(
                "output pipe still held after exit, closed it model=%s instance=%s",
                self.model,
                self.instance,
            )

    async def _end_helpers(self) -> None:
        """Give a running `cmdStop` a moment to finish, then cancel (and so kill) it."""
        helpers = set(self._helpers)
        if not helpers:
            return
        _, pending = await asyncio.wait(helpers, timeout=self._tuning.pipe_backstop_ms / 1000)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)

    # -- plumbing -----------------------------------------------------------------------------

    def _spawn_helper(self, coro: object) -> None:
        task = asyncio.ensure_future(coro)  # type: ignore[arg-type]
        self._helpers.add(task)
        task.add_done_callback(self._helpers.discard)

    def _start_failed(self, error: str) -> ProcessStartFailed:
        return ProcessStartFailed(model=self.model, instance=self.instance, error=error)

    def _emit(self, event: Event) -> None:
        try:
            self._report(event)
        except Exception:
            log.exception("report failed for %s", event.type_name)


__all__ = ["ProcessInfo", "Tuning", "UpstreamProcess"]
