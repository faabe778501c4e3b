"""An upstream adopted after a crash of the server keeps running, and its new output reaches the
model's log again (its output pipe's reader died with the previous server)."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Iterator

import aiohttp
import pytest

from llamaswap_es.events.types import ProcessStopped
from llamaswap_es.runtime.adopted_output import reopen_output
from llamaswap_es.runtime.orphans import format_tag, process_started_at_ms
from llamaswap_es.runtime.process_spec import ProcessSpec
from llamaswap_es.runtime.spawn import spawn, spawn_env
from tests.conftest import free_port
from tests.fixtures.processes import fake_spec
from tests.runtime.conftest import Harness


@pytest.fixture
def previous_run(env_tag: str) -> Iterator[list[subprocess.Popen[bytes]]]:
    """Upstreams started the way the executor starts them, for a server that then dies."""
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for popen in started:
        if popen.poll() is None:
            popen.kill()
        popen.wait(timeout=10)


def spawn_like_a_previous_server(
    spec: ProcessSpec, env_tag: str, started: list[subprocess.Popen[bytes]]
) -> subprocess.Popen[bytes]:
    popen = spawn(spec.argv(), spec, spawn_env(spec, format_tag(env_tag, spec.model_id, 1)))
    started.append(popen)
    return popen


async def get(url: str) -> int:
    async with aiohttp.ClientSession() as session, session.get(url) as resp:
        return resp.status


async def test_an_adopted_upstream_survives_the_lost_reader_and_its_output_is_logged_again(
    harness: Harness, env_tag: str, previous_run: list[subprocess.Popen[bytes]]
) -> None:
    port = free_port()
    spec = fake_spec("kept", port)
    base = f"http://127.0.0.1:{port}"
    popen = spawn_like_a_previous_server(spec, env_tag, previous_run)
    assert popen.stdout is not None
    line = b""
    while b"server is listening" not in line:  # it has started, and we have read its output
        line = await asyncio.wait_for(asyncio.to_thread(popen.stdout.readline), 15)
        assert line, "the upstream ended before it listened"

    popen.stdout.close()  # the previous server dies: nobody reads the pipe any more
    assert await get(f"{base}/health") == 200  # its log line now meets EPIPE ...
    assert await get(f"{base}/v1/models") == 200  # ... and it keeps serving
    assert popen.poll() is None

    started = process_started_at_ms(popen.pid)
    harness.executor.adopt(spec, 1, popen.pid, popen.pid, started)
    # The adoption reopens the pipe in the background: a line written before that is lost
    # too, so ask until one arrives (each request writes one access-log line).
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 10
    while "GET /fake/info" not in harness.logs.history("kept"):
        assert loop.time() < deadline, "the adopted upstream's output never reached its log"
        assert await get(f"{base}/fake/info") == 200
    assert "GET /v1/models" not in harness.logs.history("kept")  # lost while nobody read

    harness.executor.stop("kept", 1, grace_ms=5_000)
    stopped = await harness.events.expect(ProcessStopped)
    assert not stopped.forced
    assert "main: shutting down" in harness.logs.history("kept")  # read to the very end


async def test_a_pipe_that_someone_still_reads_is_not_taken_over(
    env_tag: str, previous_run: list[subprocess.Popen[bytes]]
) -> None:
    # The leader's stdout is a pipe with a live reader (here: us; in life, a logger the
    # upstream pipes into): taking it over would steal that reader's text.
    popen = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(30)"],
        stdout=subprocess.PIPE,
        start_new_session=True,
    )
    previous_run.append(popen)
    assert reopen_output(popen.pid) is None
    assert popen.stdout is not None
    popen.stdout.close()
    reopened = reopen_output(popen.pid)
    assert reopened is not None
    reopened.close()
