"""Waiting for a process to exit without blocking the event loop and without a thread per child.

On Linux a pidfd becomes readable when its process terminates, for our own children and for
processes we merely adopted after a restart alike; elsewhere (or if pidfds are unavailable) we
poll. Reaping an own child is the caller's job (`Popen.poll()`), so the exit status is not lost
to a child watcher.
"""

from __future__ import annotations

import asyncio
import os

import psutil

POLL_S = 0.05
"""Polling interval where no pidfd can be had."""


def pid_alive(pid: int) -> bool:
    """True while `pid` exists and is not a zombie."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except (psutil.NoSuchProcess, psutil.ZombieProcess):
        return False
    except psutil.AccessDenied:
        return True


def open_pidfd(pid: int) -> int | None:
    """A pidfd for `pid`, or None where the platform has none or the pid is already gone."""
    opener = getattr(os, "pidfd_open", None)
    if opener is None:
        return None
    try:
        return opener(pid)
    except OSError:
        return None


async def wait_exit(pid: int, pidfd: int | None = None) -> None:
    """Return once `pid` has terminated (it may still be an unreaped zombie).

    `pidfd`, if given, was opened earlier (right after spawn, so the pid cannot have been
    reused); it is closed here.
    """
    if pidfd is None:
        pidfd = open_pidfd(pid)
    if pidfd is None:
        while pid_alive(pid):
            await asyncio.sleep(POLL_S)
        return
    loop = asyncio.get_running_loop()
    done: asyncio.Future[None] = loop.create_future()

    def on_readable() -> None:
        if not done.done():
            done.set_result(None)

    loop.add_reader(pidfd, on_readable)
    try:
        await done
    finally:
        loop.remove_reader(pidfd)
        os.close(pidfd)
