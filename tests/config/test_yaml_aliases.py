"""YAML that refers to itself or expands without bound is refused, naming the file and the line.

`a: &a [*a]` used to end in a 3,000-line RecursionError and a billion-laughs file in minutes of
CPU and gigabytes (issue 13). yaml.v3 (llama-swap's parser) refuses both; so does `check-config`,
in seconds, with its wording. Server start and reload use the same loader (tests/e2e/
test_bad_input.py runs them).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from llamaswap_es.config import load_config
from llamaswap_es.errors import ConfigError
from tests.conftest import REPO_ROOT


def _check_config(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "llamaswap_es", "check-config", *args],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def _laughs(levels: int, width: int = 9) -> str:
    lines = ["models: {}", "l0: &l0 [" + ", ".join(['"lol"'] * width) + "]"]
    for i in range(1, levels):
        lines.append(f"l{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * width) + "]")
    return "\n".join(lines) + "\n"


def test_check_config_refuses_a_self_reference_with_file_and_line(tmp_path: Path) -> None:
    (tmp_path / "c.yaml").write_text("models: {}\nloop: &me\n  - *me\n")
    done = _check_config("--config", "c.yaml", cwd=tmp_path)
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    assert done.stderr.splitlines() == [
        "llamaswap-es: failed to parse config c.yaml: yaml: line 2: anchor 'me' value contains "
        "itself",
        "  file: c.yaml",
    ]


def test_check_config_refuses_an_alias_bomb_in_seconds(tmp_path: Path) -> None:
    (tmp_path / "c.yaml").write_text(_laughs(10))  # 9**10 values once expanded
    started = time.monotonic()
    done = _check_config("--config", "c.yaml", cwd=tmp_path)
    assert time.monotonic() - started < 20
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    first = done.stderr.splitlines()[0]
    assert first.startswith("llamaswap-es: failed to parse config c.yaml: yaml: line ")
    assert "document contains excessive aliasing" in first


def test_a_bomb_in_one_file_of_a_config_dir_names_that_file(tmp_path: Path) -> None:
    (tmp_path / "conf.d").mkdir()
    (tmp_path / "conf.d" / "a.yaml").write_text("models:\n  m:\n    cmd: srv --port ${PORT}\n")
    (tmp_path / "conf.d" / "b.yaml").write_text(_laughs(8).replace("models: {}\n", ""))
    with pytest.raises(ConfigError) as caught:
        load_config(None, str(tmp_path / "conf.d"))
    assert caught.value.source == str(tmp_path / "conf.d" / "b.yaml")
    assert "excessive aliasing" in caught.value.message


def test_a_merge_key_that_includes_its_own_mapping_is_refused(tmp_path: Path) -> None:
    (tmp_path / "c.yaml").write_text("models: {}\nbase: &base\n  x: 1\n  <<: *base\n")
    with pytest.raises(ConfigError, match=r"yaml: line 2: anchor 'base' value contains itself"):
        load_config(str(tmp_path / "c.yaml"), None)


def test_anchors_shared_by_many_models_still_load(tmp_path: Path) -> None:
    template = "defaults: &defaults\n  ttl: 60\n  unloadAfter: 60\n  checkEndpoint: /health\n"
    models = "".join(
        f"  m{i}:\n    <<: *defaults\n    cmd: srv --port ${{PORT}}\n" for i in range(300)
    )
    (tmp_path / "c.yaml").write_text(template + "models:\n" + models)
    config = load_config(str(tmp_path / "c.yaml"), None)
    assert len(config.models) == 300
    assert config.models["m299"].check_endpoint == "/health"
