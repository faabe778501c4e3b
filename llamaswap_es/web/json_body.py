"""Reading and rewriting a client's JSON body without ever failing on what the client sent.

Three things in a JSON body used to end in a 500 (issue 13): nesting deep enough to exhaust
Python's recursion (about 1,000 levels: `RecursionError` from the parser or the encoder), a
`"\\ud800"` escape (valid JSON, but a lone surrogate that UTF-8 cannot encode when the body is
written back), and bytes that are not UTF-8. Every place that parses or re-encodes a request
body (model selection, filters, renames, the profile route) goes through `parse` and `dump`.

A model request's body is parsed once (`JsonBody`, made by model selection): the renames (a
profile pin, a selector's choice, a peer's own name) and the filters edit that one document, and it
is serialised once, when it is forwarded; a body nothing rewrote goes out as the client's bytes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from llamaswap_es.web.errors import RequestError

TOO_DEEP = "JSON in the request body is nested too deeply (about 1,000 levels or more)"


def parse(body: bytes, *, what: str = "request body") -> Any:
    """The JSON document in `body`; `RequestError` 400 for invalid JSON (with the parser's
    position) or nesting too deep to read."""
    try:
        return json.loads(body)
    except RecursionError:
        raise RequestError(400, TOO_DEEP.replace("request body", what)) from None
    except (ValueError, UnicodeDecodeError) as err:
        raise RequestError(400, f"invalid JSON in {what}: {err}") from None


def dump(doc: Any) -> bytes:
    """`doc` as compact JSON bytes, non-ASCII text as UTF-8 (as llama-swap writes it).

    A lone surrogate the client sent as an escape is written back as the same escape
    (`backslashreplace` yields exactly `\\udXXX`, valid JSON inside a string), so the upstream
    receives what the client meant.
    """
    try:
        text = json.dumps(doc, ensure_ascii=False, separators=(",", ":"))
    except RecursionError:
        raise RequestError(400, TOO_DEEP) from None
    return text.encode("utf-8", "backslashreplace")


@dataclass
class JsonBody:
    """A request's JSON body, parsed once, edited in place, serialised once (`to_bytes`)."""

    raw: bytes
    """The bytes the client sent."""
    doc: Any
    """The parsed document; None for a blank body (which names nothing and is not an object)."""
    edited: bool = False

    @classmethod
    def read(cls, raw: bytes) -> JsonBody:
        """Parse `raw` (`RequestError` 400 as `parse` says); a blank body is kept as None."""
        return cls(raw, parse(raw) if raw.strip() else None)

    def set_model(self, name: str) -> None:
        """Set the top-level `model`; a body that is not an object is left as it is."""
        if isinstance(self.doc, dict):
            self.doc["model"] = name
            self.edited = True

    def to_bytes(self) -> bytes:
        """What the upstream gets: the client's own bytes unless something was rewritten."""
        return dump(self.doc) if self.edited else self.raw
