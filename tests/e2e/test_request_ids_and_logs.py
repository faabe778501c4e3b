"""What a user reads back from a real server: every proxied answer carries `X-Request-ID` with the
id the log, the activity history and replay use; a client's own `X-Request-ID` is kept beside it
and finds the request; the proxy log on stdout has a timestamp on every line (logTimeFormat's
layout) or one JSON object per line, honours logLevel, and logs static assets at debug."""

from __future__ import annotations

import asyncio
import json
import re
import socket
import subprocess
import sys
from collections.abc import Callable

import aiohttp

from tests.fixtures.net import free_port_run
from tests.fixtures.server import REPO_ROOT, RunningServer, config_text, fake_model, wait_json

CHAT = "/v1/chat/completions"
RFC3339_LINE = re.compile(
    r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(Z|[+-]\d\d:\d\d) \[(DEBUG|INFO|WARN|ERROR)\] "
)
KITCHEN_LINE = re.compile(r"^\d{1,2}:\d\d(AM|PM) \[(DEBUG|INFO|WARN|ERROR)\] ")


def _chat(model: str = "m") -> dict[str, object]:
    return {"model": model, "messages": [{"role": "user", "content": "hi"}]}


async def _wait_for_line(
    server: RunningServer, wanted: Callable[[str], bool], timeout_s: float = 10
) -> str:
    """The first stdout line for which `wanted` holds (the access line is written just after
    the answer is sent: poll for it, bounded)."""
    try:
        async with asyncio.timeout(timeout_s):
            while True:
                for line in server.stdout_text().splitlines():
                    if wanted(line):
                        return line
                await asyncio.sleep(0.05)
    except TimeoutError:  # say what was there: this wait has timed out under heavy load
        tail = "\n".join(server.stdout_text().splitlines()[-15:])
        message = f"no such line within {timeout_s} s; the last lines:\n{tail}"
        raise AssertionError(message) from None


async def test_request_ids_both_ways_and_timestamped_text_lines(server_factory) -> None:
    server = server_factory(config_text([fake_model("m")]))
    async with aiohttp.ClientSession() as http:
        headers = {"X-Request-ID": "trace-42"}
        async with http.post(server.url + CHAT, json=_chat(), headers=headers) as response:
            assert response.status == 200
            ours = response.headers["X-Request-ID"]
        assert ours != "trace-42", "our id is ours; the client's is kept beside it"
        too_long = {"X-Request-ID": "x" * 129}
        async with http.post(server.url + CHAT, json=_chat(), headers=too_long) as response:
            other = response.headers["X-Request-ID"]

        found = await wait_json(
            http, f"{server.url}/api/metrics/activity?request_id=trace-42",
            lambda doc: doc["total"] == 1,
        )  # fmt: skip
        (row,) = found["data"]
        assert row["request_id"] == ours
        assert row["metadata"]["client_request_id"] == "trace-42"
        async with http.get(f"{server.url}/api/metrics/activity?request_id={ours}") as response:
            assert [r["request_id"] for r in (await response.json())["data"]] == [ours]
        long_row = await wait_json(
            http, f"{server.url}/api/metrics/activity?request_id={other}",
            lambda doc: doc["total"] == 1,
        )  # fmt: skip
        assert "client_request_id" not in long_row["data"][0].get("metadata", {})

        async with http.get(server.url + "/ui/app.css") as response:
            assert response.status == 200
        async with http.get(server.url + "/ui/") as response:
            assert response.status == 200

    access = await _wait_for_line(server, lambda line: f"request_id={ours}" in line)
    assert '"POST /v1/chat/completions HTTP/1.1" 200' in access
    await _wait_for_line(server, lambda line: '"GET /ui/ HTTP' in line)
    lines = server.stdout_text().splitlines()
    assert lines and all(RFC3339_LINE.match(line) for line in lines), lines
    assert not [line for line in lines if "/ui/app.css" in line], "static assets at debug"

    timeline = subprocess.run(
        [sys.executable, "-m", "llamaswap_es", "replay", "timeline", "--request", "trace-42",
         "--db", str(server.db_path)],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert timeline.returncode == 0, timeline.stderr
    shown = timeline.stdout.splitlines()
    assert any("client's X-Request-ID trace-42" in line for line in shown)
    assert shown and all(ours in line for line in shown), shown


async def test_json_lines_with_the_request_and_debug_honoured(server_factory) -> None:
    server = server_factory(
        config_text([fake_model("m")], header="logLevel: debug"), args=("--log-format", "json")
    )
    async with aiohttp.ClientSession() as http:
        async with http.post(server.url + CHAT, json=_chat()) as response:
            ours = response.headers["X-Request-ID"]
        async with http.get(server.url + "/ui/app.css") as response:
            assert response.status == 200
    await _wait_for_line(server, lambda line: "/ui/app.css" in line)
    await _wait_for_line(server, lambda line: ours in line and "POST /v1/chat" in line)
    docs = [json.loads(line) for line in server.stdout_text().splitlines()]
    assert all({"time", "level", "message", "logger"} <= doc.keys() for doc in docs)
    (access,) = [d for d in docs if "POST /v1/chat/completions" in d["message"]]
    assert access["request_id"] == ours and access["model"] == "m"
    assert access["level"] == "INFO"
    (asset,) = [d for d in docs if "/ui/app.css" in d["message"]]
    assert asset["level"] == "DEBUG"


async def test_log_level_warn_and_a_kitchen_clock(server_factory) -> None:
    start = free_port_run(2)
    held = socket.socket()
    held.bind(("127.0.0.1", start))
    held.listen()
    model = (
        "  auto:\n"
        f"    cmd: {sys.executable} -m llamaswap_es.fake_upstream --port ${{PORT}} "
        "--model-name auto\n"
        f"    env: [PYTHONPATH={REPO_ROOT}]"
    )
    header = f"logLevel: warn\nlogTimeFormat: Kitchen\nstartPort: {start}"
    try:
        server = server_factory(config_text([model], header=header))
        async with (
            aiohttp.ClientSession() as http,
            http.post(server.url + CHAT, json=_chat("auto")) as response,
        ):
            assert response.status == 200
        moved = await _wait_for_line(server, lambda line: "is in use by another program" in line)
    finally:
        held.close()
    assert KITCHEN_LINE.match(moved) and "[WARN]" in moved
    lines = server.stdout_text().splitlines()
    assert all(KITCHEN_LINE.match(line) for line in lines), lines
    assert not [line for line in lines if "[INFO]" in line or "[DEBUG]" in line], lines


def test_an_error_message_is_prefixed_once(tmp_path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("llamaswap-es:\n  noSuchSetting: 1\nmodels: {}\n")
    result = subprocess.run(
        [sys.executable, "-m", "llamaswap_es", "check-config", "--config", str(config)],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 2
    first = result.stderr.splitlines()[0]
    assert first.startswith("llamaswap-es: ") and "llamaswap-es: llamaswap-es:" not in first
    assert "noSuchSetting" in first
