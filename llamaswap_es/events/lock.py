"""The single-server lock: one server writes to one event log, and a dead server never blocks.

The lock is an OS advisory lock (`flock`) on a sidecar file `<database>.lock`. The kernel drops
it when the holding process dies, however it dies (SIGKILL included), so a stale lock cannot
exist; the pid written into the file only serves the error message. The descriptor is opened
close-on-exec (Python's default), so upstream servers we spawn never inherit it and cannot keep
the log locked after we are gone. The file is never deleted: deleting it would let a second
server lock a fresh inode while the first still holds the old one.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from llamaswap_es.events.errors import StoreLockedError, translate_sqlite_error


def lock_path_for(db_path: Path) -> Path:
    return db_path.with_name(db_path.name + ".lock")


class ServerLock:
    """An exclusive lock on `<db_path>.lock` held for the life of a store."""

    def __init__(self, db_path: Path, fd: int):
        self.db_path = db_path
        self._fd: int | None = fd

    @classmethod
    def acquire(cls, db_path: Path) -> ServerLock:
        """Take the lock or raise `StoreLockedError` naming the pid that holds it."""
        lock_path = lock_path_for(db_path)
        try:
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise translate_sqlite_error(exc, db_path) from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_pid(fd)
            os.close(fd)
            who = f"process {holder}" if holder else "another process"
            raise StoreLockedError(
                f"{db_path}: the event log is in use by another llamaswap-es server ({who} holds "
                f"{lock_path}). Stop that server first, or give this one another database path."
            ) from None
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        except OSError:  # a read-only or full disk: the lock still holds, only the pid is missing
            pass
        return cls(db_path, fd)

    def release(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)


def _read_pid(fd: int) -> int | None:
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
        return int(text) if text.isdigit() else None
    except OSError:
        return None
