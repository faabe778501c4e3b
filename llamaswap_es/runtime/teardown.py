"""Ending one upstream instance: its process group, its escaped descendants, its `cmdStop`, and
its output pipe.

The life cycle (`upstream_process`) decides *when* an instance ends; this module knows *how*:

* a stop: `cmdStop` or SIGTERM to the group, SIGKILL to the group once the grace runs out, then
  wait until no member is left (zombies do not count, see `process_group`);
* a crash (the leader exited on its own): SIGKILL what is left of the group at once;
* then, either way, the escapees: a descendant that left the group (`setsid`, a daemonising
  wrapper) is out of reach of the group's signals but still carries the instance's tag
  (`orphans`). Every live process with exactly this instance's tag gets the same treatment as
  the group had: SIGTERM and what is left of the grace after a stop, SIGKILL at once after a
  crash. Otherwise an "unloaded" model could keep holding its GPU memory;
* last, collect the rest of the output, bounded by the pipe backstop.

The grace is a deadline on the loop's clock that a later, shorter stop request may pull in
while the teardown is already waiting (`shorten_deadline`).
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import subprocess
from collections.abc import Callable, Coroutine
from typing import Any

import psutil

from llamaswap_es.errors import ProcessError
from llamaswap_es.runtime.exit_watch import wait_exit
from llamaswap_es.runtime.orphans import tagged_with
from llamaswap_es.runtime.output_pipe import OutputPipe
from llamaswap_es.runtime.process_group import (
    GROUP_POLL_S,
    KILL_WAIT_S,
    group_alive,
    signal_group,
    wait_group_gone,
)
from llamaswap_es.runtime.process_spec import ProcessSpec, stop_command
from llamaswap_es.runtime.spawn import spawn, spawn_env

log = logging.getLogger("llamaswap_es.runtime.executor")


class Teardown:
    """How one instance's processes are stopped, killed and reaped (see the module doc).

    `exited` is set by the owner when the leader has exited (and, for an own child, been
    reaped); `spawn_helper` runs a side task (the `cmdStop`) that the owner waits for or
    cancels at its end.
    """

    def __init__(
        self,
        spec: ProcessSpec,
        *,
        tag: str,
        exited: asyncio.Event,
        pipe: OutputPipe,
        write_output: Callable[[str], None],
        spawn_helper: Callable[[Coroutine[Any, Any, None]], None],
        pipe_backstop_s: float,
    ) -> None:
        self.spec = spec
        self.model = spec.model_id
        self.pid: int | None = None
        self.pgid: int | None = None
        self.deadline = 0.0
        """When the grace ends, on the running loop's clock."""
        self._own_child = False
        self._tag = tag
        self._exited = exited
        self._pipe = pipe
        self._write_output = write_output
        self._spawn_helper = spawn_helper
        self._pipe_backstop_s = pipe_backstop_s

    def track(self, pid: int, pgid: int, *, own_child: bool) -> None:
        """The leader to stop: our child (reaped by the owner) or an adopted process."""
        self.pid, self.pgid, self._own_child = pid, pgid, own_child

    def set_grace(self, grace_ms: int) -> None:
        self.deadline = asyncio.get_running_loop().time() + max(grace_ms, 0) / 1000

    def shorten_grace(self, grace_ms: int) -> bool:
        """Pull the deadline in to `grace_ms` from now, never push it out; True if it moved."""
        deadline = asyncio.get_running_loop().time() + max(grace_ms, 0) / 1000
        if deadline < self.deadline:
            self.deadline = deadline
            return True
        return False

    # -- the two ways an instance ends ----------------------------------------------------------

    async def stop(self, cmd_stop: str | None) -> bool:
        """Gracefully stop the group, SIGKILL it when the grace runs out; True if killed."""
        loop = asyncio.get_running_loop()
        pgid = self.pgid
        forced = False
        if pgid is not None and await self._alive(pgid):
            self._graceful_stop(pgid, cmd_stop)
            while await self._alive(pgid) and loop.time() < self.deadline:
                if self._exited.is_set():  # the leader is gone, other members linger: poll
                    await asyncio.sleep(GROUP_POLL_S)
                else:
                    await _wait_or_timeout(self._exited, GROUP_POLL_S)
            if await self._alive(pgid):
                forced = True
                log.warning(
                    "grace ran out, killing model=%s tag=%s pgid=%s", self.model, self._tag, pgid
                )
                signal_group(pgid, signal.SIGKILL)
                await wait_group_gone(pgid, KILL_WAIT_S)
        if pgid is not None:
            forced = await self._end_escapees(graceful=True) or forced
        await self._finish_output()
        return forced

    async def reap_after_exit(self) -> None:
        """The leader exited on its own: kill what is left of its group, collect the output."""
        if self.pgid is not None and await asyncio.to_thread(group_alive, self.pgid):
            signal_group(self.pgid, signal.SIGKILL)
            await wait_group_gone(self.pgid, KILL_WAIT_S)
        if self.pgid is not None:
            await self._end_escapees(graceful=False)
        await self._finish_output()

    def kill_now(self) -> None:
        """Last resort when the owner is cancelled: SIGKILL whatever is left, synchronously.

        That includes the escapees, found with a (blocking, a few ms) scan: this path is rare
        and must not leave anything behind.
        """
        if self.pgid is not None:
            try:
                signal_group(self.pgid, signal.SIGKILL)
            except ValueError:
                pass
            signal_each(tagged_with((self._tag,)), signal.SIGKILL)
        self._pipe.close_now()

    # -- the parts ------------------------------------------------------------------------------

    async def _alive(self, pgid: int) -> bool:
        """While our leader runs the group is alive; after, scan for members off the loop."""
        if self._own_child and not self._exited.is_set():
            return True
        return await asyncio.to_thread(group_alive, pgid)

    async def _end_escapees(self, *, graceful: bool) -> bool:
        """Stop what still carries this instance's tag now that its group is gone.

        `graceful`: SIGTERM and the rest of the grace first (a stop); else SIGKILL at once (a
        crash). True when SIGKILL was needed.
        """
        escapees = await asyncio.to_thread(tagged_with, (self._tag,))
        if not escapees:
            return False
        log.warning(
            "stopping processes that left the group model=%s tag=%s pids=%s",
            self.model,
            self._tag,
            [proc.pid for proc in escapees],
        )
        if graceful:
            signal_each(escapees, signal.SIGTERM)
            escapees = await _wait_gone(escapees, lambda: self.deadline)
            if not escapees:
                return False
            log.warning(
                "grace ran out, killing model=%s pids=%s", self.model, [p.pid for p in escapees]
            )
        signal_each(escapees, signal.SIGKILL)
        kill_deadline = asyncio.get_running_loop().time() + KILL_WAIT_S
        left = await _wait_gone(escapees, lambda: kill_deadline)
        if left:
            pids = [proc.pid for proc in left]
            log.error("still alive after SIGKILL model=%s pids=%s", self.model, pids)
        return True

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
            await pipe.close_after(self._pipe_backstop_s)

    async def _finish_output(self) -> None:
        if self._own_child and not self._exited.is_set():
            try:  # SIGKILLed by now; only a process stuck in the kernel can take longer
                await asyncio.wait_for(self._exited.wait(), KILL_WAIT_S)
            except TimeoutError:
                log.error("leader did not exit after SIGKILL model=%s pid=%s", self.model, self.pid)
        ended = await self._pipe.close_after(self._pipe_backstop_s)
        if not ended:
            log.warning("output pipe still held after exit, closed it model=%s", self.model)


def signal_each(procs: list[psutil.Process], sig: int) -> None:
    """Send `sig` to each process still alive; a pid reused since the scan is left alone."""
    for proc in procs:
        try:
            proc.send_signal(sig)
        except psutil.Error:  # gone (or reused: psutil checks the creation time), or not ours
            pass


def _still_alive(procs: list[psutil.Process]) -> list[psutil.Process]:
    alive = []
    for proc in procs:
        try:
            if proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE:
                alive.append(proc)
        except psutil.NoSuchProcess:
            continue
        except psutil.Error:
            alive.append(proc)
    return alive


async def _wait_gone(
    procs: list[psutil.Process], deadline: Callable[[], float]
) -> list[psutil.Process]:
    """Poll (off the loop) until every process is gone or `deadline()` passes; the survivors.

    `deadline` is read again at each poll, so a stop request that shortens the grace counts.
    """
    loop = asyncio.get_running_loop()
    while True:
        procs = await asyncio.to_thread(_still_alive, procs)
        if not procs or loop.time() >= deadline():
            return procs
        await asyncio.sleep(GROUP_POLL_S)


async def _wait_or_timeout(event: asyncio.Event, timeout_s: float) -> None:
    try:
        await asyncio.wait_for(event.wait(), timeout_s)
    except TimeoutError:
        pass


__all__ = ["Teardown", "signal_each"]
