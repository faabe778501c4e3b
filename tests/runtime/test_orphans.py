"""Recovery building blocks: finding tagged processes, telling reused pids apart, adopting."""

from __future__ import annotations

import asyncio
import os
import signal
import sys

from llamaswap_es.events.types import ProcessExited, ProcessStopped
from llamaswap_es.runtime.orphans import (
    find_tagged_processes,
    kill_group,
    probe_health,
    process_matches,
    process_started_at_ms,
)
from llamaswap_es.runtime.process_group import group_alive
from tests.conftest import free_port
from tests.fixtures.processes import fake_spec, fake_upstream_cmd, pid_gone
from tests.runtime.conftest import Harness


def fake_argv(port: int, *flags: str) -> list[str]:
    return fake_upstream_cmd(port, *flags).split()


async def wait_answers(port: int, path: str = "/health") -> None:
    """Probe until the fake answers 200 on `path` (each probe bounded, 15 s in all)."""
    deadline = asyncio.get_running_loop().time() + 15
    while not await probe_health(f"http://127.0.0.1:{port}{path}", timeout_ms=500):
        assert asyncio.get_running_loop().time() < deadline, f"{path} never answered 200"
        await asyncio.sleep(0.02)


async def test_tagged_processes_are_found_with_model_and_instance(
    spawn_tagged, env_tag: str
) -> None:
    port = free_port()
    upstream = spawn_tagged(fake_argv(port), model="author/model:F16", instance=12)
    other = spawn_tagged([sys.executable, "-c", "import time; time.sleep(30)"], instance=1)
    await wait_answers(port)

    found = {p.pid: p for p in find_tagged_processes(env_tag)}
    assert set(found) == {upstream.pid, other.pid}
    mine = found[upstream.pid]
    assert (mine.model, mine.instance, mine.pgid, mine.role) == (
        "author/model:F16",
        12,
        upstream.pid,
        "upstream",
    )
    assert mine.started_at_ms == process_started_at_ms(upstream.pid)
    assert find_tagged_processes(env_tag + "-other") == []
    assert find_tagged_processes(env_tag[:-1]) == []  # a prefix of the tag is another server


async def test_a_reused_pid_does_not_match(spawn_tagged) -> None:
    proc = spawn_tagged([sys.executable, "-c", "import time; time.sleep(30)"])
    started = process_started_at_ms(proc.pid)
    assert started is not None
    assert process_matches(proc.pid, started)
    # Same pid, different creation time: what a pid handed to another process looks like.
    assert not process_matches(proc.pid, started - 5_000)
    assert not process_matches(proc.pid, started + 5_000)
    proc.kill()
    proc.wait()
    assert not process_matches(proc.pid, started)


async def test_kill_group_escalates_to_sigkill(spawn_tagged) -> None:
    port = free_port()
    proc = spawn_tagged(fake_argv(port, "--ignore-sigterm"))
    await wait_answers(port)
    assert await kill_group(proc.pid, grace_ms=200) is True
    assert proc.wait(timeout=5) == -signal.SIGKILL
    assert not group_alive(proc.pid)

    polite = spawn_tagged(fake_argv(free_port()))
    assert await kill_group(polite.pid, grace_ms=5_000) is False
    polite.wait(timeout=5)


async def test_probe_health_needs_exactly_200(spawn_tagged) -> None:
    port = free_port()
    assert not await probe_health(f"http://127.0.0.1:{port}/health", timeout_ms=300)
    spawn_tagged(fake_argv(port, "--load-delay-ms", "60000"))
    await wait_answers(port, "/")  # it serves, but is loading: /health answers 503
    assert not await probe_health(f"http://127.0.0.1:{port}/health", timeout_ms=500)


async def test_adopted_process_is_served_and_stopped_like_our_own(
    harness: Harness, spawn_tagged
) -> None:
    port = free_port()
    proc = spawn_tagged(fake_argv(port, "--fork-child"), model="kept", instance=4)
    await wait_answers(port)
    started = process_started_at_ms(proc.pid)
    assert started is not None and process_matches(proc.pid, started)

    harness.executor.adopt(fake_spec("kept", port), 4, proc.pid, proc.pid, started)
    assert harness.executor.address("kept") == (4, f"http://127.0.0.1:{port}")
    info = harness.executor.running()["kept"]
    assert (info.pid, info.state, info.adopted) == (proc.pid, "ready", True)

    harness.executor.stop("kept", 4, grace_ms=5_000)
    stopped = await harness.events.expect(ProcessStopped)
    assert (stopped.model, stopped.instance, stopped.forced) == ("kept", 4, False)
    assert not group_alive(proc.pid)  # the leader is an unreaped zombie of ours: not alive
    proc.wait(timeout=5)


async def test_adopted_process_that_dies_is_reported_and_its_group_killed(
    harness: Harness, spawn_tagged
) -> None:
    port = free_port()
    proc = spawn_tagged(fake_argv(port, "--fork-child"), model="kept", instance=1)
    await wait_answers(port)
    harness.executor.adopt(fake_spec("kept", port), 1, proc.pid, proc.pid)
    os.kill(proc.pid, signal.SIGKILL)  # the wrapper dies; its forked server survives it
    exited = await harness.events.expect(ProcessExited)
    assert (exited.model, exited.instance, exited.pid) == ("kept", 1, proc.pid)
    assert exited.exit_code is None  # not our child: no status to read
    assert not group_alive(proc.pid)
    proc.wait(timeout=5)
    assert pid_gone(proc.pid)
