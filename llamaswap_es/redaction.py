"""Credentials out of log text: query keys, Authorization values, URL passwords, configured keys.

llama-swap accepts no key in the query string, but clients send one anyway (`?api_key=…`, as
some SDKs and copy-pasted URLs do); the request is refused, and the URL it came with must not
be written to the access log, the proxy log or what `/logs` serves. One function, `redact_text`,
is applied where a URL is logged (the access line, the forwarder's error messages) and again to
every proxy log line (`runtime/logs.ProxyLogHandler`), so a new log call cannot leak one by
forgetting. It is text-level and conservative: redacting a harmless value costs nothing, keeping
a key costs the key.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from urllib.parse import unquote

REDACTED = "[REDACTED]"

CREDENTIAL_PARAMS = frozenset(
    {
        "api_key", "apikey", "api-key", "x-api-key", "key", "token", "access_token",
        "refresh_token", "id_token", "auth", "authorization", "password", "passwd", "pwd",
        "secret", "client_secret", "signature", "sig",
    }
)  # fmt: skip
"""Query parameter names whose value is a credential (compared case-insensitively)."""
CREDENTIAL_SUFFIXES = ("_key", "-key", "_token", "-token", "_secret", "-secret", "_password")
"""…and names ending so (`hf_token`, `openai_api_key`)."""

# A query parameter: it follows `?`, `&` or `;`; its value ends where a URL inside text ends.
_QUERY_PARAM = re.compile(r"(?P<lead>[?&;])(?P<name>[^=&;#?\s\"'<>]+)=(?P<value>[^&;#\s\"'<>]*)")
# A bearer token wherever it stands (`Bearer abc`): the word is rare in anything else.
_BEARER = re.compile(r"(?i)\b(?P<scheme>bearer)(?P<gap>\s+)(?P<value>[\w.~+/=-]{4,})")
# `Authorization: Basic abc`, `x-api-key: abc`, `"api_key": "abc"`, `api_key=abc` in plain text.
_AUTH_FIELD = re.compile(
    r"(?i)(?P<name>\b(?:x-api-key|api[_-]?key|proxy-authorization|authorization|access_token))"
    r"(?P<sep>[\"']?\s*[:=]\s*[\"']?)(?P<scheme>(?:bearer|basic|digest)\s+)?"
    r"(?P<value>[^\s\"',;&]+)"
)
_AUTH_FIELD_ANCHORS = ("key", "authorization", "access_token")
# `https://user:password@host`: the password in a URL's user info.
_USERINFO = re.compile(r"(?i)\b(?P<scheme>[a-z][a-z0-9+.-]*://)[^/\s@:\"']+:[^/\s@\"']+@")


def is_credential_param(name: str) -> bool:
    """True for a query parameter name that carries a credential (`api_key`, `API%5FKEY`, …)."""
    lowered = unquote(name).lower()
    return lowered in CREDENTIAL_PARAMS or lowered.endswith(CREDENTIAL_SUFFIXES)


def _query_param(match: re.Match[str]) -> str:
    if not is_credential_param(match["name"]) or not match["value"]:
        return match[0]
    return f"{match['lead']}{match['name']}={REDACTED}"


def redact_text(text: str, secrets: Iterable[str] = ()) -> str:
    """`text` with every credential-looking value replaced by `[REDACTED]`.

    `secrets` are known credentials (the configured API keys): any occurrence is replaced,
    whatever surrounds it, longest first so one key that contains another is fully hidden.
    """
    for secret in sorted((s for s in secrets if s), key=len, reverse=True):
        if secret in text:
            text = text.replace(secret, REDACTED)
    # Each pattern runs only where its anchor occurs: this is on every log line's path.
    if "=" in text:
        text = _QUERY_PARAM.sub(_query_param, text)
    lowered = text.lower()
    if "bearer" in lowered:
        text = _BEARER.sub(lambda m: f"{m['scheme']}{m['gap']}{REDACTED}", text)
    if any(anchor in lowered for anchor in _AUTH_FIELD_ANCHORS):
        text = _AUTH_FIELD.sub(
            lambda m: f"{m['name']}{m['sep']}{m['scheme'] or ''}{REDACTED}", text
        )
    if "@" in text:
        text = _USERINFO.sub(lambda m: f"{m['scheme']}{REDACTED}@", text)
    return text
