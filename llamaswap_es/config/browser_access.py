"""Checking `llamaswap-es.allowedHosts` and `allowedOrigins`, the browser's way into the admin API.

The server answers its admin surface (docs/api.md, "Who may call what") only under a Host it
knows (against DNS rebinding) and, cross-origin, only to origins the config lists. These two
lists are what a user edits to let a reverse proxy's name, a LAN host name or a separate web
dashboard in; an entry the server could never match must fail loudly at load time, not lock the
user out silently later. Each entry is normalised to the form the request's header is compared
with (lower case, no trailing dot or slash, no default port).
"""

from __future__ import annotations

import ipaddress
import re

ANY = "*"
DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}
_LABEL = re.compile(r"[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?")
_SCHEME = re.compile(r"[a-z][a-z0-9+.-]*")


class AccessEntryError(ValueError):
    """An entry of allowedHosts/allowedOrigins that cannot work; the text says what to write."""


def _ascii_hint(text: str) -> str:
    try:
        return f' (write "{text.encode("idna").decode()}")'
    except UnicodeError:
        return ""


def normalize_host_name(text: str) -> str | None:
    """`text` as a comparable host name or IP (lower case, no brackets or trailing dot), or
    None when it is not one (spaces, a port, a scheme, characters a host cannot have)."""
    host = text.strip().lower()
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        pass
    host = host.removesuffix(".")
    if not host or len(host) > 253:
        return None
    if not all(_LABEL.fullmatch(label) for label in host.split(".")):
        return None
    return host


def normalize_allowed_host(entry: str) -> str:
    """One `allowedHosts` entry: `*`, a host name, `*.example.com` (its subdomains) or an IP."""
    text = entry.strip()
    if text == ANY:
        return ANY
    if not text:
        raise AccessEntryError("an empty entry; write a host name, *.domain or *")
    if "://" in text or "/" in text:
        raise AccessEntryError(
            f'"{entry}" is not a host name: write the name only, without scheme or path '
            f'(e.g. "{_host_part(text)}")'
        )
    if not text.isascii():
        raise AccessEntryError(f'"{entry}" is not ASCII{_ascii_hint(text)}')
    wildcard = text.startswith("*.")
    host = normalize_host_name(text[2:] if wildcard else text)
    if host is None:
        if ":" in text and not text.startswith("["):
            raise AccessEntryError(
                f'"{entry}" carries a port: write the host name only (any port is allowed), '
                f'e.g. "{text.rpartition(":")[0]}"'
            )
        raise AccessEntryError(
            f'"{entry}" is not a host name (letters, digits, "-", "_" and dots), '
            "an IP address, *.domain or *"
        )
    return f"*.{host}" if wildcard else host


def normalize_allowed_origin(entry: str) -> str:
    """One `allowedOrigins` entry, as browsers write the `Origin` header: `scheme://host[:port]`,
    lower case, the scheme's default port dropped; `*` allows any origin."""
    text = entry.strip()
    if text == ANY:
        return ANY
    scheme, sep, rest = text.partition("://")
    if not sep:
        raise AccessEntryError(
            f'"{entry}" is not an origin: write scheme://host[:port], e.g. "http://{text}"'
            if text and text != "null"
            else f'"{entry}" is not an origin: write scheme://host[:port] (the "null" origin '
            "of files and sandboxed pages can never be allowed)"
        )
    scheme = scheme.lower()
    authority = rest.removesuffix("/")
    if not _SCHEME.fullmatch(scheme):
        raise AccessEntryError(f'"{entry}": "{scheme}" is not a URL scheme')
    if any(mark in authority for mark in "/?#@"):
        raise AccessEntryError(
            f'"{entry}" is not an origin: an origin has no path, query or user name '
            f'(e.g. "{scheme}://{_host_part(authority)}")'
        )
    host, port = split_host_port(authority)
    normal = normalize_host_name(host) if host.isascii() else None
    if normal is None or port == -1:
        hint = _ascii_hint(host) if not host.isascii() else ""
        raise AccessEntryError(f'"{entry}": "{authority}" is not host[:port]{hint}')
    shown = f"[{normal}]" if ":" in normal else normal
    if port is None or DEFAULT_PORTS.get(scheme) == port:
        return f"{scheme}://{shown}"
    return f"{scheme}://{shown}:{port}"


def _host_part(text: str) -> str:
    rest = text.partition("://")[2] or text
    return re.split(r"[/?#]", rest.rpartition("@")[2], maxsplit=1)[0]


def split_host_port(authority: str) -> tuple[str, int | None]:
    """(host, port) of `host[:port]` or `[v6][:port]` (a Host header, an origin's authority);
    port None when absent, -1 when it is not a port number."""
    if authority.startswith("["):
        host, _, after = authority[1:].partition("]")
        if not after:
            return host, None
        if not after.startswith(":"):
            return host, -1
        port_text = after[1:]
    else:
        host, sep, port_text = authority.rpartition(":")
        if not sep:
            return authority, None
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        return host, -1
    return host, int(port_text)
