"""Every real-world config in shared/compat loads (or fails) exactly as llama-swap's loader does."""

from __future__ import annotations

import json
import os
from typing import Any

import pytest

from llamaswap_es.config import build_schedule, load_config
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
    assert config.routing.scheduler.use == expected["scheduler"]
    router = expected["router"]
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
