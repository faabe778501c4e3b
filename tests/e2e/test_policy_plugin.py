"""A scheduling policy from another package, end to end: tests/plugins/example_policy is
installed with pip into a temporary directory (a real `*.dist-info` with its entry point),
put on PYTHONPATH, and then `check-config` accepts a config that selects it, a real server
schedules with it (the newest waiting request first: no swap back and forth), and
`replay whatif --scheduler newest-first` re-runs the recorded traffic under it; installed while
a server runs, a reload can select it. The fixture
replays the server's log at teardown (`replay verify`), which needs the policy in this process
too."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import aiohttp
import pytest

from llamaswap_es.events.open_log import open_log
from llamaswap_es.runtime.policy_loader import load_policies
from tests.fixtures.policy_plugin import PLUGIN_POLICY, REPO_ROOT, plugin_pythonpath
from tests.fixtures.server import config_text, fake_model

CHAT = "/v1/chat/completions"


def _cli(pythonpath: str, *args: str | Path) -> subprocess.CompletedProcess[str]:
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": pythonpath, "TZ": "UTC"}
    return subprocess.run(
        [sys.executable, "-m", "llamaswap_es", *map(str, args)],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def _log(db_path: Path, event_type: str) -> list:
    with open_log(db_path) as reader:
        return [e.body for e in reader.iter_envelopes() if e.type == event_type]


async def _until(check, timeout_s: float = 20) -> None:
    async with asyncio.timeout(timeout_s):
        while not check():
            await asyncio.sleep(0.05)


async def _chat(http: aiohttp.ClientSession, url: str, model: str) -> int:
    body = {"model": model, "messages": [{"role": "user", "content": "hi"}]}
    async with http.post(url + CHAT, json=body) as response:
        await response.read()
        return response.status


async def test_a_policy_package_schedules_a_real_server(
    server_factory, policy_plugin_dir: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.syspath_prepend(str(policy_plugin_dir))
    assert PLUGIN_POLICY in load_policies()  # for the fixture's replay verify, in this process
    pythonpath = plugin_pythonpath(policy_plugin_dir)
    models = [fake_model("a", "--tokens", "40", "--token-delay-ms", "50"), fake_model("b")]
    text = config_text(models, header=f"routing: {{scheduler: {{use: {PLUGIN_POLICY}}}}}")

    (tmp_path / "check.yaml").write_text(text)
    checked = _cli(pythonpath, "check-config", "--config", tmp_path / "check.yaml")
    assert checked.returncode == 0, checked.stderr
    assert json.loads(checked.stdout)["routing"]["scheduler"]["use"] == PLUGIN_POLICY

    server = server_factory(text, env={"PYTHONPATH": pythonpath})
    async with aiohttp.ClientSession() as http:
        first = asyncio.create_task(_chat(http, server.url, "a"))  # ~2 s of tokens
        await _until(lambda: len(_log(server.db_path, "Dispatch")) == 1)
        older = asyncio.create_task(_chat(http, server.url, "b"))
        await _until(lambda: len(_log(server.db_path, "RequestReceived")) == 2)
        newer = asyncio.create_task(_chat(http, server.url, "a"))
        assert await asyncio.gather(first, older, newer) == [200, 200, 200]

    received = {e.request_id: e.model for e in _log(server.db_path, "RequestReceived")}
    served = [received[d.request_id] for d in _log(server.db_path, "Dispatch")]
    assert served == ["a", "a", "b"]  # serial would serve b second, then load a again
    assert [s.model for s in _log(server.db_path, "StartProcess")] == ["a", "b"]

    replay = ("replay", "whatif", "--db", server.db_path, "--scheduler")
    whatif = _cli(pythonpath, *replay, PLUGIN_POLICY)
    assert whatif.returncode == 0, whatif.stderr
    assert whatif.stdout.splitlines()[0] == (
        f"rec = recorded ({PLUGIN_POLICY}), from the log; "
        f"sim = what-if ({PLUGIN_POLICY}), simulated"
    )
    total = next(line.split() for line in whatif.stdout.splitlines() if line.startswith("TOTAL"))
    assert total[1:3] == ["2", "2"]  # loads, recorded and simulated
    serial = _cli(pythonpath, *replay, "serial")
    total = next(line.split() for line in serial.stdout.splitlines() if line.startswith("TOTAL"))
    assert total[1:3] == ["2", "3"]  # the same traffic under serial swaps back to a


async def test_a_policy_installed_while_the_server_runs_is_selected_by_a_reload(
    server_factory, policy_plugin_dir: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.syspath_prepend(str(policy_plugin_dir))
    load_policies()  # for the fixture's replay verify, in this process
    site = tmp_path / "site"  # on the server's path from the start, empty until "installed"
    site.mkdir()
    models = [fake_model("a")]
    server = server_factory(
        config_text(models), env={"PYTHONPATH": os.pathsep.join((str(REPO_ROOT), str(site)))}
    )
    assert server.config_path is not None
    selecting = config_text(models, header=f"routing: {{scheduler: {{use: {PLUGIN_POLICY}}}}}")
    server.config_path.write_text(selecting)
    async with aiohttp.ClientSession() as http:
        reload = server.url + "/api/config/reload"
        async with http.post(reload, headers={"Accept": "text/plain"}) as refused:
            assert refused.status == 400  # not installed yet: named, the running config kept
            said = await refused.text()
            assert f'unknown scheduler "{PLUGIN_POLICY}" (valid: fifo, serial)' in said, said
        shutil.copytree(policy_plugin_dir, site, dirs_exist_ok=True)  # what pip install writes
        async with http.post(reload) as applied:
            assert applied.status == 200, await applied.text()
        assert await _chat(http, server.url, "a") == 200
    policies = [c.schedule["policy"] for c in _log(server.db_path, "ConfigApplied")]
    assert policies == ["serial", PLUGIN_POLICY]
