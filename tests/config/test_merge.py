"""spec/config.md §2 and §17.53-54: `--config` plus `--config-dir`, merged as llama-swap merges."""

from __future__ import annotations

from pathlib import Path

import pytest

from llamaswap_es.config import load_config
from llamaswap_es.errors import ConfigError

MODEL = "models:\n  {name}:\n    cmd: s ${{PORT}}\n"


def _write(directory: Path, files: dict[str, str]) -> None:
    directory.mkdir(exist_ok=True)
    for name, text in files.items():
        (directory / name).write_text(text)


def test_neither_source_is_an_error() -> None:
    with pytest.raises(
        ConfigError, match="at least one of -config or -config-dir must be provided"
    ):
        load_config(None, None, {})


def test_config_and_dir_are_additive(tmp_path: Path) -> None:
    main = tmp_path / "main.yaml"
    main.write_text("macros:\n  LOW: 1\napiKeys: [k1]\n" + MODEL.format(name="a"))
    _write(
        tmp_path / "d",
        {
            "beta.yaml": "macros:\n  HIGH: 2\nmodels:\n  c:\n    cmd: s ${LOW} ${HIGH} ${PORT}\n",
            "alpha.yml": "apiKeys: [k2]\n" + MODEL.format(name="b"),
            "notes.txt": "models: [broken",
            "UPPER.YAML": "models: [broken",
        },
    )
    config = load_config(str(main), str(tmp_path / "d"), {})
    assert sorted(config.models) == ["a", "b", "c"]
    assert config.api_keys == ["k1", "k2"]
    assert config.models["c"].cmd == "s 1 2 5802"
    assert config.sources == (
        str(main),
        str(tmp_path / "d" / "alpha.yml"),
        str(tmp_path / "d" / "beta.yaml"),
    )


@pytest.mark.parametrize(
    ("first", "second", "message"),
    [
        (MODEL.format(name="dup"), MODEL.format(name="dup"), 'duplicate models "dup" found in'),
        (
            "groups:\n  g1: {members: []}\n",
            "groups:\n  g1: {members: []}\n",
            'duplicate groups "g1"',
        ),
        ("globalTTL: 100\n", "globalTTL: 200\n", 'conflict at "globalTTL":'),
        ("globalTTL: ~\n", "globalTTL: 5\n", 'conflict at "globalTTL":'),
        ("globalTTL: 5\n", 'globalTTL: "5"\n', 'conflict at "globalTTL":'),
        ("macros:\n  X: 1\n", "macros:\n  X: 2\n", 'conflict at "macros.X"'),
        (
            "startPort: 5800\n",
            "startPort: [5800, 5801]\n",
            "incompatible YAML node kinds (kind 8 vs 2)",
        ),
        ("models:\n", MODEL.format(name="a"), 'conflict at "models": expected a mapping'),
        ("a: 1\n", "- x\n", "top-level YAML must be a mapping"),
        ("a: 1\n", "x: ${env.NOPE}\n", "environment variable 'NOPE' is not set"),
    ],
)
def test_merge_conflicts(tmp_path: Path, first: str, second: str, message: str) -> None:
    _write(tmp_path / "d", {"1.yaml": first, "2.yaml": second})
    with pytest.raises(ConfigError) as caught:
        load_config(None, str(tmp_path / "d"), {})
    assert message in caught.value.message
    assert caught.value.source is not None


@pytest.mark.parametrize(
    ("first", "second", "check"),
    [
        ("globalTTL: 100\n", "globalTTL: 100\n", lambda c: c.global_ttl == 100),
        ("globalTTL:\n", "globalTTL: 5\n", lambda c: c.global_ttl == 5),
        ("hello\n", "globalTTL: 7\n", lambda c: c.global_ttl == 7),
        (
            MODEL.format(name="m") + "matrix:\n  vars: {v: m}\n",
            "matrix:\n  sets: {s: v}\n",
            lambda c: c.routing.router.settings.matrix.vars == {"v": "m"},
        ),
        (
            "hooks:\n  on_startup:\n    preload: [m]\n" + MODEL.format(name="m"),
            "hooks:\n  on_startup:\n    preload: [m]\n",
            lambda c: c.hooks.on_startup.preload == ["m", "m"],
        ),
    ],
)
def test_merges_that_load(tmp_path: Path, first: str, second: str, check) -> None:
    _write(tmp_path / "d", {"1.yaml": first, "2.yaml": second})
    assert check(load_config(None, str(tmp_path / "d"), {}))


def test_config_inside_dir_and_empty_dir(tmp_path: Path) -> None:
    _write(tmp_path / "d", {"a.yaml": MODEL.format(name="a")})
    with pytest.raises(ConfigError, match="is also present in -config-dir"):
        load_config(str(tmp_path / "d" / "a.yaml"), str(tmp_path / "d"), {})
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="no configuration sources found"):
        load_config(None, str(tmp_path / "empty"), {})
    assert list(
        load_config(str(tmp_path / "d" / "a.yaml"), str(tmp_path / "empty"), {}).models
    ) == ["a"]
