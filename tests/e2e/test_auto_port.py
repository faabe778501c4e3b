"""A model whose port `${PORT}` chose is moved off a port another program holds, and the log says
so (replay's timeline shows it, a restart adopts it where it really listens); a port written out
in the config still fails with the clear message that names the holder."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict

import aiohttp

from llamaswap_es.events.open_log import open_log
from tests.fixtures.net import free_port, free_port_run
from tests.fixtures.server import REPO_ROOT

CHAT = "/v1/chat/completions"


def _chat(model: str) -> dict[str, object]:
    return {"model": model, "messages": [{"role": "user", "content": "hi"}]}


@contextmanager
def _held(port: int) -> Iterator[None]:
    """Another program's listener on `port` (it never answers HTTP)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    sock.listen()
    try:
        yield
    finally:
        sock.close()


def _config(start_port: int) -> str:
    return (
        f"healthCheckTimeout: 20\nstartPort: {start_port}\nmodels:\n"
        "  auto:\n"
        f"    cmd: {sys.executable} -m llamaswap_es.fake_upstream --port ${{PORT}} "
        "--model-name auto\n"
        f"    env: [PYTHONPATH={REPO_ROOT}]\n"
    )


def _spawns(db_path) -> list[dict[str, object]]:
    with open_log(db_path) as reader:
        return [asdict(e.body) for e in reader.iter_envelopes() if e.type == "ProcessSpawned"]


async def test_an_auto_port_in_use_is_skipped_recorded_and_kept_after_a_crash(
    server_factory,
) -> None:
    start = free_port_run(2)
    with _held(start):
        first = server_factory(_config(start))
        async with aiohttp.ClientSession() as http:
            async with http.post(first.url + CHAT, json=_chat("auto")) as response:
                assert response.status == 200, await response.text()
            async with http.get(first.url + "/upstream/auto/fake/info") as response:
                pid = (await response.json())["pid"]
            (spawned,) = _spawns(first.db_path)
            assert spawned["port_moved_from"] == start
            assert spawned["port"] == start + 1, "the first free port above the ${PORT} ones"

            timeline = subprocess.run(
                [sys.executable, "-m", "llamaswap_es", "replay", "timeline",
                 "--db", str(first.db_path)],
                cwd=REPO_ROOT, capture_output=True, text=True, timeout=60,
            )  # fmt: skip
            assert timeline.returncode == 0, timeline.stderr
            assert f"port {start + 1} because port {start} was in use" in timeline.stdout

            # A crash and a restart: the model is adopted where it listens, not probed on the
            # held port (which would refuse it, or worse, find the other program).
            first.stop(signal.SIGKILL)
            second = server_factory(_config(start), db_path=first.db_path, name="again.yaml")
            async with http.post(second.url + CHAT, json=_chat("auto")) as response:
                assert response.status == 200
            async with http.get(second.url + "/upstream/auto/fake/info") as response:
                assert (await response.json())["pid"] == pid, "adopted, not started again"
        second.stop()


async def test_a_port_written_in_the_config_still_fails_naming_the_holder(
    server_factory,
) -> None:
    port = free_port()
    config = (
        "healthCheckTimeout: 20\nmodels:\n  fixed:\n"
        f"    cmd: {sys.executable} -m llamaswap_es.fake_upstream --port {port} "
        "--model-name fixed\n"
        f"    proxy: http://127.0.0.1:{port}\n"
        f"    env: [PYTHONPATH={REPO_ROOT}]\n"
    )
    with _held(port):
        server = server_factory(config)
        async with (
            aiohttp.ClientSession() as http,
            http.post(server.url + CHAT, json=_chat("fixed")) as response,
        ):
            assert response.status >= 500
            assert f"port {port} is already in use" in await response.text()
