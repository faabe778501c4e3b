"""The few ways Go's lenient `net/url.Parse` rejects a URL (spec §4.9 proxy, §11 peer proxy).

Go accepts almost anything (`localhost:8080` parses with scheme `localhost`), so a URL check
stricter than Go's would reject files llama-swap loads; this reproduces only Go's refusals.
"""

from __future__ import annotations

import re

_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*$")


def go_url_parse_error(url: str) -> str | None:
    """Go's error text for `url.Parse(url)`, or None when Go would accept it."""
    quoted = '"' + url.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in url):
        return f"parse {quoted}: net/url: invalid control character in URL"
    rest = url.split("#", 1)[0]
    colon = rest.find(":")
    if colon == 0:
        return f"parse {quoted}: missing protocol scheme"
    if colon > 0:
        scheme = rest[:colon]
        if not _SCHEME.match(scheme):
            if "/" not in scheme and "?" not in scheme:
                return f"parse {quoted}: first path segment in URL cannot contain colon"
            return None
        after = rest[colon + 1 :]
        if after.startswith("//"):
            authority = after[2:].split("/", 1)[0].split("?", 1)[0]
            host = authority.rsplit("@", 1)[-1]
            if host.startswith("[") and "]" not in host:
                return f"parse {quoted}: missing ']' in host"
            port = host.rsplit("]", 1)[-1].rpartition(":")[2] if ":" in host else ""
            if ":" in host.rsplit("]", 1)[-1] and port and not port.isdigit():
                return f'parse {quoted}: invalid port ":{port}" after host'
    return None
