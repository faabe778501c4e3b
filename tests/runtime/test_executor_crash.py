"""A ready upstream that dies by itself: reported once, and nothing of its group survives."""

from __future__ import annotations

import os
import signal

import aiohttp

from llamaswap_es.events.types import ProcessExited, ProcessReady, ProcessSpawned, ProcessStopped
from llamaswap_es.fake_upstream.settings import EXIT_DURING_REQUEST_CODE
from llamaswap_es.runtime.process_group import group_alive
from tests.conftest import free_port
from tests.fixtures.processes import fake_spec, pid_gone
from tests.runtime.conftest import Harness


async def test_kill_9_of_the_leader_kills_the_rest_of_its_group(harness: Harness) -> None:
    port = free_port()
    harness.executor.start(fake_spec("forked", port, "--fork-child"), 2)
    spawned = await harness.events.expect(ProcessSpawned)
    await harness.events.expect(ProcessReady)
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"http://127.0.0.1:{port}/fake/info") as resp,
    ):
        server = (await resp.json())["pid"]
    assert server != spawned.pid  # the forked child serves, the leader waits on it

    os.kill(spawned.pid, signal.SIGKILL)
    exited = await harness.events.expect(ProcessExited)
    assert (exited.model, exited.instance, exited.pid) == ("forked", 2, spawned.pid)
    assert (exited.exit_code, exited.signal) == (None, 9)
    assert pid_gone(server)  # the surviving child was killed with the group
    assert not group_alive(spawned.pgid)
    assert harness.executor.address("forked") is None

    harness.executor.stop("forked", 2, grace_ms=1_000)  # a late stop is still answered
    assert (await harness.events.expect(ProcessStopped)).instance == 2


async def test_exit_during_a_streamed_request_is_reported_with_its_code(harness: Harness) -> None:
    port = free_port()
    harness.executor.start(fake_spec("fragile", port, "--exit-during-request"), 1)
    spawned = await harness.events.expect(ProcessSpawned)
    await harness.events.expect(ProcessReady)

    body = {"stream": True, "messages": [{"role": "user", "content": "hi"}]}
    received = b""
    async with aiohttp.ClientSession() as session:
        try:
            async with session.post(
                f"http://127.0.0.1:{port}/v1/chat/completions", json=body
            ) as resp:
                async for chunk in resp.content.iter_any():
                    received += chunk
        except aiohttp.ClientPayloadError:
            pass  # the upstream died mid-stream: exactly the point
    assert b"alpha" in received and b"[DONE]" not in received

    exited = await harness.events.expect(ProcessExited)
    assert (exited.exit_code, exited.signal) == (EXIT_DURING_REQUEST_CODE, None)
    assert not group_alive(spawned.pgid)
    assert "exiting during a request" in harness.logs.history("fragile")
    assert "exiting during a request" in exited.output_tail  # the crash says why, in its event
