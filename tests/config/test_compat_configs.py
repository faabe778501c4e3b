"""Every real-world config in shared/compat loads (or fails) exactly as llama-swap's loader does.

One deliberate difference: a config that names no scheduler gets `serial` (the fork's default)
where llama-swap's loader reports `fifo`, and is warned when it relies on fifo's co-residency.
"""

from __future__ import annotations

import json
import os
from typing import Any

import pytest

from llamaswap_es.config import build_schedule, load_config
from llamaswap_es.config.yaml_dialect import load_tree
from llamaswap_es.errors import ConfigError
from tests.conftest import COMPAT_CONFIGS_DIR

EXPECTED_FILE = COMPAT_CONFIGS_DIR / "EXPECTED.json"
EXPECTED: dict[str, Any] = json.loads(EXPECTED_FILE.read_text()) if EXPECTED_FILE.is_file() else {}
CASES = [(name, "empty env") for name in EXPECTED] + [
    (name, "with_env") for name, exp in EXPECTED.items() if "with_env" in exp
]


def _group_view(config) -> dict[str, Any]:
    return {
        name: {
            "swap": g.swap,
            "exclusive": g.exclusive,
            "persistent": g.persistent,
            "members": g.members,
        }
        for name, g in config.routing.router.settings.groups.items()
    }


def _names_scheduler(name: str) -> bool:
    """Whether the file itself sets routing.scheduler.use (read as YAML, not by our loader)."""
    tree = load_tree((COMPAT_CONFIGS_DIR / name).read_text())
    routing = tree.get("routing") if isinstance(tree, dict) else None
    scheduler = routing.get("scheduler") if isinstance(routing, dict) else None
    return isinstance(scheduler, dict) and bool(scheduler.get("use"))


def _relies_on_co_residency(router: dict[str, Any]) -> bool:
    """From llama-swap's own view of the routing: models may run side by side."""
    if router["use"] == "matrix":
        return True  # every matrix in this corpus has a set of several models
    return any(
        (not g["swap"] and len(g["members"]) > 1) or not g["exclusive"] or g["persistent"]
        for name, g in router["groups"].items()
        if name != "(default)"
    )


@pytest.mark.skipif(not EXPECTED, reason=f"{COMPAT_CONFIGS_DIR} is absent")
@pytest.mark.parametrize(("name", "variant"), CASES)
def test_config_matches_llama_swap(name: str, variant: str, monkeypatch) -> None:
    expected = EXPECTED[name] if variant == "empty env" else EXPECTED[name]["with_env"]
    env = expected.get("env", {})
    monkeypatch.chdir(COMPAT_CONFIGS_DIR)  # errors embed the path exactly as given
    try:
        config = load_config(name, None, env)
    except ConfigError as error:
        assert not expected["loads"], f"llama-swap loads {name}, we failed: {error}"
        assert error.message in [expected["error"], *expected.get("error_variants", [])]
        assert error.source == name
        return
    assert expected["loads"], f"llama-swap fails with {expected.get('error')!r}"
    assert sorted(config.models) == expected["models"]
    assert config.alias_table == expected["aliases"]
    assert config.hooks.on_startup.preload == expected["preload"]
    router = expected["router"]
    if _names_scheduler(name):
        assert config.routing.scheduler.use == expected["scheduler"]
        assert not config.warnings
    else:  # ours: serial by default, and a warning exactly when fifo's co-residency mattered
        assert (expected["scheduler"], config.routing.scheduler.use) == ("fifo", "serial")
        warned = [w for w in config.warnings if "routing.scheduler.use is not set" in w]
        assert len(warned) == int(_relies_on_co_residency(router)), config.warnings
    assert config.routing.router.use == router["use"]
    if router["use"] == "group":
        assert _group_view(config) == router["groups"]
    else:
        matrix = config.routing.router.settings.matrix
        assert list(matrix.sets) == router["sets"]
        assert matrix.vars == router["vars"]
        assert matrix.evict_costs == router.get("evict_costs", {})
    for model_id, want in expected["model_configs"].items():
        model = config.models[model_id]
        got = {
            "cmd": model.cmd,
            "cmdStop": model.cmd_stop,
            "proxy": model.proxy,
            "checkEndpoint": model.check_endpoint,
            "ttl": model.ttl,
        }
        assert got == want, model_id
    members = {m for g in config.routing.router.settings.groups.values() for m in g.members}
    if members <= set(config.models) | set(config.alias_table):
        schedule = build_schedule(config)
        assert set(schedule.models) <= set(config.models)


def test_every_yaml_file_has_an_expectation() -> None:
    if not EXPECTED:
        pytest.skip(f"{COMPAT_CONFIGS_DIR} is absent")
    files = {n for n in os.listdir(COMPAT_CONFIGS_DIR) if n.endswith((".yaml", ".yml"))}
    assert files == set(EXPECTED)
