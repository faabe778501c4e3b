"""Moving a model whose `${PORT}` is held by another program to a free port, when it starts.

`${PORT}` numbers come from `startPort` when the config is loaded; nothing guarantees that port
is free when the model starts (another program, another llama-swap, a second llamaswap-es demo).
The user never chose it, so instead of failing every request (port_guard.py's error, which a
port written out in the config still gets) the start takes the first free port above every port
`${PORT}` handed out. `ProcessSpawned.port_moved_from` records the move, so the log, replay's
timeline and a restart's recovery all know where the model really listens.

Ports are chosen below the kernel's ephemeral range when the configured ones are (they are by
default), never one handed to another of our starts, and only one that can be bound and that
nothing answers on.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable

from llamaswap_es.runtime.port_guard import listening
from llamaswap_es.runtime.process_spec import ProcessSpec

SEARCH_SPAN = 1000
"""How many ports above the first spare one are tried before giving up."""


def bindable(port: int) -> bool:
    """True when a listener could bind `port` on every IPv4 interface right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("0.0.0.0", port))
        except OSError:
            return False
    return True


def port_is_free(port: int) -> bool:
    return not listening(port) and bindable(port)


class PortChooser:
    """Hands out spare ports to the starts of one executor (never the same one twice at once)."""

    def __init__(self, is_free: Callable[[int], bool] = port_is_free) -> None:
        self._is_free = is_free
        self._held: dict[tuple[str, int], int] = {}
        self._lock = threading.Lock()  # choose runs in a worker thread (it probes ports)

    def choose(self, spec: ProcessSpec, key: tuple[str, int]) -> int | None:
        """A free port for `spec` (which must have an `auto_port`), held for `key` until
        `release(key)`; None when none is free in the span searched."""
        assert spec.auto_port is not None
        first = spec.spare_ports_from or spec.auto_port.port + 1
        with self._lock:
            held = set(self._held.values())
            for port in range(first, min(first + SEARCH_SPAN, 65536)):
                if port not in held and self._is_free(port):
                    self._held[key] = port
                    return port
        return None

    def release(self, key: tuple[str, int]) -> None:
        with self._lock:
            self._held.pop(key, None)
