"""Refuse to start a model whose port is already taken by another process.

If something already listens on a model's loopback port, the new upstream cannot bind it, yet its
health check would pass against the other process and requests would be served by the wrong
server until the new one gave up. llama-swap has that hazard; we check before spawning and fail
the start with a message that names the port and, where the OS lets us see it, the process.
"""

from __future__ import annotations

import socket
from urllib.parse import urlsplit

import psutil

LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1", "0.0.0.0", ""})


def listening(port: int) -> bool:
    """True when something accepts connections on loopback `port` (IPv4 or IPv6)."""
    for family, address in ((socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")):
        try:
            with socket.socket(family, socket.SOCK_STREAM) as sock:
                sock.settimeout(0.5)
                if sock.connect_ex((address, port)) == 0:
                    return True
        except OSError:
            continue
    return False


def _holder(port: int) -> str:
    try:
        for conn in psutil.net_connections(kind="tcp"):
            if conn.status == psutil.CONN_LISTEN and conn.laddr and conn.laddr.port == port:
                if conn.pid is None:
                    return ""
                proc = psutil.Process(conn.pid)
                return f" by pid {conn.pid} ({' '.join(proc.cmdline())[:120]})"
    except (psutil.Error, OSError):
        pass
    return ""


def port_taken(proxy: str, port: int | None) -> str | None:
    """None when the proxy's loopback `port` is free; else an error message for the start."""
    if port is None or (urlsplit(proxy).hostname or "") not in LOOPBACK_HOSTS:
        return None  # a remote upstream (or a container's published port) is not ours to check
    if not listening(port):
        return None
    return (
        f"port {port} is already in use{_holder(port)}: another process would answer this "
        "model's health check; stop it or give the model another port"
    )
