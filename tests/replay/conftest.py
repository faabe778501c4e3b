"""Recorded logs for the replay tests, and a runner for `python -m llamaswap_es replay …`."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT
from tests.replay.recording import Arrival, group_config, random_arrivals, record

ABC_ABC = [Arrival(i * 10, f"r{i}", m, 1_000) for i, m in enumerate("ABCABC")]
"""Six requests in a burst while A loads: fifo serves A A, B B, C C (3 loads); serial serves
them in arrival order, one at a time (6 loads)."""


@pytest.fixture
def abc_log(tmp_path: Path) -> Path:
    path = tmp_path / "abc.db"
    record(path, group_config(("A", "B", "C")), ABC_ABC, load_ms=500)
    return path


@pytest.fixture
def long_log(tmp_path: Path) -> Path:
    """~20k rows of mixed traffic with TTLs, cancels and a snapshot every 1000 inputs."""
    path = tmp_path / "long.db"
    arrivals = random_arrivals(3_000, ("a", "b", "c"))
    record(path, group_config(("a", "b", "c"), ttl_ms=3_000), arrivals, snapshot_every=1_000)
    return path


@dataclass
class Result:
    rc: int
    out: str
    err: str


def run_replay(*args: str | Path) -> Result:
    """`python -m llamaswap_es replay ARGS` as a user runs it (UTC, so times are stable)."""
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "TZ": "UTC"}
    proc = subprocess.run(
        [sys.executable, "-m", "llamaswap_es", "replay", *map(str, args)],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    return Result(proc.returncode, proc.stdout, proc.stderr)
