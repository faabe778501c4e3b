"""The UI event stream (`/api/events`) on a real server: every tab gets the same bytes, and a tab
that stops reading is dropped with a warning instead of holding memory or slowing the others."""

from __future__ import annotations

import asyncio
import contextlib
import json
import select
import socket
import time
from pathlib import Path

import aiohttp

from tests.fixtures.server import RunningServer, config_text, fake_model

CHAT = "/v1/chat/completions"


class StreamReader:
    """An `/api/events` client that reads every byte, as the UI does."""

    def __init__(self, http: aiohttp.ClientSession, url: str) -> None:
        self.raw = bytearray()
        self._task = asyncio.create_task(self._read(http, url))

    async def _read(self, http: aiohttp.ClientSession, url: str) -> None:
        async with http.get(url + "/api/events") as response:
            assert response.status == 200
            while chunk := await response.content.readany():
                self.raw += chunk

    def frames(self) -> list[bytes]:
        return [part + b"\n\n" for part in bytes(self.raw).split(b"\n\n")[:-1]]

    async def wait_for(self, needle: bytes, timeout_s: float = 20) -> None:
        async with asyncio.timeout(timeout_s):
            while needle not in self.raw:
                if self._task.done():
                    self._task.result()
                    raise AssertionError(f"the stream ended before {needle!r}")
                await asyncio.sleep(0.01)

    async def stop(self) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task


def stalled_client(server: RunningServer) -> socket.socket:
    """A client that opens the stream and never reads (a tiny receive window, so the kernel
    cannot absorb much for it): it has subscribed once the server's first bytes arrive."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", server.port))
    sock.sendall(f"GET /api/events HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n\r\n".encode())
    ready, _, _ = select.select([sock], [], [], 20)
    assert ready, "the stalled client's stream never started"
    return sock


def ended(sock: socket.socket, timeout_s: float = 20) -> bool:
    """Read what the kernel holds for `sock` until the server's end (EOF or reset) or a deadline."""
    deadline = time.monotonic() + timeout_s
    sock.settimeout(0.5)
    while time.monotonic() < deadline:
        try:
            if not sock.recv(65536):
                return True
        except ConnectionResetError:
            return True
        except TimeoutError:
            continue
    return False


def request_headers(i: int) -> dict[str, str]:
    """Large request headers: the in-flight messages carry them, ~300 KB of stream a request."""
    return {f"X-Pad-{n}": f"{i}-" + "p" * 3990 for n in range(24)}


def kernel_send_buffer_max() -> int:
    """What the kernel may buffer for one TCP connection before the server's writes wait."""
    try:
        return int(Path("/proc/sys/net/ipv4/tcp_wmem").read_text().split()[2])
    except (OSError, ValueError, IndexError):
        return 16 * 1024 * 1024


async def test_a_client_that_stops_reading_is_dropped_and_the_others_get_identical_frames(
    server_factory,
) -> None:
    limit_kib = 64
    header = f"llamaswap-es:\n  eventStreamBufferKiB: {limit_kib}"
    server = server_factory(config_text([fake_model("a", "--quiet")], header=header))
    stalled = stalled_client(server)
    # The kernel absorbs up to its send buffer for the stalled socket before the server's
    # writes wait; past that plus the limit the server must drop it.
    must_drop_by = 2 * (kernel_send_buffer_max() + limit_kib * 1024) + 1024 * 1024
    requests = 0
    async with aiohttp.ClientSession() as http:
        readers = [StreamReader(http, server.url) for _ in range(2)]
        for reader in readers:
            await reader.wait_for(b'"type":"inflight"')  # the burst's last frame
        while "/api/events client" not in server.stdout_text():
            assert len(readers[0].raw) < must_drop_by, "the stalled client was never dropped"
            body = {"model": "a", "messages": [{"role": "user", "content": "hi"}]}
            headers = request_headers(requests)
            async with http.post(server.url + CHAT, json=body, headers=headers) as r:
                assert r.status == 200
            requests += 1
        warning = next(
            line for line in server.stdout_text().splitlines() if "/api/events client" in line
        )
        assert "fell" in warning and f"limit {limit_kib * 1024}" in warning
        assert "disconnected" in warning
        assert ended(stalled), "the stalled client's connection was never closed"
        stalled.close()

        # The readers were not dropped: they saw every frame of the traffic, byte for byte the
        # same, in the same order.
        async with asyncio.timeout(20):
            while True:
                live = [_from_first_request(reader.frames()) for reader in readers]
                if live[0] == live[1] and _finished(live[0]) == requests:
                    break
                await asyncio.sleep(0.05)
        for reader in readers:
            await reader.stop()
    assert server.stdout_text().count("/api/events client") == 1


def _from_first_request(frames: list[bytes]) -> list[bytes]:
    """The frames from the first one about the test's traffic (its in-flight entry, which
    carries the padded headers) on: what came before differs by when each reader subscribed."""
    for index, raw in enumerate(frames):
        if b"X-Pad-" in raw:
            return frames[index:]
    return []


def _finished(frames: list[bytes]) -> int:
    count = 0
    for raw in frames:
        envelope = json.loads(raw.decode().split("data:", 1)[1])
        if envelope["type"] == "logEvent" and '"type":"RequestFinished"' in envelope["data"]:
            count += 1
    return count
