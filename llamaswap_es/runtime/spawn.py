"""Starting a child of the executor: an upstream or its `cmdStop`, tagged and in its own session.

Both the life cycle (`upstream_process`) and the teardown (`teardown`, which runs `cmdStop`) start
children the same way, so the way lives here, once.
"""

from __future__ import annotations

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


__all__ = ["spawn", "spawn_env"]
