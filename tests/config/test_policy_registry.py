"""One registry of scheduling policies: the built-ins and the entry point group
`llamaswap_es.policies`. A policy in its own package (tests/plugins/example_policy, installed
with pip into a temporary directory) is selectable by a config and scheduled by the reducer,
and adding it touched no file of the package. (The server, `check-config` and `replay whatif`
with it: tests/e2e/test_policy_plugin.py.)"""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest

from llamaswap_es.config import build_schedule
from llamaswap_es.config.policy_registry import (
    BUILTIN_POLICIES,
    ENTRY_POINT_GROUP,
    PolicyRegistryError,
    policy_entries,
    policy_names,
)
from llamaswap_es.core.policy_registry import policy_named
from llamaswap_es.errors import ConfigError
from llamaswap_es.runtime.policy_loader import PolicyLoadError, load_policies
from tests.config.conftest import Loader
from tests.core.harness import Run, classic, play
from tests.fixtures.policy_plugin import PLUGIN_POLICY

PACKAGE = Path(__file__).resolve().parents[2] / "llamaswap_es"
M = "models:\n  a:\n    cmd: srv --port ${PORT}\n  b:\n    cmd: srv --port ${PORT}\n"


def _dist_info(site: Path, dist: str, entry_points: str) -> None:
    """What pip writes for an installed distribution (the parts importlib.metadata reads)."""
    info = site / f"{dist.replace('-', '_')}-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(f"[{ENTRY_POINT_GROUP}]\n{entry_points}\n")


def test_the_builtins_the_config_lists_are_the_core_policies() -> None:
    assert policy_names() == ["fifo", "serial"]
    for name, target in BUILTIN_POLICIES.items():
        module, _, attribute = target.partition(":")
        assert type(policy_named(name)) is getattr(importlib.import_module(module), attribute)


def test_a_policy_package_registers_by_entry_point_and_the_reducer_uses_it(
    policy_plugin_dir: Path, monkeypatch: pytest.MonkeyPatch, load_yaml: Loader
) -> None:
    with pytest.raises(ConfigError, match=f'unknown scheduler "{PLUGIN_POLICY}"'):
        load_yaml(M + f"routing: {{scheduler: {{use: {PLUGIN_POLICY}}}}}\n")

    monkeypatch.syspath_prepend(str(policy_plugin_dir))
    assert policy_names() == ["fifo", PLUGIN_POLICY, "serial"]
    origin = policy_entries()[PLUGIN_POLICY].origin
    assert "llamaswap-es-newest-first" in origin and ENTRY_POINT_GROUP in origin
    config = load_yaml(M + f"routing: {{scheduler: {{use: {PLUGIN_POLICY}}}}}\n")
    assert build_schedule(config).policy == PLUGIN_POLICY
    assert PLUGIN_POLICY in load_policies()

    run = Run(classic("A", "B", policy=PLUGIN_POLICY))
    play(
        run,
        [
            ("req r1 A", ["plan A []", "start A#1"]),
            ("req r2 B", "pos r2:1"),
            ("req r3 A", "pos r3:1 r2:2"),  # the newest goes first
            ("ready A", "dispatch r1 A#1"),
            ("done r1", ["dispatch r3 A#1", "pos r2:1"]),  # no swap: A is still loaded
            ("done r3", ["plan B [A]", "stop A#1 evict 10000"]),
        ],
    )


def test_adding_the_example_policy_touched_no_file_of_the_package() -> None:
    mentions = [
        str(path.relative_to(PACKAGE))
        for path in PACKAGE.rglob("*")
        if path.is_file() and path.suffix in (".py", ".json", ".js", ".toml", ".md")
        and ("newest-first" in path.read_text() or "newest_first" in path.read_text())
    ]  # fmt: skip
    assert mentions == []


def test_a_policy_that_cannot_be_imported_is_named_with_its_distribution(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _dist_info(tmp_path, "broken-policy", "broken = no_such_module_here:Policy")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(PolicyLoadError) as caught:
        load_policies()
    message = str(caught.value)
    assert "'broken'" in message and "broken-policy" in message
    assert "no_such_module_here" in message and "ModuleNotFoundError" in message


def test_an_entry_point_cannot_take_a_builtin_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, load_yaml: Loader
) -> None:
    _dist_info(tmp_path, "fifo-thief", "fifo = thief:Fifo")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(PolicyRegistryError, match="'fifo' is registered twice: built in"):
        policy_entries()
    with pytest.raises(ConfigError) as caught:  # a config load says it with the key
        load_yaml(M + "routing: {scheduler: {use: fifo}}\n")
    assert "fifo-thief" in caught.value.message
    assert caught.value.key_path == "routing.scheduler.use"
