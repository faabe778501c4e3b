"""Fixtures for the event-log tests: a store on a temporary path, tiny file systems."""

from __future__ import annotations

import os
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from llamaswap_es.events.store import EventStore
from tests.fixtures.event_store import open_booted_store


@pytest.fixture
async def store(db_path: Path) -> AsyncIterator[EventStore]:
    s = await open_booted_store(db_path)
    try:
        yield s
    finally:
        await s.close()


def _mount(target: Path, options: str) -> None:
    target.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(target)],
        check=True,
        capture_output=True,
    )


@pytest.fixture
def tiny_fs(tmp_path: Path) -> Iterator[Path]:
    """A 512 KiB tmpfs (needs root to mount): a disk that really fills up."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tiny tmpfs needs root")
    target = tmp_path / "tiny"
    try:
        _mount(target, "size=512k")
    except (subprocess.CalledProcessError, FileNotFoundError) as exc:
        pytest.skip(f"cannot mount a tmpfs here: {exc}")
    try:
        yield target
    finally:
        subprocess.run(["umount", "-l", str(target)], check=False)


def remount_read_only(target: Path) -> None:
    subprocess.run(["mount", "-o", "remount,ro", str(target)], check=True, capture_output=True)
