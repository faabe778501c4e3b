"""The single-server lock leaves nothing behind after a clean exit, and removing its file on
release can never let two servers hold the log at once."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

import pytest

from llamaswap_es.errors import StoreLockedError
from llamaswap_es.events.lock import ServerLock, _still_at, lock_path_for
from tests.fixtures.event_store import open_booted_store


async def test_a_clean_close_removes_the_lock_file_and_the_log_opens_again(db_path: Path) -> None:
    store = await open_booted_store(db_path)
    lock = lock_path_for(db_path)
    assert lock.read_text().strip() == str(os.getpid()), "the holder is named while it runs"
    await store.close()
    assert not lock.exists(), "no stale lock file after a clean exit"
    again = await open_booted_store(db_path)
    await again.close()


def test_a_second_server_is_refused_while_the_first_holds_it(db_path: Path) -> None:
    first = ServerLock.acquire(db_path)
    try:
        with pytest.raises(StoreLockedError, match=f"process {os.getpid()}"):
            ServerLock.acquire(db_path)
    finally:
        first.release()


def test_a_server_that_opened_the_removed_file_takes_the_new_one(db_path: Path) -> None:
    """B opens the lock file just before A exits (A removes it, then unlocks): B's flock then
    succeeds on a file nobody can see. B must notice, or B and a third server C (which creates
    a new file) would both hold the log."""
    first = ServerLock.acquire(db_path)
    path = lock_path_for(db_path)
    late = os.open(path, os.O_RDWR)  # B, a moment before A's release
    try:
        first.release()
        fcntl.flock(late, fcntl.LOCK_EX | fcntl.LOCK_NB)  # B's lock on the removed file
        assert not _still_at(late, path), "B must see that its file was removed"
        third = ServerLock.acquire(db_path)  # C (and B, retrying) lock the file at the path
        try:
            with pytest.raises(StoreLockedError):
                ServerLock.acquire(db_path)
        finally:
            third.release()
    finally:
        os.close(late)
