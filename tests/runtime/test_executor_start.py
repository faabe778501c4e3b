"""Starting upstreams: ready, failures, health timeout, stop during start (real processes)."""

from __future__ import annotations

import aiohttp
import psutil

from llamaswap_es.events.types import (
    ProcessReady,
    ProcessSpawned,
    ProcessStartFailed,
    ProcessStopped,
)
from llamaswap_es.runtime.orphans import process_matches
from llamaswap_es.runtime.process_group import group_alive
from tests.conftest import free_port
from tests.fixtures.processes import fake_spec, pid_gone, wait_until
from tests.runtime.conftest import Harness


async def test_start_reports_spawned_then_ready_and_serves(harness: Harness, env_tag: str) -> None:
    port = free_port()
    spec = fake_spec("alpha", port, "--load-delay-ms", "300", env={"FAKE_GREETING": "hi"})
    harness.executor.start(spec, 1)

    spawned = await harness.events.expect(ProcessSpawned)
    assert (spawned.model, spawned.instance, spawned.port) == ("alpha", 1, port)
    assert spawned.pgid == spawned.pid
    assert spawned.argv[1:3] == ("-m", "llamaswap_es.fake_upstream")
    assert process_matches(spawned.pid, spawned.started_at_ms)
    assert harness.executor.address("alpha") is None  # still loading

    ready = await harness.events.expect(ProcessReady)
    assert (ready.model, ready.instance, ready.pid) == ("alpha", 1, spawned.pid)
    assert ready.address == f"http://127.0.0.1:{port}"  # where the grant sends requests
    instance, base = harness.executor.address("alpha")  # type: ignore[misc]
    assert (instance, base) == (1, f"http://127.0.0.1:{port}")
    info = harness.executor.running()["alpha"]
    assert (info.pid, info.pgid, info.state) == (spawned.pid, spawned.pid, "ready")

    async with aiohttp.ClientSession() as session, session.get(f"{base}/fake/info") as resp:
        served = await resp.json()
    assert served["pid"] == spawned.pid
    assert served["env"] == {"FAKE_GREETING": "hi"}  # the model's env reached the child
    assert psutil.Process(spawned.pid).environ()["LLAMASWAP_ES_TAG"] == f"{env_tag}:alpha:1"

    harness.executor.stop("alpha", 1, grace_ms=5_000)
    stopped = await harness.events.expect(ProcessStopped)
    assert (stopped.model, stopped.instance, stopped.forced) == ("alpha", 1, False)
    assert pid_gone(spawned.pid)
    assert harness.executor.address("alpha") is None
    assert "alpha" not in harness.executor.running()


async def test_exit_at_start_fails_with_llama_swaps_message(harness: Harness) -> None:
    harness.executor.start(fake_spec("beta", free_port(), "--fail-at-start"), 3)
    spawned = await harness.events.expect(ProcessSpawned)
    failed = await harness.events.expect(ProcessStartFailed)
    assert (failed.model, failed.instance) == ("beta", 3)
    assert failed.error == "upstream command exited prematurely"
    assert (failed.kind, failed.exit_code, failed.signal) == ("exited", 1, None)
    assert failed.output_tail.endswith("main: error: failed to load model (--fail-at-start)")
    assert not group_alive(spawned.pgid)
    assert "failed to load model" in harness.logs.history("beta")


async def test_unstartable_commands_fail_without_a_spawn(harness: Harness) -> None:
    harness.executor.start(fake_spec("ghost", free_port(), cmd="/no/such/binary --flag"), 1)
    failed = await harness.events.expect(ProcessStartFailed)
    assert failed.error == (
        "failed to start command '/no/such/binary --flag': binary '/no/such/binary': not found"
    )
    assert failed.kind == "command"

    harness.executor.start(fake_spec("blank", free_port(), cmd="  # nothing\n"), 1)
    failed = await harness.events.expect(ProcessStartFailed)
    assert (failed.error, failed.kind) == ("model 'blank': empty command in cmd", "command")

    harness.executor.start(fake_spec("nowhere", free_port(), proxy=""), 1)
    failed = await harness.events.expect(ProcessStartFailed)
    assert (failed.error, failed.kind) == ("upstream proxy missing", "command")
    assert not harness.events.of(ProcessSpawned)


async def test_health_timeout_fails_the_start_and_kills_the_group(harness: Harness) -> None:
    # A shell prints its line at once (the fake upstream's Python start-up can take longer than
    # the timeout on a loaded machine); nothing ever listens on the port, so the check times out.
    spec = fake_spec(
        "slow",
        free_port(),
        cmd="sh -c 'echo loading model weights; exec sleep 60'",
        health_check_timeout_ms=800,
    )
    harness.executor.start(spec, 1)
    spawned = await harness.events.expect(ProcessSpawned)
    failed = await harness.events.expect(ProcessStartFailed)
    assert (failed.error, failed.kind, failed.exit_code) == (
        "health check timed out after 0.8s",
        "timeout",
        None,
    )
    assert "loading" in failed.output_tail  # what it was doing when we gave up
    assert not group_alive(spawned.pgid)
    assert "slow" not in harness.executor.running()


async def test_check_endpoint_none_is_ready_at_once(harness: Harness) -> None:
    spec = fake_spec("sleeper", free_port(), cmd="sleep 30", check_endpoint="none")
    harness.executor.start(spec, 1)
    spawned = await harness.events.expect(ProcessSpawned)
    await harness.events.expect(ProcessReady)
    harness.executor.stop("sleeper", 1, grace_ms=2_000)
    stopped = await harness.events.expect(ProcessStopped)
    assert stopped.signal == 15  # sleep died of our SIGTERM
    assert not group_alive(spawned.pgid)


async def test_stop_during_start_aborts_it_and_reports_only_stopped(harness: Harness) -> None:
    spec = fake_spec("loading", free_port(), "--load-delay-ms", "60000")
    harness.executor.start(spec, 1)
    spawned = await harness.events.expect(ProcessSpawned)
    await wait_until(
        lambda: "main: server is listening" in harness.logs.history("loading"),
        what="the fake upstream to listen",
    )
    harness.executor.stop("loading", 1, grace_ms=2_000)
    stopped = await harness.events.expect(ProcessStopped)
    assert (stopped.instance, stopped.forced) == (1, False)
    assert not group_alive(spawned.pgid)
    assert not harness.events.of(ProcessReady)
    assert not harness.events.of(ProcessStartFailed)


async def test_stop_before_the_spawn_and_of_unknown_instances_still_reports_stopped(
    harness: Harness,
) -> None:
    harness.executor.start(fake_spec("early", free_port()), 1)
    harness.executor.stop("early", 1, grace_ms=1_000)  # before the task even ran
    stopped = await harness.events.expect(ProcessStopped)
    assert (stopped.model, stopped.instance) == ("early", 1)

    harness.executor.stop("never-started", 7, grace_ms=1_000)
    stopped = await harness.events.expect(ProcessStopped)
    assert (stopped.model, stopped.instance) == ("never-started", 7)
    assert not harness.events.of(ProcessSpawned)
