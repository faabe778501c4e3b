"""systemd's notify protocol (`sd_notify(3)`), spoken directly: no dependency for a few lines.

A service started with `Type=notify` finds the path of a datagram socket in `NOTIFY_SOCKET` and
sends it newline-separated `KEY=value` lines: `READY=1`, `WATCHDOG=1`, `STATUS=…`, `STOPPING=1`.
A name starting with `@` is in Linux's abstract namespace (the `@` stands for a leading NUL).
`WATCHDOG_USEC` (with `WATCHDOG_PID`, when set, naming this process) says how often systemd
expects `WATCHDOG=1`; without a notify socket every call here does nothing, so the server runs
the same under systemd, in a container or in a terminal.
"""

from __future__ import annotations

import errno
import logging
import os
import socket
from collections.abc import Mapping, MutableMapping

log = logging.getLogger("llamaswap_es.runtime.sd_notify")

NOTIFY_VARIABLES = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")
"""What systemd sets for the service itself; removed from our environment once read, so the
models we start (which inherit it) never talk to systemd in our name."""

MAX_STATUS_CHARS = 400


def socket_address(value: str) -> str | bytes | None:
    """The address to send to: a filesystem path, or the abstract name for `@name`.

    None (with a warning) for what this implementation does not speak (`vsock:`, relative
    paths): systemd itself only ever gives an absolute path or an abstract name.
    """
    if value.startswith("@") and len(value) > 1:
        return b"\0" + value[1:].encode()
    if value.startswith("/"):
        return value
    log.warning("NOTIFY_SOCKET=%r is not a path or an abstract name; not notifying", value)
    return None


def watchdog_interval_s(environ: Mapping[str, str], pid: int | None = None) -> float | None:
    """systemd's `WatchdogSec=` as seconds, from `WATCHDOG_USEC`; None when there is none for us."""
    usec = environ.get("WATCHDOG_USEC", "").strip()
    owner = environ.get("WATCHDOG_PID", "").strip()
    if not usec:
        return None
    if owner and owner != str(os.getpid() if pid is None else pid):
        return None  # meant for another process (the variables leaked into a child)
    try:
        value = int(usec)
    except ValueError:
        log.warning("WATCHDOG_USEC=%r is not a number of microseconds; no watchdog", usec)
        return None
    return value / 1_000_000 if value > 0 else None


def one_line(text: str) -> str:
    """A value for `STATUS=`: one line (the protocol is line-based), bounded."""
    flat = " ".join(text.split())
    return flat if len(flat) <= MAX_STATUS_CHARS else flat[: MAX_STATUS_CHARS - 1] + "…"


class Notifier:
    """Sends notify messages to one socket; never raises, never blocks (a datagram that cannot
    be sent at once is dropped: systemd wants the next one, not an old one)."""

    def __init__(self, address: str | bytes) -> None:
        self.address = address
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        self._warned = False

    @classmethod
    def from_environ(cls, environ: MutableMapping[str, str]) -> Notifier | None:
        """The notifier `NOTIFY_SOCKET` asks for, or None outside systemd."""
        value = environ.get("NOTIFY_SOCKET", "")
        address = socket_address(value) if value else None
        return cls(address) if address is not None else None

    def send(self, *lines: str) -> bool:
        """Send `KEY=value` lines as one datagram; True when it was sent."""
        message = "\n".join(lines).encode()
        try:
            self._sock.sendto(message, socket.MSG_DONTWAIT, self.address)
        except OSError as exc:
            if exc.errno in (errno.EAGAIN, errno.EWOULDBLOCK):
                return False
            if not self._warned:  # once: a missing socket would otherwise warn every tick
                self._warned = True
                log.warning("cannot notify systemd at %r: %s", self.address, exc.strerror)
            return False
        return True

    def close(self) -> None:
        self._sock.close()


def forget_notify_environment(environ: MutableMapping[str, str]) -> None:
    """Remove systemd's notify variables (after reading them), as `sd_notify`'s
    `unset_environment` does, so no child process inherits them."""
    for name in NOTIFY_VARIABLES:
        environ.pop(name, None)
