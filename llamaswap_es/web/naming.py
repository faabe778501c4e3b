"""Which model a request is really for: profile pins, and rewriting the model name.

llama-swap resolves a requested name in this order (spec/api.md §6.2-6.5): the active profile may
pin it to another name, a selector picks one of its targets (the scheduler does: see
web/selector_choice.py), then the name is looked up locally (id, then alias) and among peers.
Each rewrite is applied to the request itself (JSON `model`, or the `model` query parameter), so
the upstream sees the name it expects.
"""

from __future__ import annotations

import re
from urllib.parse import urlencode

from llamaswap_es.web.context import AppContext
from llamaswap_es.web.model_selection import multipart_delimiter


def pinned_name(ctx: AppContext, requested: str) -> str:
    """The active profile's replacement for `requested` ("" when the pin disables it)."""
    if ctx.active_profile is None:
        return requested
    profile = ctx.config.profiles.get(ctx.active_profile)
    if profile is None or requested not in profile.pins:
        return requested
    return profile.pins[requested] or ""


_MODEL_PART = re.compile(rb'(?im)^content-disposition:[^\r\n]*;\s*name="?model"?(;|\s*$)')


def rewrite_model_in_multipart(body: bytes, content_type: str, name: str) -> bytes:
    """Replace the value of the form field `model`; every other part stays byte for byte.

    (llama-swap rebuilds the whole form with a new boundary and re-types file parts as
    application/octet-stream; keeping the other parts untouched is simpler and loses nothing.)
    """
    delimiter = multipart_delimiter(content_type)
    if delimiter is None:
        return body
    parts = body.split(delimiter)
    for index in range(1, len(parts) - 1):
        head, separator, _content = parts[index].partition(b"\r\n\r\n")
        if separator and _MODEL_PART.search(head):
            parts[index] = head + separator + name.encode() + b"\r\n"
    return delimiter.join(parts)


def rewrite_model_in_query(query: dict[str, str], name: str) -> str:
    """The re-encoded query with `model` replaced (sorted, as Go re-encodes it)."""
    updated = dict(query)
    updated["model"] = name
    return urlencode(sorted(updated.items()))


def strip_route_prefix(path: str) -> str:
    """`/v/…` → `/…` and `/audioapi/…` → `/…`, as llama-swap does right before dispatch."""
    for prefix in ("/v/", "/audioapi/"):
        if path.startswith(prefix):
            return path[len(prefix) - 1 :]
    return path
