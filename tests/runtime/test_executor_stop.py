"""Stopping upstreams: wrappers, SIGTERM ignored, cmdStop, a second stop, held pipes."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import aiohttp

from llamaswap_es.events.types import ProcessReady, ProcessSpawned, ProcessStopped
from llamaswap_es.runtime.orphans import find_tagged_processes
from llamaswap_es.runtime.process_group import group_alive
from llamaswap_es.runtime.process_spec import ENV_TAG_VAR
from tests.conftest import free_port
from tests.fixtures.processes import fake_spec, fake_upstream_cmd, pid_gone, wait_until
from tests.runtime.conftest import Harness


async def served_pid(base: str) -> int:
    async with aiohttp.ClientSession() as session, session.get(f"{base}/fake/info") as resp:
        return (await resp.json())["pid"]


async def start_ready(harness: Harness, spec, instance: int = 1) -> ProcessSpawned:  # type: ignore[no-untyped-def]
    harness.executor.start(spec, instance)
    spawned = await harness.events.expect(ProcessSpawned)
    await harness.events.expect(ProcessReady)
    return spawned


async def test_shell_wrapper_that_forks_the_server_leaves_nothing_behind(harness: Harness) -> None:
    port = free_port()
    cmd = f"sh -c '{fake_upstream_cmd(port)} & wait'"
    spawned = await start_ready(harness, fake_spec("wrapped", port, cmd=cmd))
    server = await served_pid(f"http://127.0.0.1:{port}")
    assert server != spawned.pid  # the shell is the leader, the server its child

    harness.executor.stop("wrapped", 1, grace_ms=5_000)
    stopped = await harness.events.expect(ProcessStopped)
    assert not stopped.forced
    assert pid_gone(server) and pid_gone(spawned.pid)
    assert not group_alive(spawned.pgid)


async def test_sigterm_ignored_is_killed_after_the_grace(harness: Harness) -> None:
    port = free_port()
    spawned = await start_ready(harness, fake_spec("stubborn", port, "--ignore-sigterm"))
    harness.executor.stop("stubborn", 1, grace_ms=300)
    stopped = await harness.events.expect(ProcessStopped)
    assert stopped.forced
    assert stopped.signal == 9
    assert not group_alive(spawned.pgid)


async def test_a_second_stop_shortens_the_grace_and_one_stopped_is_reported(
    harness: Harness,
) -> None:
    spawned = await start_ready(harness, fake_spec("stubborn", free_port(), "--ignore-sigterm"))
    harness.executor.stop("stubborn", 1, grace_ms=600_000)
    assert harness.executor.running()["stubborn"].state == "stopping"
    harness.executor.stop("stubborn", 1, grace_ms=200)  # e.g. shutdown during an eviction
    stopped = await harness.events.expect(ProcessStopped, timeout_s=10)
    assert stopped.forced
    assert not group_alive(spawned.pgid)
    assert len(harness.events.of(ProcessStopped)) == 1


async def test_cmd_stop_is_run_with_the_pid_and_the_models_env(
    harness: Harness, tmp_path: Path
) -> None:
    marker = tmp_path / "marker"
    cmd_stop = f"sh -c 'echo \"$STOP_NOTE ${{PID}}\" > {marker}; kill ${{PID}}'"
    spec = fake_spec("stoppable", free_port(), cmd_stop=cmd_stop, env={"STOP_NOTE": "bye"})
    spawned = await start_ready(harness, spec)
    harness.executor.stop("stoppable", 1, grace_ms=5_000)
    stopped = await harness.events.expect(ProcessStopped)
    assert not stopped.forced
    assert marker.read_text().strip() == f"bye {spawned.pid}"
    assert not group_alive(spawned.pgid)


async def test_stop_argument_overrides_cmd_stop(harness: Harness, tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    spec = fake_spec("plain", free_port(), cmd_stop=f"touch {marker}")
    await start_ready(harness, spec)
    harness.executor.stop("plain", 1, grace_ms=5_000, cmd_stop="")  # "" forces SIGTERM
    stopped = await harness.events.expect(ProcessStopped)
    assert (stopped.exit_code, stopped.forced) == (0, False)  # the fake exits 0 on SIGTERM
    assert not marker.exists()


async def test_output_pipe_held_by_a_process_out_of_reach_does_not_hang_the_stop(
    harness: Harness, env_tag: str
) -> None:
    # The grandchild leaves the group (setsid), keeps the output pipe open and carries another
    # server's tag (a daemon the wrapper started for someone else): the stop must not touch it,
    # and must still finish (the pipe backstop).
    port = free_port()
    foreign_tag = f"{env_tag}-other:leaky:1"
    sleeper = f"{sys.executable} -c 'import time; time.sleep(60)'"
    escapee = f"{ENV_TAG_VAR}={foreign_tag} setsid {sleeper} &"
    cmd = f'sh -c "{escapee} exec {fake_upstream_cmd(port)}"'
    spawned = await start_ready(harness, fake_spec("leaky", port, cmd=cmd))
    harness.executor.stop("leaky", 1, grace_ms=5_000)
    stopped = await harness.events.expect(ProcessStopped, timeout_s=10)
    assert not stopped.forced
    assert not group_alive(spawned.pgid)
    escaped = [p for p in find_tagged_processes(env_tag + "-other") if p.model == "leaky"]
    assert len(escaped) == 1 and escaped[0].pgid != spawned.pgid
    os.kill(escaped[0].pid, signal.SIGKILL)
    await wait_until(lambda: pid_gone(escaped[0].pid), what="the escapee to die")


async def test_a_lingering_group_member_never_freezes_the_event_loop(harness: Harness) -> None:
    """The shell (the leader) dies on SIGTERM, its child ignores it: while the stop waits out
    the grace for that child, everything else the server does must keep running."""
    import asyncio

    port = free_port()
    cmd = f"sh -c '{fake_upstream_cmd(port, '--ignore-sigterm')} & wait'"
    spawned = await start_ready(harness, fake_spec("stubborn", port, cmd=cmd))
    loop = asyncio.get_running_loop()
    gaps: list[float] = []

    async def ticker() -> None:
        last = loop.time()
        while True:
            await asyncio.sleep(0.01)
            now = loop.time()
            gaps.append(now - last)
            last = now

    ticking = asyncio.create_task(ticker())
    harness.executor.stop("stubborn", 1, grace_ms=2_000)
    stopped = await harness.events.expect(ProcessStopped)
    ticking.cancel()
    assert stopped.forced, "the child ignored SIGTERM: the grace ran out"
    assert max(gaps) < 1.0, f"the event loop stalled for {max(gaps):.2f}s during the stop"
    assert not group_alive(spawned.pgid)
