"""A model whose port another process already listens on fails to start, with a clear message,
instead of passing its health check against the wrong server."""

from __future__ import annotations

import os
import socket

from llamaswap_es.events.types import ProcessStartFailed
from llamaswap_es.runtime.port_guard import port_taken
from tests.conftest import free_port
from tests.fixtures.processes import fake_spec
from tests.runtime.conftest import Harness


def _listener(port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", port))
    sock.listen()
    return sock


async def test_a_taken_port_fails_the_start_and_names_the_holder(harness: Harness) -> None:
    port = free_port()
    with _listener(port):
        harness.executor.start(fake_spec("alpha", port), 1)
        failed = await harness.events.expect(ProcessStartFailed)
    assert failed.model == "alpha"
    assert f"port {port} is already in use" in failed.error
    assert f"pid {os.getpid()}" in failed.error


def test_free_remote_and_unnamed_ports_are_not_refused() -> None:
    free = free_port()
    assert port_taken(f"http://127.0.0.1:{free}", free) is None
    assert port_taken("http://10.1.2.3:8080", 8080) is None, "remote upstreams are not checked"
    port = free_port()
    with _listener(port):
        assert port_taken(f"http://localhost:{port}/v1", port) is not None
