"""Signalling and watching a whole process group: how we make sure nothing of an upstream survives.

An upstream runs as the leader of its own session and process group, so a wrapper script, a
forked worker or any other descendant that stays in the group is signalled with it
(ARCHITECTURE §9.5). A group counts as gone when no live member is left: zombies do not count,
because where PID 1 does not reap (some containers) an orphan's zombie can linger forever.
"""

from __future__ import annotations

import asyncio
import os
import signal

import psutil

GROUP_POLL_S = 0.02
"""How often a wait for a group to empty looks again (signals give no completion event)."""


def is_safe_group(pgid: int) -> bool:
    """Refuse to signal group 0/1 or our own group: a bad pgid must never kill the server."""
    return pgid > 1 and pgid != os.getpgid(0)


def signal_group(pgid: int, sig: int) -> bool:
    """Send `sig` to every member of the group; False when the group has no members left."""
    if not is_safe_group(pgid):
        raise ValueError(f"refusing to signal process group {pgid}")
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        return False
    return True


def group_members(pgid: int) -> list[int]:
    """Pids of the live (non-zombie) members of a process group."""
    members = []
    for proc in psutil.process_iter():
        try:
            if os.getpgid(proc.pid) != pgid:
                continue
            if proc.status() == psutil.STATUS_ZOMBIE:
                continue
        except (ProcessLookupError, psutil.NoSuchProcess, psutil.ZombieProcess):
            continue
        except (PermissionError, psutil.AccessDenied):
            pass
        members.append(proc.pid)
    return members


def group_alive(pgid: int) -> bool:
    """True while the group has a member that is not a zombie."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return bool(group_members(pgid))


async def wait_group_gone(pgid: int, timeout_s: float) -> bool:
    """Wait until the group is empty; False if members are still alive after `timeout_s`."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while await asyncio.to_thread(group_alive, pgid):  # a process-table scan: off the loop
        if loop.time() >= deadline:
            return False
        await asyncio.sleep(GROUP_POLL_S)
    return True


async def kill_group(pgid: int, grace_ms: int) -> bool:
    """SIGTERM the group, SIGKILL it after `grace_ms`, wait until it is gone.

    Returns True when SIGKILL was needed. Waits at most a few seconds after SIGKILL (a process in
    uninterruptible sleep cannot die sooner); a group still present then is left to the caller.
    """
    if not signal_group(pgid, signal.SIGTERM):
        return False
    if await wait_group_gone(pgid, grace_ms / 1000):
        return False
    signal_group(pgid, signal.SIGKILL)
    await wait_group_gone(pgid, KILL_WAIT_S)
    return True


KILL_WAIT_S = 5.0
"""How long to wait for a SIGKILLed group to disappear before giving up on it."""
