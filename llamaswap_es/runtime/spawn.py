"""Starting a child of the executor: an upstream or its `cmdStop`, tagged and in its own session.

Both the life cycle (`upstream_process`) and the teardown (`teardown`, which runs `cmdStop`) start
children the same way, so the way lives here, once.
"""

from __future__ import annotations

import errno
import os
import subprocess

from llamaswap_es.runtime.process_spec import ENV_TAG_VAR, ProcessSpec


def spawn_env(spec: ProcessSpec, tag: str, role: str = "upstream") -> dict[str, str]:
    """The server's environment plus the model's `env` plus our tag (later entries win)."""
    env = dict(os.environ)
    env.update(spec.env)
    env[ENV_TAG_VAR] = tag
    env[ENV_TAG_VAR + "_ROLE"] = role
    return env


def spawn(argv: list[str], spec: ProcessSpec, env: dict[str, str]) -> subprocess.Popen[bytes]:
    """Start `argv` as the leader of a new session, stdout and stderr on one pipe.

    `restore_signals=False` keeps SIGPIPE ignored in the child: if this server dies, an upstream
    writing to the now-reader-less pipe gets EPIPE instead of being killed, so it survives to be
    adopted by the next run (ARCHITECTURE §9.7).
    """
    return subprocess.Popen(
        argv,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=env,
        cwd=spec.cwd,
        start_new_session=True,
        restore_signals=False,
    )


_CANNOT_RUN = {
    errno.ENOENT: "not found",
    errno.EACCES: "permission denied (is it executable?)",
    errno.EPERM: "not permitted",
    errno.ENOEXEC: "not an executable (a script without a #! line?)",
    errno.ENOTDIR: "a part of its path is not a directory",
    errno.EISDIR: "is a directory",
    errno.ELOOP: "too many symbolic links",
    errno.ENAMETOOLONG: "its path is too long",
}
"""errno of a spawn that fails the same way until the command is fixed (permanent)."""


def spawn_error(exc: BaseException, argv: list[str], cwd: str | None) -> tuple[str, bool]:
    """llama-swap's "failed to start command '…': …" for a spawn that raised, naming what could
    not be run (the binary or the working directory), and whether it is permanent."""
    command = " ".join(argv)
    if isinstance(exc, OSError) and exc.errno in _CANNOT_RUN:
        filename = exc.filename if exc.filename is not None else argv[0]
        what = "working directory" if cwd is not None and filename == cwd else "binary"
        reason = f"{what} {str(filename)!r}: {_CANNOT_RUN[exc.errno]}"
        return f"failed to start command '{command}': {reason}", True
    if isinstance(exc, ValueError | subprocess.SubprocessError):  # e.g. a NUL byte in an arg
        return f"failed to start command '{command}': {exc}", True
    return f"failed to start command '{command}': {exc}", False


__all__ = ["spawn", "spawn_env", "spawn_error"]
