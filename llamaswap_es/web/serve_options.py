"""What the server takes from its command line: the parsed options and the checks on them.

Here, below both `cli.py` (which parses the flags into a `ServeOptions`) and `web/server.py`
(which serves with one), so that the server never imports the command line above it.
"""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass

from llamaswap_es.config.models import LlamaSwapConfig
from llamaswap_es.paths import default_db_path


@dataclass(frozen=True, slots=True)
class ServeOptions:
    """What the server needs from the command line, parsed and checked."""

    config_file: str | None
    config_dir: str | None
    listen_host: str
    listen_port: int
    watch_config: bool
    tls_cert_file: str | None
    tls_key_file: str | None
    db_path: str | None
    """`--db` when given; `effective_db_path` applies the config's `db` and the default."""
    log_format: str = "text"
    """`--log-format`: llama-swap's text lines (with a timestamp) or JSON lines."""


def effective_db_path(options: ServeOptions, config: LlamaSwapConfig | None) -> str:
    """`--db` wins, then the config's `llamaswap-es.db`, then the default."""
    if options.db_path:
        return options.db_path
    if config is not None and config.llamaswap_es.db:
        return os.path.expanduser(config.llamaswap_es.db)
    return default_db_path()


def parse_listen(text: str) -> tuple[str, int]:
    """`HOST:PORT`, `[v6]:PORT` or `:PORT` (all interfaces) → (host, port)."""
    host, sep, port_text = text.rpartition(":")
    if not sep or not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ValueError(f"--listen {text!r}: expected HOST:PORT with a port from 1 to 65535")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host, int(port_text)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def listen_warning(host: str, config: LlamaSwapConfig | None) -> str | None:
    """A warning when the server listens beyond loopback and no apiKeys guard it."""
    if is_loopback(host) or (config is not None and config.api_keys):
        return None
    shown = host or "all interfaces"
    return (
        f"warning: listening on {shown} without apiKeys: anyone who can reach this port can "
        "load models and use them; set apiKeys in the config or listen on 127.0.0.1"
    )
