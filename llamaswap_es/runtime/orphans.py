"""Finding and judging processes a previous run of the server left behind.

Every upstream we spawn carries `LLAMASWAP_ES_TAG=<env_tag>:<model>:<instance>` in its
environment (and its descendants inherit it), so after a crash the recovery can find it even when
its pid never reached the log. A recorded pid is trusted only if its OS creation time still matches
the recorded one, so a pid the kernel has since given to another process is never adopted or
killed. The log-driven recovery itself belongs to the run loop; these are its building blocks.
"""

from __future__ import annotations

import os
from collections.abc import Collection
from dataclasses import dataclass

import psutil

from llamaswap_es.runtime.health import probe_health
from llamaswap_es.runtime.process_group import kill_group
from llamaswap_es.runtime.process_spec import ENV_TAG_VAR

__all__ = [
    "TaggedProcess",
    "find_tagged_processes",
    "kill_group",
    "parse_tag",
    "probe_health",
    "process_matches",
    "process_started_at_ms",
    "read_tag",
    "tagged_with",
]

START_TIME_TOLERANCE_MS = 1_000
"""psutil derives creation times from the boot time, which NTP can nudge by up to a second; a
reused pid would need the whole pid space to wrap within that second."""


@dataclass(frozen=True, slots=True)
class TaggedProcess:
    """A live process carrying our tag. `role` is "upstream" or "stop" (a `cmdStop`)."""

    pid: int
    pgid: int | None
    model: str
    instance: int
    started_at_ms: int
    role: str = "upstream"


def format_tag(env_tag: str, model: str, instance: int) -> str:
    return f"{env_tag}:{model}:{instance}"


def parse_tag(tag: str, env_tag: str) -> tuple[str, int] | None:
    """(model, instance) from a tag of this server, None for another server's or a bad tag.

    Model ids may contain ':' (`author/model:F16`), so the instance is after the last colon and
    the env tag is matched as an exact prefix.
    """
    prefix = env_tag + ":"
    if not tag.startswith(prefix):
        return None
    model, sep, instance = tag[len(prefix) :].rpartition(":")
    if not sep or not instance.isdigit():
        return None
    return model, int(instance)


def read_tag(proc: psutil.Process) -> tuple[str, str] | None:
    """(tag, role) from a process's environment; None if untagged, gone or unreadable."""
    try:
        env = proc.environ()
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess, OSError):
        return None
    tag = env.get(ENV_TAG_VAR)
    if tag is None:
        return None
    return tag, env.get(ENV_TAG_VAR + "_ROLE", "upstream")


def process_started_at_ms(pid: int) -> int | None:
    """The OS creation time of `pid` in ms since the epoch, None if it does not exist."""
    try:
        return int(psutil.Process(pid).create_time() * 1000)
    except psutil.Error:
        return None


def find_tagged_processes(env_tag: str) -> list[TaggedProcess]:
    """Every live, non-zombie process carrying a tag of `env_tag`, sorted by pid.

    Reads each process's environment (only our own user's are readable), so it takes a few ms
    per hundred processes: call it through `asyncio.to_thread` from async code.
    """
    found: list[TaggedProcess] = []
    own_pid = os.getpid()
    for proc in psutil.process_iter():
        if proc.pid == own_pid:
            continue
        tagged = read_tag(proc)
        if tagged is None:
            continue
        parsed = parse_tag(tagged[0], env_tag)
        if parsed is None:
            continue
        try:
            if proc.status() == psutil.STATUS_ZOMBIE:
                continue
            started = int(proc.create_time() * 1000)
            pgid: int | None = os.getpgid(proc.pid)
        except (psutil.NoSuchProcess, psutil.ZombieProcess, ProcessLookupError):
            continue
        except (psutil.AccessDenied, PermissionError):
            pgid = None
            started = 0
        found.append(
            TaggedProcess(
                pid=proc.pid,
                pgid=pgid,
                model=parsed[0],
                instance=parsed[1],
                started_at_ms=started,
                role=tagged[1],
            )
        )
    return sorted(found, key=lambda p: p.pid)


def tagged_with(tags: Collection[str], role: str = "upstream") -> list[psutil.Process]:
    """Every live, non-zombie process (not this one) whose tag is exactly one of `tags`.

    How a stop finds the descendants of an instance that left its process group (`setsid`, a
    daemonising wrapper): they keep the tag they inherited. Exact matching means another
    instance, another model or another server is never included. The `psutil.Process` objects
    remember each process's creation time, so signalling one whose pid was reused in the
    meantime raises `NoSuchProcess` instead of hitting a stranger. Reads every process's
    environment: call it through `asyncio.to_thread` from async code.
    """
    wanted = {(tag, role) for tag in tags}
    own_pid = os.getpid()
    found: list[psutil.Process] = []
    for proc in psutil.process_iter():
        if proc.pid == own_pid or read_tag(proc) not in wanted:
            continue
        try:
            if proc.status() != psutil.STATUS_ZOMBIE:
                found.append(proc)
        except psutil.Error:
            continue
    return found


def process_matches(
    pid: int, started_at_ms: int, tolerance_ms: int = START_TIME_TOLERANCE_MS
) -> bool:
    """True if `pid` is alive (not a zombie) and is the process created at `started_at_ms`."""
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return False
        actual = int(proc.create_time() * 1000)
    except (psutil.NoSuchProcess, psutil.ZombieProcess):
        return False
    return abs(actual - started_at_ms) <= tolerance_ms
