"""The life of one upstream instance: spawn, probe until healthy, watch, stop, report.

One task per instance owns every transition, so a stop that lands mid-start, a crash and a
health timeout can never race each other: the task sees whichever happened first and settles it.
Every outcome is reported as one event (spec/core.md §1.3-1.6, ARCHITECTURE §6 and §9):

* spawn error, early exit, health timeout -> `ProcessStartFailed` (group already cleaned up),
  with its kind, the exit status and the tail of the model's own output (`output_tail`);
* healthy -> `ProcessReady`; later exit nobody asked for -> rest of the group killed,
  `ProcessExited` (with its output tail); while ready, enough health probes in a row
  unanswered -> `ProcessHung`, once (the reducer then sends the stop; `hang_watch`);
* stop requested (at any point, also before the spawn) -> `ProcessStopped` only, once the whole
  group is gone and reaped.

How the processes are stopped, killed and reaped is `teardown`'s job; this module decides when.
"""

from __future__ import annotations

import asyncio
import logging
import subprocess
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any, Literal

import aiohttp

from llamaswap_es.core.start_backoff import describe_exit
from llamaswap_es.errors import ProcessError
from llamaswap_es.events.types import (
    START_COMMAND,
    START_EXITED,
    START_INTERNAL,
    START_PORT,
    START_SPAWN,
    START_TIMEOUT,
    Event,
    ProcessExited,
    ProcessHung,
    ProcessReady,
    ProcessSpawned,
    ProcessStartFailed,
    ProcessStopped,
)
from llamaswap_es.runtime.adopted_output import attach_adopted_output
from llamaswap_es.runtime.exit_watch import open_pidfd, wait_exit
from llamaswap_es.runtime.hang_watch import HangDetection, HangVerdict, watch_for_hang
from llamaswap_es.runtime.logs import UpstreamLogs
from llamaswap_es.runtime.orphans import process_started_at_ms
from llamaswap_es.runtime.output_pipe import OutputPipe
from llamaswap_es.runtime.output_tail import OutputTail
from llamaswap_es.runtime.port_choice import PortChooser
from llamaswap_es.runtime.port_guard import port_taken
from llamaswap_es.runtime.process_spec import ProcessSpec
from llamaswap_es.runtime.readiness import await_ready, wait_first
from llamaswap_es.runtime.spawn import spawn, spawn_env, spawn_error
from llamaswap_es.runtime.teardown import Teardown

log = logging.getLogger("llamaswap_es.runtime.executor")

State = Literal["starting", "ready", "stopping", "exited"]


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
        hang_detection: Callable[[], HangDetection] = HangDetection,
        ports: PortChooser | None = None,
    ) -> None:
        self.spec = spec
        self._ports = ports
        self.model = spec.model_id
        self.instance = instance
        self.state: State = "starting"
        self.started_at_ms: int | None = None
        self.adopted = False
        self._tag = tag
        self._logs = logs
        self._report = report
        self._session = session
        self._tuning = tuning
        self._clock_ms = clock_ms
        self._hang_detection = hang_detection
        self._pipe = OutputPipe()
        self._tail = OutputTail()
        self._popen: subprocess.Popen[bytes] | None = None
        self._exited = asyncio.Event()
        self._exit_code: int | None = None
        self._exit_signal: int | None = None
        self._stop = asyncio.Event()
        self._stop_cmd: str | None = None
        self._helpers: set[asyncio.Task[None]] = set()
        self._teardown = Teardown(
            spec,
            tag=tag,
            exited=self._exited,
            pipe=self._pipe,
            write_output=self._write_output,
            spawn_helper=self._spawn_helper,
            pipe_backstop_s=tuning.pipe_backstop_ms / 1000,
        )

    @property
    def pid(self) -> int | None:
        return self._teardown.pid

    @property
    def pgid(self) -> int | None:
        return self._teardown.pgid

    # -- control from the executor ------------------------------------------------------------

    def serves(self) -> bool:
        """True if requests may go to this instance: ready, and its leader has not exited.

        The leader is checked here too (a non-blocking `waitpid`), not only by its exit watch:
        a client whose stream just broke because the upstream died can send its next request
        before the loop has run the watch; it must not be dispatched to the dead process.
        """
        if self.state != "ready":
            return False
        return self._popen is None or self._popen.poll() is None

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
        if self._stop.is_set():
            self._teardown.shorten_grace(grace_ms)
            return
        self._teardown.set_grace(grace_ms)
        self._stop_cmd = cmd_stop
        self._stop.set()
        if self.state == "ready":
            self.state = "stopping"  # at once: address() must stop handing it out

    def kill_now(self) -> None:
        """Last resort when the task is cancelled: SIGKILL whatever is left, synchronously."""
        self._teardown.kill_now()

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
                self._emit(self._start_failed(f"internal error: {exc}", START_INTERNAL))
            else:
                self._emit(
                    ProcessExited(
                        model=self.model,
                        instance=self.instance,
                        pid=self.pid,
                        output_tail=self._tail.text(),
                    )
                )
        finally:
            self.state = "exited"
            await self._end_helpers()

    def mark_adopted(self, pid: int, pgid: int, started_at_ms: int | None) -> None:
        """Take over a live process from a previous run (not our child) as a ready instance."""
        self.adopted = True
        self._teardown.track(pid, pgid, own_child=False)
        self.started_at_ms = started_at_ms
        self.state = "ready"

    async def run_adopted(self) -> None:
        """Watch an adopted process until it exits or is stopped (see `mark_adopted`)."""
        assert self.pid is not None
        pidfd = open_pidfd(self.pid)
        await attach_adopted_output(self._pipe, self.pid, self._write_output, self.model)
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
        outcome = await await_ready(
            self.spec,
            self._session,
            stop=self._stop,
            exited=self._exited,
            probe_interval_ms=self._tuning.probe_interval_ms,
            probe_timeout_ms=self._tuning.probe_timeout_ms,
        )
        if outcome == "ready":
            log.info("health check passed model=%s instance=%s", self.model, self.instance)
            self.state = "ready"
            self._emit(
                ProcessReady(
                    model=self.model,
                    instance=self.instance,
                    pid=self.pid,
                    address=self.spec.proxy,  # after any port move: where requests go
                )
            )
            await self._settle_ready()
            return
        if outcome == "stop":
            await self._stop_and_report()
            return
        if outcome == "exited":
            error, kind = "upstream command exited prematurely", START_EXITED
            await self._teardown.reap_after_exit()  # also reads the rest of its output
        else:
            timeout_s = self.spec.health_check_timeout_ms / 1000
            error, kind = f"health check timed out after {timeout_s:g}s", START_TIMEOUT
            self._teardown.set_grace(self._tuning.abort_grace_ms)
            await self._teardown.stop(self.spec.cmd_stop)
        self._emit(self._start_failed(error, kind, exited=outcome == "exited"))
        if self._stop.is_set():
            self._emit(ProcessStopped(model=self.model, instance=self.instance))

    async def _settle_ready(self) -> None:
        """Wait for a stop or an exit of a ready instance and settle it; watch for a hang."""
        await self._serve_watched()
        if self._stop.is_set():
            await self._stop_and_report()
            return
        self.state = "exited"  # at once: address() must not hand out a dead upstream meanwhile
        await self._teardown.reap_after_exit()  # also reads the rest of its output
        tail = self._tail.text()
        log.warning(
            "upstream exited unexpectedly model=%s instance=%s code=%s signal=%s output_tail=%r",
            self.model,
            self.instance,
            self._exit_code,
            self._exit_signal,
            tail,
        )
        self._emit(
            ProcessExited(
                model=self.model,
                instance=self.instance,
                pid=self.pid,
                exit_code=self._exit_code,
                signal=self._exit_signal,
                output_tail=tail,
            )
        )

    async def _serve_watched(self) -> None:
        """Until a stop or an exit: probe for a hang, and report one once (`ProcessHung`).

        The instance keeps serving after the report: the reducer answers with a stop, which ends
        this wait like any other. A model without a health check (`checkEndpoint: none`) has
        nothing to probe and is not watched.
        """
        if self.spec.skips_health_check:
            await wait_first(self._stop, self._exited)
            return
        name = f"{self.model}#{self.instance}"
        watch = asyncio.ensure_future(
            watch_for_hang(self.spec.health_url, self._session, self._hang_detection, name=name)
        )
        try:
            await wait_first(self._stop, self._exited, probe=watch)
        finally:
            if not watch.done():
                watch.cancel()
                await asyncio.gather(watch, return_exceptions=True)
        if self._stop.is_set() or self._exited.is_set() or watch.cancelled():
            return
        failure = watch.exception()
        if failure is not None:  # a bug in the watch must not end the instance: serve unwatched
            log.error(
                "hang watch failed model=%s instance=%s: %r", self.model, self.instance, failure
            )
        else:
            self._report_hung(watch.result())
        await wait_first(self._stop, self._exited)

    def _report_hung(self, verdict: HangVerdict) -> None:
        log.error(
            "upstream hung model=%s instance=%s pid=%s error=%r",
            self.model,
            self.instance,
            self.pid,
            verdict.error,
        )
        self._emit(
            ProcessHung(
                model=self.model,
                instance=self.instance,
                failures=verdict.failures,
                error=verdict.error,
            )
        )

    async def _stop_and_report(self) -> None:
        self.state = "stopping"
        forced = await self._teardown.stop(self._stop_cmd)
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
            self._emit(self._start_failed("upstream proxy missing", START_COMMAND))
            return False
        try:
            argv = self.spec.argv()
        except ProcessError as exc:
            self._emit(self._start_failed(str(exc), START_COMMAND))
            return False
        moved_from = None
        if not self.spec.skips_health_check:
            taken = await asyncio.to_thread(port_taken, self.spec.proxy, self.spec.port)
            if taken and self.spec.auto_port is not None and self._ports is not None:
                moved_from, taken = self.spec.port, await self._move_port(taken)
                argv = self.spec.argv() if taken is None else argv
            if taken:
                self._emit(self._start_failed(taken, START_PORT))
                return False
        try:
            popen = spawn(argv, self.spec, spawn_env(self.spec, self._tag))
        except (OSError, ValueError, subprocess.SubprocessError) as exc:
            error, permanent = spawn_error(exc, argv, self.spec.cwd)
            self._emit(self._start_failed(error, START_COMMAND if permanent else START_SPAWN))
            return False
        self._popen = popen
        self._teardown.track(popen.pid, popen.pid, own_child=True)
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
                port_moved_from=moved_from,
            )
        )
        return True

    async def _move_port(self, taken: str) -> str | None:
        """`${PORT}` chose a port someone holds: take a free one (None) or say why not."""
        assert self._ports is not None
        port = await asyncio.to_thread(self._ports.choose, self.spec, (self.model, self.instance))
        if port is None:
            return f"{taken}; no free port was found above it either"
        log.warning(
            "model %s: port %s is in use by another program, starting it on port %d instead",
            self.model, self.spec.port, port,
        )  # fmt: skip
        self.spec = self.spec.on_port(port)
        self._teardown.spec = self.spec
        return None

    def _write_output(self, text: str) -> None:
        self._tail.write(text)
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

    # -- the end ------------------------------------------------------------------------------

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

    def _spawn_helper(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(coro)
        self._helpers.add(task)
        task.add_done_callback(self._helpers.discard)

    def _start_failed(self, error: str, kind: str, *, exited: bool = False) -> ProcessStartFailed:
        """The failure event, with the exit status (when it exited) and the output tail; logged
        here once, as one line, so the server's log says why without the model's log."""
        event = ProcessStartFailed(
            model=self.model,
            instance=self.instance,
            error=error,
            kind=kind,
            exit_code=self._exit_code if exited else None,
            signal=self._exit_signal if exited else None,
            output_tail=self._tail.text(),
        )
        log.warning(
            "start failed model=%s instance=%s kind=%s error=%r exit=%r output_tail=%r",
            self.model,
            self.instance,
            kind,
            error,
            describe_exit(event.exit_code, event.signal),
            event.output_tail,
        )
        return event

    def _emit(self, event: Event) -> None:
        try:
            self._report(event)
        except Exception:
            log.exception("report failed for %s", event.type_name)


__all__ = ["ProcessInfo", "Tuning", "UpstreamProcess"]
