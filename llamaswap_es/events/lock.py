"""The single-server lock: one server writes to one event log, and a dead server never blocks.

The lock is an OS advisory lock (`flock`) on a sidecar file `<database>.lock`. The kernel drops
it when the holding process dies, however it dies (SIGKILL included), so a stale lock cannot
exist; the pid written into the file only serves the error message. The descriptor is opened
close-on-exec (Python's default), so upstream servers we spawn never inherit it and cannot keep
the log locked after we are gone.

A clean exit removes the file (while still holding the lock), so nothing is left beside the log
that looks like a server still running. That is safe because taking the lock checks that the
file locked is still the one at the path: a server that opened the old file just before it was
removed finds it gone after `flock` succeeds, and tries again with the new file.
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
        for _ in range(_ATTEMPTS):
            fd = _open_and_lock(db_path, lock_path)
            if _still_at(fd, lock_path):
                break
            os.close(fd)  # removed by the server that held it as it exited: take the new file
        else:
            raise StoreLockedError(
                f"{db_path}: {lock_path} kept being replaced while this server tried to lock it; "
                "is another llamaswap-es starting and stopping on the same log?"
            )
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        except OSError:  # a read-only or full disk: the lock still holds, only the pid is missing
            pass
        return cls(db_path, fd)

    def release(self) -> None:
        """Remove the lock file, then let the lock go (in that order: see the module's text)."""
        if self._fd is not None:
            fd, self._fd = self._fd, None
            try:
                os.unlink(lock_path_for(self.db_path))
            except OSError:  # gone already, or a read-only directory: the flock still ends
                pass
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)


_ATTEMPTS = 20


def _open_and_lock(db_path: Path, lock_path: Path) -> int:
    """The lock file's descriptor, locked; `StoreLockedError` naming the holder when held."""
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
    return fd


def _still_at(fd: int, lock_path: Path) -> bool:
    """True when the locked descriptor is the file now at `lock_path` (not a removed one)."""
    try:
        at_path = os.stat(lock_path)
    except FileNotFoundError:
        return False
    held = os.fstat(fd)
    return (held.st_dev, held.st_ino) == (at_path.st_dev, at_path.st_ino)


def _read_pid(fd: int) -> int | None:
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
        return int(text) if text.isdigit() else None
    except OSError:
        return None
