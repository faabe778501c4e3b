"""The log streams: child output captured, bounded history, slow readers never block a child."""

from __future__ import annotations

import asyncio
import io
import logging
import sys

from llamaswap_es.events.types import ProcessExited, ProcessReady, ProcessSpawned
from llamaswap_es.runtime.log_format import ProxyLineFormatter
from llamaswap_es.runtime.logs import (
    COMBINED,
    PROXY,
    UPSTREAM,
    ProxyLogHandler,
    RingBuffer,
    UpstreamLogs,
)
from tests.conftest import free_port
from tests.fixtures.processes import fake_spec, wait_until
from tests.runtime.conftest import Harness


async def test_child_output_lands_in_its_model_and_the_upstream_stream(harness: Harness) -> None:
    port = free_port()
    harness.executor.start(fake_spec("talker", port, "--model-name", "talker-7b"), 1)
    await harness.events.expect(ProcessSpawned)
    await harness.events.expect(ProcessReady)
    # the successful probe, as the child logged it (the line may trail the HTTP answer)
    await wait_until(
        lambda: "GET /health 127.0.0.1 200" in harness.logs.history("talker"),
        what="the probe's log line",
    )
    own = harness.logs.history("talker")
    assert "main: fake upstream pid=" in own and "model=talker-7b" in own
    assert f"server is listening on http://127.0.0.1:{port}" in own
    assert own in harness.logs.history(UPSTREAM)
    # logToStdout defaults to "proxy": upstream output stays off the combined log and stdout
    assert "server is listening" not in harness.logs.history(COMBINED)
    assert "server is listening" not in harness.stdout.getvalue()


def test_ring_buffer_keeps_only_the_newest_100_kib() -> None:
    ring = RingBuffer()
    for i in range(3000):
        ring.write(f"line {i:06d} " + "x" * 88 + "\n")  # 100 characters per line
    text = ring.text()
    assert len(text) == 100 * 1024
    assert text.endswith(f"line {2999:06d} " + "x" * 88 + "\n")
    assert "line 000000" not in text
    ring.write("y" * 200_000)
    assert ring.text() == "y" * 100 * 1024


async def test_a_reader_that_never_reads_does_not_block_the_child(harness: Harness) -> None:
    # 4 MiB of output; a reader that never reads must not stall it (it just loses text).
    script = "import sys\nfor i in range(40000): sys.stdout.write('%06d ' % i + 'z' * 96 + '\\n')"
    spec = fake_spec(
        "chatty", free_port(), cmd=f'{sys.executable} -c "{script}"', check_endpoint="none"
    )
    stalled = harness.logs.subscribe("chatty")
    first = asyncio.ensure_future(anext(stalled))  # registered, then never read again
    await asyncio.sleep(0)
    harness.executor.start(spec, 1)
    await harness.events.expect(ProcessSpawned)
    await harness.events.expect(ProcessReady)
    exited = await harness.events.expect(ProcessExited, timeout_s=30)
    assert exited.exit_code == 0
    assert harness.logs.history("chatty").endswith("039999 " + "z" * 96 + "\n")

    received = await asyncio.wait_for(first, 5)
    if "bytes dropped —" not in received:  # the first read may have come before the gap
        received += await asyncio.wait_for(anext(stalled), 5)
    assert "bytes dropped —" in received
    assert received.startswith("000000 ")  # what it got is the oldest text, in order
    await stalled.aclose()


async def test_subscriber_with_history_gets_the_past_then_the_new_lines_in_order() -> None:
    logs = UpstreamLogs(stdout=io.StringIO())
    logs.write_upstream("m", "old line\n")
    stream = logs.subscribe("m", history=True)
    assert await asyncio.wait_for(anext(stream), 1) == "old line\n"
    logs.write_upstream("m", "new line\n")
    assert await asyncio.wait_for(anext(stream), 1) == "new line\n"
    logs.close()
    assert [chunk async for chunk in stream] == []


async def test_proxy_log_handler_and_log_to_stdout_both() -> None:
    stdout = io.StringIO()
    logs = UpstreamLogs(log_to_stdout="both", stdout=stdout)
    logger = logging.getLogger("test.proxy.log")
    # No timestamp ("none", as llama-swap for a name it does not know): exact lines to compare.
    handler = ProxyLogHandler(logs, level=logging.INFO, formatter=ProxyLineFormatter("none"))
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    live = logs.subscribe(PROXY)  # a reader on the loop: thread writes are handed over to it
    first = asyncio.ensure_future(anext(live))
    await asyncio.sleep(0)
    try:
        logger.warning("swap model=%s", "a")
        logger.debug("not shown")
        await asyncio.to_thread(logger.info, "from a thread")
    finally:
        logger.removeHandler(handler)
    logs.write_upstream("a", "upstream says hi\n")
    assert logs.history(PROXY) == "[WARN] swap model=a\n[INFO] from a thread\n"
    assert logs.history(COMBINED) == logs.history(PROXY) + "upstream says hi\n"
    assert stdout.getvalue() == logs.history(COMBINED)
    assert (await asyncio.wait_for(first, 1)).startswith("[WARN] swap model=a\n")
    await live.aclose()

    logs.set_log_to_stdout("none")
    logs.write_upstream("a", "quiet\n")
    assert "quiet" not in stdout.getvalue() and "quiet" in logs.history("a")
