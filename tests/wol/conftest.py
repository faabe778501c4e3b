"""A real `llamaswap-es wol-proxy` subprocess and a UDP socket on loopback to receive its packets.

Magic packets never leave the machine: the proxy is told to "broadcast" to 127.0.0.1 on the port
of a socket the test reads.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from llamaswap_es.runtime.process_spec import ENV_TAG_VAR
from tests.fixtures.net import free_port
from tests.fixtures.processes import helper_tag

REPO_ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT_S = 20.0
MAC = "0a:1b:2c:3d:4e:5f"


@dataclass
class RunningWolProxy:
    process: subprocess.Popen[bytes]
    port: int
    log_path: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)
            pytest.fail(f"wol-proxy did not stop on SIGTERM:\n{self.log()}")
        return -1


class PacketSink:
    """A UDP socket on 127.0.0.1 standing in for the LAN's broadcast address."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.setblocking(False)
        self.address = f"127.0.0.1:{self.sock.getsockname()[1]}"

    async def receive(self, timeout_s: float = 10.0) -> bytes:
        loop = asyncio.get_running_loop()
        try:
            return await asyncio.wait_for(loop.sock_recv(self.sock, 2048), timeout_s)
        except TimeoutError:
            raise AssertionError(f"no magic packet within {timeout_s}s") from None

    def pending(self) -> list[bytes]:
        """Datagrams already delivered (loopback delivers within the sender's sendto call)."""
        out = []
        while True:
            try:
                out.append(self.sock.recv(2048))
            except BlockingIOError:
                return out


@pytest.fixture
def packet_sink() -> Iterator[PacketSink]:
    sink = PacketSink()
    yield sink
    sink.sock.close()


@pytest.fixture
def wol_proxy_factory(tmp_path: Path, env_tag: str) -> Iterator[object]:
    """`start(upstream_port, broadcast, *flags)` starts a wol-proxy; all are stopped after."""
    started: list[RunningWolProxy] = []

    def start(upstream_port: int, broadcast: str, *flags: str) -> RunningWolProxy:
        port = free_port()
        log_path = tmp_path / f"wol-proxy-{len(started)}.log"
        command = [
            sys.executable, "-m", "llamaswap_es", "wol-proxy", "--mac", MAC,
            "--upstream", f"http://127.0.0.1:{upstream_port}", "--listen", f"127.0.0.1:{port}",
            "--broadcast", broadcast, *flags,
        ]  # fmt: skip
        env = {
            **os.environ,
            "PYTHONPATH": str(REPO_ROOT),
            ENV_TAG_VAR: helper_tag(env_tag, f"wol-proxy-{len(started) + 1}"),
        }
        with open(log_path, "wb") as log:
            process = subprocess.Popen(
                command, cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT
            )
        proxy = RunningWolProxy(process, port, log_path)
        started.append(proxy)
        deadline = time.monotonic() + START_TIMEOUT_S
        while f"listening on http://127.0.0.1:{port}/" not in proxy.log():
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"wol-proxy did not start:\n{proxy.log()}")
            time.sleep(0.05)
        return proxy

    yield start
    for proxy in started:
        proxy.stop()
