"""Request-body filters: `useModelName`, `stripParams`, `setParams`, `setParamsByID`.

llama-swap rewrites a JSON request body before forwarding it (config.md §9, api.md §6.6), in a
fixed order: rename the model, delete the stripped keys, set `setParams`, then the entries of
`setParamsByID[<requested name>]`, which override. Keys are paths: `a.b` addresses `{"a":{"b":…}}`
(`\\.` is a literal dot, a number indexes an existing array, `-1` appends). `model` is protected
from strip and set. Inputs are plain values so the config classes stay out of this module.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from llamaswap_es.web import json_body
from llamaswap_es.web.errors import RequestError

PROTECTED_KEYS = frozenset({"model"})


def sanitize_strip_params(raw: str | Iterable[str]) -> tuple[str, ...]:
    """`"model, top_k, top_k, temperature, , "` → `("temperature", "top_k")`.

    Split on commas, trimmed, empties, duplicates and `model` dropped, sorted (config.md §9.1).
    """
    items = raw.split(",") if isinstance(raw, str) else raw
    return tuple(sorted({item.strip() for item in items} - {""} - PROTECTED_KEYS))


def sanitize_set_params(params: Mapping[str, Any] | None) -> tuple[tuple[str, Any], ...]:
    """The (key, value) pairs to set, `model` dropped, in ascending key order."""
    if not params:
        return ()
    return tuple(sorted((k, v) for k, v in params.items() if k not in PROTECTED_KEYS))


@dataclass(frozen=True)
class RequestFilters:
    """One model's (or peer's) filters, as plain values built by the caller from its config.

    `use_model_name` is empty for peers (they never rename).
    """

    use_model_name: str = ""
    strip_params: tuple[str, ...] = ()
    set_params: Mapping[str, Any] = field(default_factory=dict)
    set_params_by_id: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    @classmethod
    def from_plain(
        cls,
        *,
        use_model_name: str = "",
        strip_params: str | Iterable[str] = "",
        set_params: Mapping[str, Any] | None = None,
        set_params_by_id: Mapping[str, Mapping[str, Any]] | None = None,
    ) -> RequestFilters:
        """Build from raw config values, sanitising as llama-swap does at load time."""
        return cls(
            use_model_name=use_model_name,
            strip_params=sanitize_strip_params(strip_params),
            set_params=dict(sanitize_set_params(set_params)),
            set_params_by_id={
                name: dict(sanitize_set_params(params))
                for name, params in (set_params_by_id or {}).items()
            },
        )

    def applies_to(self, requested_name: str) -> bool:
        """Whether any rewrite would happen for a request naming `requested_name`."""
        return bool(
            self.use_model_name
            or self.strip_params
            or self.set_params
            or self.set_params_by_id.get(requested_name)
        )


def apply_filters(body: bytes, requested_name: str, filters: RequestFilters) -> bytes:
    """The JSON body rewritten by `filters` for a request naming `requested_name`.

    Returns `body` itself (byte for byte) when nothing applies. Raises `RequestError` 400 when
    the body is not a JSON object and 500 when a key path cannot be applied (as llama-swap).
    """
    if not filters.applies_to(requested_name):
        return body
    parsed = json_body.JsonBody.read(body)
    filter_json(parsed, requested_name, filters)
    return parsed.to_bytes()


def filter_json(body: json_body.JsonBody, requested_name: str, filters: RequestFilters) -> None:
    """`apply_filters` on a parsed body, edited in place (serialised later, once)."""
    if not filters.applies_to(requested_name):
        return
    doc = body.doc if body.doc is not None else {}  # a blank body filters as `{}`
    if not isinstance(doc, dict):
        raise RequestError(400, "request body must be a JSON object to apply model filters")
    body.doc = doc
    body.edited = True
    if filters.use_model_name:
        doc["model"] = filters.use_model_name
    for key in filters.strip_params:
        if key not in PROTECTED_KEYS:
            delete_path(doc, key)
    by_id = filters.set_params_by_id.get(requested_name, {})
    for params in (filters.set_params, by_id):
        for key, value in sorted(params.items()):
            if key in PROTECTED_KEYS:
                continue
            try:
                set_path(doc, key, value)
            except PathError as err:
                raise RequestError(500, f"filters: cannot set {key!r}: {err}") from None


class PathError(ValueError):
    """A dotted key path that cannot be applied to this document (e.g. through a string)."""


def split_path(path: str) -> list[str]:
    """`"a.b\\.c"` → `["a", "b.c"]`: dots separate, a backslash escapes the next character."""
    parts: list[str] = []
    current: list[str] = []
    escaped = False
    for char in path:
        if escaped:
            current.append(char)
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == ".":
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    parts.append("".join(current))
    return parts


def set_path(doc: dict[str, Any], path: str, value: Any) -> None:
    """Set `value` at a dotted path, creating objects on the way (new keys go last)."""
    parts = split_path(path)
    node: Any = doc
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        if isinstance(node, dict):
            if last:
                node[part] = value
                return
            if not isinstance(node.get(part), dict | list):
                node[part] = {}
            node = node[part]
        elif isinstance(node, list):
            index = _index(part, node)
            if last:
                if index == len(node):
                    node.append(value)
                else:
                    node[index] = value
                return
            if index == len(node):
                node.append({})
            node = node[index]
        else:
            raise PathError(f"{'.'.join(parts[:i]) or 'the body'} is not an object or array")


def delete_path(doc: dict[str, Any], path: str) -> None:
    """Delete the value at a dotted path; a path that does not exist is left alone."""
    parts = split_path(path)
    node: Any = doc
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        if isinstance(node, dict):
            if part not in node:
                return
            if last:
                del node[part]
                return
            node = node[part]
        elif isinstance(node, list):
            if not part.isdigit() or int(part) >= len(node):
                return
            if last:
                del node[int(part)]
                return
            node = node[int(part)]
        else:
            return


def _index(part: str, array: list[Any]) -> int:
    if part == "-1":
        return len(array)
    if not part.isdigit():
        raise PathError(f"{part!r} is not an index into an array")
    index = int(part)
    if index > len(array):
        raise PathError(f"index {index} is past the end of an array of {len(array)}")
    return index
