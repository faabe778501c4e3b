"""Fixtures shared by every test package: free ports, the shared upstreams, temp event logs."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.fixtures.disk import small_disk  # noqa: F401
from tests.fixtures.net import free_port
from tests.fixtures.postgres import (  # noqa: F401
    own_postgres,
    pg_url,
    postgres_server,
    postgres_template,
)
from tests.fixtures.processes import (  # noqa: F401
    env_tag,
    freeze,
    no_leftover_processes,
    spawn_tagged,
)
from tests.fixtures.prometheus import prometheus_factory  # noqa: F401
from tests.fixtures.server import server_factory  # noqa: F401

REPO_ROOT = Path(__file__).resolve().parent.parent
SHARED_DIR = REPO_ROOT.parent / "shared"
UPSTREAMS_DIR = SHARED_DIR / "upstreams"
COMPAT_CONFIGS_DIR = SHARED_DIR / "compat" / "llama-swap-configs"


@pytest.fixture
def port() -> int:
    return free_port()


@pytest.fixture
def upstreams_dir() -> Path:
    """The real llama-server and tiny GGUF models; tests using it skip where it is absent."""
    if not (UPSTREAMS_DIR / "llama-server").is_file():
        pytest.skip(f"{UPSTREAMS_DIR} is absent (a user's fresh checkout)")
    return UPSTREAMS_DIR


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    """A path for a fresh event log in the test's own temporary directory."""
    return tmp_path / "events.db"
