"""Descendants that left their model's process group (`setsid`, a daemonising wrapper) do not
survive a stop, a crash or a shutdown; processes of other instances, models and servers are
never touched."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from llamaswap_es.events.types import ProcessExited, ProcessReady, ProcessSpawned, ProcessStopped
from llamaswap_es.runtime.orphans import TaggedProcess, find_tagged_processes
from llamaswap_es.runtime.process_group import group_alive
from llamaswap_es.runtime.process_spec import ENV_TAG_VAR, ProcessSpec
from tests.conftest import free_port
from tests.fixtures.processes import (
    fake_spec,
    fake_upstream_cmd,
    pid_gone,
    wait_until,
)
from tests.runtime.conftest import Harness

SLEEPER = [sys.executable, "-c", "import time; time.sleep(60)"]


def wrapper_spec(tmp_path: Path, model: str, escapee: str) -> ProcessSpec:
    """A `cmd` that is a shell script: it starts `escapee` in a session of its own, in the
    background, then becomes the server (so the server is the group leader)."""
    port = free_port()
    script = tmp_path / f"{model}.sh"
    script.write_text(f"#!/bin/sh\nsetsid {escapee} &\nexec {fake_upstream_cmd(port)}\n")
    return fake_spec(model, port, cmd=f"sh {script}")


async def start_with_escapee(
    harness: Harness, env_tag: str, spec: ProcessSpec, instance: int = 1
) -> tuple[ProcessSpawned, TaggedProcess]:
    harness.executor.start(spec, instance)
    spawned = await harness.events.expect(ProcessSpawned)
    await harness.events.expect(ProcessReady)
    escaped: list[TaggedProcess] = []

    def found() -> bool:
        escaped[:] = [
            p
            for p in find_tagged_processes(env_tag)
            if (p.model, p.instance) == (spec.model_id, instance) and p.pgid != spawned.pgid
        ]
        return bool(escaped)

    await wait_until(found, what="the escapee to be running")
    assert len(escaped) == 1
    return spawned, escaped[0]


async def test_a_stop_ends_the_escapee_and_nothing_of_other_instances_or_servers(
    harness: Harness, env_tag: str, spawn_tagged, tmp_path: Path
) -> None:
    spec = wrapper_spec(tmp_path, "leaky", "sleep 60")
    spawned, escapee = await start_with_escapee(harness, env_tag, spec, instance=3)
    other_instance = spawn_tagged(SLEEPER, model="leaky", instance=4)
    other_model = spawn_tagged(SLEEPER, model="other", instance=3)
    other_server = subprocess.Popen(  # the same model and instance, another server's tag
        SLEEPER,
        env=dict(os.environ, **{ENV_TAG_VAR: f"{env_tag}-other:leaky:3"}),
        start_new_session=True,
    )
    try:
        harness.executor.stop("leaky", 3, grace_ms=5_000)
        stopped = await harness.events.expect(ProcessStopped)
        assert not stopped.forced  # `sleep` ends on SIGTERM: well within the grace
        assert not group_alive(spawned.pgid)
        await wait_until(lambda: pid_gone(escapee.pid), timeout_s=5, what="the escapee to die")
        for bystander in (other_instance, other_model, other_server):
            assert bystander.poll() is None, "a process of another instance/model/server died"
    finally:
        other_server.kill()
        other_server.wait(timeout=5)


async def test_shutdown_kills_an_escapee_that_ignores_sigterm_after_the_grace(
    harness: Harness, env_tag: str, tmp_path: Path
) -> None:
    spec = wrapper_spec(tmp_path, "stubborn", "sh -c 'trap \"\" TERM; exec sleep 60'")
    _, escapee = await start_with_escapee(harness, env_tag, spec)
    await harness.executor.close(grace_ms=300)
    stopped = await harness.events.expect(ProcessStopped)
    assert stopped.forced, "the escapee ignored SIGTERM: it needed SIGKILL"
    await wait_until(lambda: pid_gone(escapee.pid), timeout_s=5, what="the escapee to die")


async def test_a_crash_of_the_server_kills_its_escapee(
    harness: Harness, env_tag: str, tmp_path: Path
) -> None:
    spec = wrapper_spec(tmp_path, "fragile", "sleep 60")
    spawned, escapee = await start_with_escapee(harness, env_tag, spec)
    os.kill(spawned.pid, signal.SIGKILL)
    exited = await harness.events.expect(ProcessExited)
    assert exited.signal == 9
    await wait_until(lambda: pid_gone(escapee.pid), timeout_s=5, what="the escapee to die")


async def test_an_immediate_exit_kills_the_escapee_too(
    harness: Harness, env_tag: str, tmp_path: Path
) -> None:
    spec = wrapper_spec(tmp_path, "leaky", "sleep 60")
    _, escapee = await start_with_escapee(harness, env_tag, spec)
    assert harness.executor.kill_all_now() == 1
    # A second stop signal exits right after this call: the loop never runs again, so wait
    # without yielding to it (the crash teardown must get no chance to do the work).
    deadline = time.monotonic() + 5
    while not pid_gone(escapee.pid):  # a zombie counts as gone: init may not reap at once
        assert time.monotonic() < deadline, "kill_all_now left the escapee running"
        time.sleep(0.02)
