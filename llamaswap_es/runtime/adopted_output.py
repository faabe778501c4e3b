"""Reading an adopted upstream's output again, after the server that read it has died.

An upstream writes its stdout and stderr into one pipe whose only reader was the server that
spawned it. When that server crashes, the upstream keeps running (SIGPIPE stays ignored, see
`spawn`): its writes fail with EPIPE and are lost, nothing else happens to it. On Linux the very
same pipe can be opened again through `/proc/<pid>/fd/1`, which gives it a new reader: the
adopting server reads the upstream's output from then on, into the model's log as before.

A pipe that still has a reader is left alone: the upstream may pipe its output into a logger of
its own (`exec > >(tee …)`), whose text must not be stolen. Finding readers means looking at
every process's open files (ours only: others' are unreadable), so call `reopen_output` through
`asyncio.to_thread`.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable
from typing import IO

from llamaswap_es.runtime.output_pipe import OutputPipe

log = logging.getLogger("llamaswap_es.runtime.executor")

_PROC = "/proc"


async def attach_adopted_output(
    pipe: OutputPipe, pid: int, write: Callable[[str], None], model: str
) -> bool:
    """Read `pid`'s output into `write` from now on, through `pipe`; False if it cannot be.

    Never raises for want of a pipe: the process is adopted all the same, its output unread.
    """
    output = await asyncio.to_thread(reopen_output, pid)
    try:
        if output is None:
            raise OSError("no output pipe without a reader")
        await pipe.attach(output, write)
    except OSError as exc:
        log.info("output of adopted model=%s pid=%s stays unread: %s", model, pid, exc)
        if output is not None:
            output.close()
        return False
    return True


def reopen_output(pid: int) -> IO[bytes] | None:
    """A new, non-blocking read end of the pipe `pid` writes its stdout (or else stderr) to.

    None when neither is a pipe without a reader, or `/proc` cannot tell (not Linux, not ours).
    """
    for fd in (1, 2):
        path = f"{_PROC}/{pid}/fd/{fd}"
        try:
            target = os.readlink(path)
            if not target.startswith("pipe:") or pipe_has_reader(target):
                continue
            return os.fdopen(os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC), "rb", 0)
        except OSError:
            continue
    return None


def pipe_has_reader(target: str) -> bool:
    """True if a process we can see holds a read end of the pipe `target` (`pipe:[inode]`)."""
    try:
        pids = [name for name in os.listdir(_PROC) if name.isdigit()]
    except OSError:
        return True  # cannot tell: assume somebody reads it
    for pid in pids:
        fd_dir = f"{_PROC}/{pid}/fd"
        try:
            fds = os.listdir(fd_dir)
        except OSError:  # gone, or another user's
            continue
        for fd in fds:
            try:
                if os.readlink(f"{fd_dir}/{fd}") != target:
                    continue
                if _read_mode(f"{_PROC}/{pid}/fdinfo/{fd}"):
                    return True
            except OSError:
                continue
    return False


def _read_mode(fdinfo: str) -> bool:
    with open(fdinfo) as info:
        for line in info:
            if line.startswith("flags:"):
                return int(line.split()[1], 8) & os.O_ACCMODE == os.O_RDONLY
    return False


__all__ = ["attach_adopted_output", "pipe_has_reader", "reopen_output"]
