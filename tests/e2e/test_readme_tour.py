"""The README's two-minute tour works as written: its commands run, in order, against a real
server with the built-in demo and the default event log path (only the port differs: the
tour's 8080 becomes the test's free port; the first command, the server, is the fixture's)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import aiohttp

from tests.fixtures.server import REPO_ROOT, wait_json

README = REPO_ROOT / "README.md"


def tour_commands() -> list[str]:
    """The tour block's commands: continuation lines joined, comments dropped."""
    text = README.read_text(encoding="utf-8")
    block = re.search(r"## A two-minute tour\s+```sh\n(.*?)```", text, flags=re.S)
    assert block, "README.md has no tour block"
    commands: list[str] = []
    pending = ""
    for raw in block.group(1).splitlines():
        line = re.sub(r"\s{2,}#.*$", "", raw).rstrip()
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        commands.append(pending + line.strip())
        pending = ""
    return commands


async def test_the_readme_tour_runs_as_written(server_factory, tmp_path: Path) -> None:
    commands = tour_commands()
    assert commands[0] == "llamaswap-es", "the tour starts the server with the demo"
    home = tmp_path / "home"
    default_db = home / ".local" / "share" / "llamaswap-es" / "events.db"
    env = {"HOME": str(home), "XDG_DATA_HOME": ""}
    server = server_factory(None, db_path=default_db, env=env)
    shell_env = {k: v for k, v in os.environ.items() if k != "XDG_DATA_HOME"}
    shell_env.update(
        HOME=str(home), PYTHONPATH=str(REPO_ROOT),
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    )  # fmt: skip
    outputs = []
    for command in commands[1:]:
        if command.startswith("sqlite3"):  # the activity rows land just after the answers
            async with aiohttp.ClientSession() as http:
                await wait_json(
                    http, server.url + "/api/metrics/activity", lambda d: d["total"] >= 2
                )
        line = re.sub(r"(localhost|127\.0\.0\.1):8080", f"127.0.0.1:{server.port}", command)
        result = subprocess.run(
            ["bash", "-c", line], env=shell_env, cwd=tmp_path,
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert result.returncode == 0, f"{line}\n{result.stdout}\n{result.stderr}"
        outputs.append(result.stdout)
    fast, slow, timeline, sql = outputs
    assert '"choices"' in fast and "data: " in slow
    assert "demo-slow" in timeline and "demo-fast" in timeline
    rows = dict(line.split("|", 1) for line in sql.strip().splitlines())
    assert set(rows) == {"demo-fast", "demo-slow"}, sql
