"""systemd's notify protocol end to end: a real server subprocess is given a real AF_UNIX datagram
socket in NOTIFY_SOCKET and WATCHDOG_USEC, as systemd does, and the test reads what it sends:
READY=1 once it listens, WATCHDOG=1 while its run loop turns (and none once the loop is stopped,
while the process lives on), STATUS= lines with the models loaded and the requests waiting, and
STOPPING=1 at shutdown."""

from __future__ import annotations

import os
import signal
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from tests.fixtures.server import config_text, fake_model

WATCHDOG_USEC = 200_000
"""WatchdogSec=0.2: a tick (half of it) every 0.1 s keeps the test short."""
READ_TIMEOUT_S = 20


class NotifySocket:
    """The receiving end systemd would hold."""

    def __init__(self, address: str | bytes) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(address)
        self.messages: list[dict[str, str]] = []

    def next(self, timeout_s: float = READ_TIMEOUT_S) -> dict[str, str]:
        self.sock.settimeout(timeout_s)
        try:
            data = self.sock.recv(4096)
        except TimeoutError:
            raise AssertionError(
                f"no notify message within {timeout_s} s; so far {self.messages}"
            ) from None
        message = dict(line.split("=", 1) for line in data.decode().split("\n") if line)
        self.messages.append(message)
        return message

    def until(self, key: str, value: str | None = None, limit: int = 400) -> dict[str, str]:
        """Read until a message has `key` (with `value`, when given); returns it."""
        for _ in range(limit):
            message = self.next()
            if key in message and (value is None or value in message[key]):
                return message
        raise AssertionError(f"no {key}={value} in {limit} messages: {self.messages[-5:]}")


@pytest.fixture
def notify_socket(tmp_path: Path) -> Iterator[tuple[str, NotifySocket]]:
    path = tmp_path / "notify.sock"
    receiver = NotifySocket(str(path))
    yield str(path), receiver
    receiver.sock.close()


def _env(address: str) -> dict[str, str]:
    return {"NOTIFY_SOCKET": address, "WATCHDOG_USEC": str(WATCHDOG_USEC)}


async def test_ready_watchdog_status_and_stopping_reach_the_notify_socket(
    server_factory, notify_socket
) -> None:
    address, receiver = notify_socket
    server = server_factory(config_text([fake_model("m")]), env=_env(address))
    ready = receiver.until("READY", "1")
    assert "0 models loaded" in ready["STATUS"]
    ticks = [receiver.until("WATCHDOG", "1") for _ in range(3)]
    assert all(t["STATUS"].startswith("serving:") for t in ticks)

    async with aiohttp.ClientSession() as http:
        body = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
        async with http.post(server.url + "/v1/chat/completions", json=body) as response:
            assert response.status == 200
    loaded = receiver.until("STATUS", "1 model loaded (m)")
    assert loaded["WATCHDOG"] == "1"
    assert "0 requests waiting" in loaded["STATUS"]

    server.process.send_signal(signal.SIGTERM)
    stopping = receiver.until("STOPPING", "1")
    assert "shutting down" in stopping["STATUS"]
    assert server.process.wait(timeout=30) == 0, server.output()
    after = receiver.messages[receiver.messages.index(stopping) :]
    assert not any("WATCHDOG" in m for m in after), "no watchdog once stopping"


async def test_the_watchdog_stops_when_the_run_loop_stops_while_the_process_lives(
    server_factory, notify_socket
) -> None:
    address, receiver = notify_socket
    server = server_factory(
        config_text([fake_model("m")]),
        env=_env(address),
        entry=("tests/fixtures/loop_stopping_server.py",),
    )
    receiver.until("READY", "1")
    receiver.until("WATCHDOG", "1")

    server.process.send_signal(signal.SIGUSR2)  # the run loop stops; the process does not
    stalled = receiver.until("STATUS", "not serving")
    assert "WATCHDOG" not in stalled
    # Every tick from now on (one per 0.1 s) must withhold WATCHDOG=1: read ten of them.
    started = time.monotonic()
    later = [receiver.next() for _ in range(10)]
    assert not [m for m in later if "WATCHDOG" in m], later
    assert all(m["STATUS"].startswith("not serving: ") for m in later)
    assert time.monotonic() - started >= 0.5, "ten ticks span about a second"
    assert server.process.poll() is None, "the process lives on: systemd's watchdog ends it"
    async with aiohttp.ClientSession() as http, http.get(server.url + "/health") as response:
        assert response.status == 503


def test_an_abstract_socket_name_works_without_a_watchdog(
    server_factory, tmp_path: Path
) -> None:
    name = f"llamaswap-es-test-{os.getpid()}-{time.monotonic_ns()}"
    receiver = NotifySocket(b"\0" + name.encode())
    try:
        server = server_factory(
            config_text([fake_model("m")]), env={"NOTIFY_SOCKET": "@" + name}
        )
        ready = receiver.until("READY", "1")
        assert ready["STATUS"].startswith("serving:")
        server.stop()
        receiver.until("STOPPING", "1")
    finally:
        receiver.sock.close()


async def test_models_never_inherit_the_notify_variables(server_factory, notify_socket) -> None:
    """A preloaded model starts during recovery, before READY: it must not see NOTIFY_SOCKET
    (it could speak to systemd in the server's name) nor the watchdog's variables."""
    address, receiver = notify_socket
    header = "hooks:\n  on_startup:\n    preload: [m]"
    server = server_factory(config_text([fake_model("m")], header=header), env=_env(address))
    receiver.until("STATUS", "1 model loaded (m)")
    async with (
        aiohttp.ClientSession() as http,
        http.get(server.url + "/upstream/m/fake/info") as response,
    ):
        pid = (await response.json())["pid"]
    names = {
        item.split(b"=", 1)[0].decode()
        for item in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        if item
    }
    assert "LLAMASWAP_ES_TAG" in names, "the model's environment was read"
    assert not names & {"NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"}
