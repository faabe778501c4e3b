"""A serving upstream that stops answering (SIGSTOP) is reported hung, once; the stop that the
reducer then sends (grace 0) kills its whole group although it cannot act on SIGTERM."""

from __future__ import annotations

import asyncio

from llamaswap_es.events.types import ProcessHung, ProcessReady, ProcessSpawned, ProcessStopped
from llamaswap_es.runtime.hang_watch import HangDetection
from llamaswap_es.runtime.process_group import group_alive
from tests.conftest import free_port
from tests.fixtures.processes import fake_spec, pid_gone, wait_until
from tests.runtime.conftest import Harness
from tests.runtime.test_orphans import fake_argv, wait_answers

FAST = HangDetection(probe_interval_ms=200, probe_timeout_ms=300, failures_before_hung=2)


async def test_a_stopped_upstream_is_reported_hung_and_killed_by_a_stop_without_grace(
    harness: Harness, freeze
) -> None:
    harness.executor.set_hang_detection(FAST)
    port = free_port()
    harness.executor.start(fake_spec("frozen", port), 3)
    spawned = await harness.events.expect(ProcessSpawned)
    await harness.events.expect(ProcessReady)

    loop = asyncio.get_running_loop()
    frozen_at = loop.time()
    freeze(spawned.pid)
    hung = await harness.events.expect(ProcessHung, timeout_s=10)
    detected_s = loop.time() - frozen_at
    assert (hung.model, hung.instance, hung.failures) == ("frozen", 3, 2)
    assert hung.error == (
        f"2 health probes in a row to http://127.0.0.1:{port}/health failed: "
        "no answer within 0.3 s (x2)"
    )
    # about one interval to the first probe and two timeouts (0.8 s); bounded loosely (load)
    assert detected_s < 5, detected_s

    harness.executor.stop("frozen", 3, grace_ms=0)  # the reducer's StopProcess(reason="hung")
    stopped = await harness.events.expect(ProcessStopped, timeout_s=10)
    assert (stopped.instance, stopped.forced, stopped.signal) == (3, True, 9)
    assert pid_gone(spawned.pid) and not group_alive(spawned.pgid)
    assert harness.executor.address("frozen") is None
    assert len(harness.events.of(ProcessHung)) == 1


async def test_an_adopted_upstream_is_watched_too(harness: Harness, freeze, spawn_tagged) -> None:
    """Recovery adopts a live upstream from the previous run: it can hang like our own."""
    harness.executor.set_hang_detection(FAST)
    port = free_port()
    popen = spawn_tagged(fake_argv(port), model="kept", instance=5)
    await wait_answers(port)
    harness.executor.adopt(fake_spec("kept", port), 5, popen.pid, popen.pid)
    assert harness.executor.address("kept") == (5, f"http://127.0.0.1:{port}")

    freeze(popen.pid)
    hung = await harness.events.expect(ProcessHung, timeout_s=10)
    assert (hung.model, hung.instance) == ("kept", 5)
    harness.executor.stop("kept", 5, grace_ms=0)
    stopped = await harness.events.expect(ProcessStopped, timeout_s=10)
    assert stopped.forced
    await wait_until(lambda: pid_gone(popen.pid), what="the adopted upstream to be gone")
