"""Helpers for the config tests: load YAML text through the real loader from a temp file."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from llamaswap_es.config import LlamaSwapConfig, load_config

Loader = Callable[..., LlamaSwapConfig]


@pytest.fixture
def load_yaml(tmp_path: Path) -> Loader:
    """Write `text` to config.yaml and load it with `env` (empty by default)."""

    def load(text: str, env: dict[str, str] | None = None) -> LlamaSwapConfig:
        path = tmp_path / "config.yaml"
        path.write_text(text)
        return load_config(str(path), None, env or {})

    return load
