"""config-schema.json: generated from the config models, checked in as generated, and judging a
file as the loader does (the real-world corpus and small cases); config.example.yaml names every
key it knows and loads."""

from __future__ import annotations

import functools
import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from llamaswap_es.config.env_macros import substitute_env_macros
from llamaswap_es.config.json_schema import CHECKOUT, PACKAGED, config_schema, schema_text
from llamaswap_es.config.yaml_dialect import load_tree
from llamaswap_es.errors import ConfigError
from tests.config.conftest import Loader
from tests.config.test_cli import _run
from tests.conftest import COMPAT_CONFIGS_DIR, REPO_ROOT

EXPECTED_FILE = COMPAT_CONFIGS_DIR / "EXPECTED.json"
EXPECTED: dict[str, Any] = json.loads(EXPECTED_FILE.read_text()) if EXPECTED_FILE.is_file() else {}
EXAMPLE = REPO_ROOT / "config.example.yaml"
STRUCTURAL = ("yaml: unmarshal errors", "profile must be a mapping", "logToStdout must be one of")
"""Refusals for a value's shape or vocabulary, which a schema can see; every other refusal
(an unset variable, an unknown macro, ${PORT} in proxy only) needs the loader."""


@functools.cache
def _validator() -> jsonschema.Draft202012Validator:
    schema = config_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def _instance(text: str, env: dict[str, str] | None = None) -> Any:
    """The document as the loader parses it (yaml.v3's reading), as JSON data."""
    tree = load_tree(substitute_env_macros(text, env or {}))
    return json.loads(json.dumps(tree, default=str))


def _problems(text: str, env: dict[str, str] | None = None) -> list[str]:
    errors = _validator().iter_errors(_instance(text, env))
    return [f"{'.'.join(map(str, e.absolute_path))}: {e.message[:120]}" for e in errors]


def test_the_checked_in_schema_is_what_the_models_generate() -> None:
    generated = schema_text()
    for copy in (CHECKOUT, PACKAGED):
        assert copy.read_text() == generated, (
            f"{copy} is stale: run `llamaswap-es config-schema --update`"
        )
    done = _run("config-schema", cwd=REPO_ROOT)
    assert done.returncode == 0 and done.stdout == generated


@pytest.mark.skipif(not EXPECTED, reason=f"{COMPAT_CONFIGS_DIR} is absent")
def test_every_real_config_validates_exactly_as_the_loader_judges_its_shape() -> None:
    structural = 0
    for name, expected in EXPECTED.items():
        outcome = expected.get("with_env", expected)  # with its variables set, where it has any
        problems = _problems((COMPAT_CONFIGS_DIR / name).read_text(), outcome.get("env"))
        error = outcome.get("error", "")
        if not outcome["loads"] and error.startswith(STRUCTURAL):
            structural += 1
            assert problems, f"{name}: the loader refuses its shape ({error!r}), the schema not"
        else:
            assert not problems, f"{name} ({'loads' if outcome['loads'] else error!r}): {problems}"
    assert structural >= 3  # a map where a string goes, a legacy profile list, logToStdout


CASES = [
    ("a typo in llama-swap's keys is ignored", "healthCheckTimout: 5\n"),
    ("an int field truncates a float", "globalTTL: 5.9\n"),
    ("yaml.v3 bool words", "sendLoadingState: yes\nincludeAliasesInList: off\n"),
    ("a quoted true is no bool", "sendLoadingState: 'true'\n"),
    ("a string where an int goes", "startPort: '5800'\n"),
    ("any scalar is a string", "models:\n  m:\n    cmd: srv --port ${PORT}\n    name: 2024\n"),
    ("a map where a string goes", "models:\n  m:\n    cmd: {a: 1}\n"),
    ("a null model", "models:\n  m: ~\n"),
    ("null keeps a default", "healthCheckTimeout: ~\nperformance: {every: ~}\n"),
    ("a Go duration", "performance: {every: 1m30s}\n"),
    ("a plain number is no duration", "performance: {every: 30}\n"),
    # (An unknown scheduler is the loader's to refuse: the policies installed beside it decide,
    # which a schema file cannot know; tests/config/test_policy_registry.py.)
    ("fifo by name", "routing: {scheduler: {use: fifo}}\n"),
    ("an unknown router", "routing: {router: {use: ring}}\n"),
    ("a legacy profile list", "profiles:\n  p: [a, b]\n"),
    ("a peer without models", "peers:\n  p: {proxy: 'http://h:1'}\n"),
    ("our section refuses unknown keys", "llamaswap-es: {queueTimeout: 5}\n"),
    ("our section, spelled right", "llamaswap-es: {queueTimeoutSeconds: 5, synchronous: FULL}\n"),
    ("our durability words only", "llamaswap-es: {synchronous: fast}\n"),
    ("our retention is whole days", "llamaswap-es: {eventRetentionDays: -1}\n"),
]


@pytest.mark.parametrize(("case", "text"), CASES, ids=[c for c, _ in CASES])
def test_the_schema_and_the_loader_agree(load_yaml: Loader, case: str, text: str) -> None:
    try:
        load_yaml(text)
        loads = True
    except ConfigError:
        loads = False
    problems = _problems(text)
    assert loads == (not problems), (case, "loads" if loads else "refused", problems)


def _schema_keys(schema: dict[str, Any]) -> set[str]:
    """Every property name the schema knows, at any depth."""
    keys: set[str] = set()

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            keys.update(node.get("properties", {}))
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(schema)
    return keys


def test_the_example_names_every_key_loads_and_validates(tmp_path: Path) -> None:
    text = EXAMPLE.read_text()
    missing = sorted(
        key
        for key in _schema_keys(config_schema())
        if not re.search(rf"^\s*#?\s*{re.escape(key)}:", text, re.MULTILINE)
        and not re.search(rf"[{{ ,]{re.escape(key)}:", text)
    )
    assert not missing, f"config.example.yaml does not show: {missing}"
    done = _run("check-config", "--config", str(EXAMPLE), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""  # no warning: it names its scheduler
    assert json.loads(done.stdout)["routing"]["scheduler"]["use"] == "fifo"
    assert _problems(text) == []
