"""docs/deploy.md as a user follows it: every shell block says how it is checked, the blocks this
test owns run as written, and the Containerfile's and compose.yaml's command lines are ones this
version of `llamaswap-es` accepts."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from llamaswap_es.cli import build_parser, serve_options
from tests.fixtures.server import REPO_ROOT

DOC = REPO_ROOT / "docs" / "deploy.md"
THIS_TEST = "tests/e2e/test_deploy_doc.py"
MARKER = re.compile(r"<!-- (run by: (?P<by>\S+)|not runnable here: (?P<why>[^>]+)) -->\n```sh\n")


def sh_blocks() -> list[tuple[str | None, str | None, str]]:
    """(run by, not-runnable reason, commands) of every ```sh block, in order."""
    text = DOC.read_text(encoding="utf-8")
    blocks = []
    for match in re.finditer(r"```sh\n(.*?)```", text, flags=re.S):
        marked = MARKER.search(text, max(0, match.start() - 200), match.start() + 6)
        by = marked.group("by") if marked else None
        why = marked.group("why") if marked else None
        blocks.append((by, why, match.group(1)))
    return blocks


def commands(block: str) -> list[str]:
    return [re.sub(r"\s{2,}#.*$", "", line).strip() for line in block.splitlines() if line.strip()]


def test_every_shell_block_is_run_by_a_test_or_marked_not_runnable() -> None:
    blocks = sh_blocks()
    assert len(blocks) >= 4
    for by, why, text in blocks:
        assert by or why, f"docs/deploy.md: a block says neither who runs it nor why not:\n{text}"
        if by:
            assert (REPO_ROOT / by).is_file(), f"docs/deploy.md names a runner that is gone: {by}"
    runners = {by for by, _, _ in blocks if by}
    assert runners == {THIS_TEST, "tools/wheel_smoke.py"}
    smoke = (REPO_ROOT / "tools" / "wheel_smoke.py").read_text()
    for by, _, text in blocks:
        if by == "tools/wheel_smoke.py":  # the smoke does what the block says, step by step
            assert '"wheel", "-q", "--no-deps", "-w"' in smoke and "pip wheel --no-deps" in text
            assert '"venv"' in smoke and "-m venv" in text
            assert '"--version"' in smoke and "--version" in text


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is absent")
def test_the_systemd_block_runs_as_written(tmp_path: Path) -> None:
    (block,) = [text for by, _, text in sh_blocks() if by == THIS_TEST]
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    for line in commands(block):
        result = subprocess.run(
            ["bash", "-c", line], cwd=tmp_path, env=env, capture_output=True, text=True,
            timeout=60,
        )  # fmt: skip
        assert result.returncode == 0, f"{line}\n{result.stdout}{result.stderr}"
    unit = (tmp_path / "llamaswap-es.service").read_text()
    lines = set(unit.splitlines())
    assert {"Type=notify", "Restart=on-failure", "KillMode=process", "User=llm"} <= lines
    assert "WantedBy=multi-user.target" in lines
    assert any(re.fullmatch(r"WatchdogSec=\d+", line) for line in lines)
    (exec_start,) = [line for line in lines if line.startswith("ExecStart=")]
    program, *args = exec_start.removeprefix("ExecStart=").split()
    assert Path(program).is_absolute() and os.access(program, os.X_OK)
    assert args == ["--config", "/etc/llamaswap-es/config.yaml"]


def test_a_user_unit_and_a_path_with_a_percent_sign(tmp_path: Path) -> None:
    config = tmp_path / "50%" / "config.yaml"
    result = subprocess.run(
        [sys.executable, "-m", "llamaswap_es", "systemd-unit", "--user-unit",
         "--config", str(config), "--listen", "127.0.0.1:9090"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert "WantedBy=default.target" in lines
    assert not [line for line in lines if line.startswith("User=")]
    (exec_start,) = [line for line in lines if line.startswith("ExecStart=")]
    assert f"--config {str(config).replace('%', '%%')} --listen 127.0.0.1:9090" in exec_start


def test_the_container_and_compose_command_lines_are_accepted() -> None:
    containerfile = (REPO_ROOT / "Containerfile").read_text()
    entry = json.loads(re.search(r"^ENTRYPOINT (\[.*\])$", containerfile, flags=re.M).group(1))
    default = json.loads(re.search(r"^CMD (\[.*\])$", containerfile, flags=re.M).group(1))
    assert entry[0] == "llamaswap-es"
    assert "llamaswap_es-*.whl" in containerfile and "pip wheel" in containerfile
    compose = yaml.safe_load((REPO_ROOT / "compose.yaml").read_text())
    service = compose["services"]["llamaswap-es"]
    assert service["runtime"] == "nvidia"
    assert "llamaswap-es-data:/data" in service["volumes"]
    assert "llamaswap-es-data" in compose["volumes"]
    assert "XDG_DATA_HOME=/data" in containerfile, "the volume holds the event log"
    for argv in (entry[1:] + default, entry[1:] + service["command"]):
        options = serve_options(build_parser().parse_args(argv))
        assert (options.listen_host, options.listen_port) == ("", 8080)

