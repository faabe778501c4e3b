"""JSON payloads for events and decisions: stable key order, validation and upcasting on read.

The payload column holds JSON text so that `json_extract` works in plain SQL. Keys are sorted so
that the same event always encodes to the same bytes (digests, bundle round trips, replay diffs).
A field that is null or empty where its default is null or empty is left out of the text (a
third of a request's fields; `json_extract` gives NULL either way) and filled in on reading.

Reading validates the payload against its class (pydantic) unless the caller trusts the source
(`validate=False`, for replaying our own log quickly). A payload written under an older `v` is
passed through the registered upcasters, one version step at a time, before it is decoded.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from collections.abc import Callable
from typing import Any

from pydantic import TypeAdapter, ValidationError

from llamaswap_es.events.types import Decision, Envelope, Event, event_class

_loads: Callable[[str | bytes], Any]

try:  # orjson is measurably faster on the append and replay paths; the stdlib is the fallback.
    import orjson

    def _dumps(obj: Any) -> str:
        return orjson.dumps(obj, option=orjson.OPT_SORT_KEYS).decode()

    _loads = orjson.loads
except ImportError:  # pragma: no cover - exercised only where orjson is missing

    def _dumps(obj: Any) -> str:
        return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)

    _loads = json.loads

Upcaster = Callable[[dict[str, Any]], dict[str, Any]]
_UPCASTERS: dict[tuple[str, int], Upcaster] = {}


class PayloadError(ValueError):
    """A stored payload does not match its type (names the type, version and the problem)."""


def register_upcaster(type_name: str, from_version: int) -> Callable[[Upcaster], Upcaster]:
    """Register a function that turns a `from_version` payload into a `from_version + 1` one."""

    def wrap(fn: Upcaster) -> Upcaster:
        _UPCASTERS[(type_name, from_version)] = fn
        return fn

    return wrap


def to_payload(body: Event | Decision) -> dict[str, Any]:
    """The body's fields as JSON-ready data (tuples become lists)."""
    return {f.name: _plain(getattr(body, f.name)) for f in dataclasses.fields(body)}


def _plain(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def envelope_to_json(envelope: Envelope) -> dict[str, Any]:
    """One log row as the API and the tools show it: `{seq, ts_ms, type, key, boot, cause,
    payload, text}` with the payload as plain data and `text` its type's own sentence
    (`describe`), which the UI shows as it is."""
    return {
        "seq": envelope.seq,
        "ts_ms": envelope.ts_ms,
        "type": envelope.type,
        "key": envelope.key,
        "boot": envelope.boot,
        "cause": envelope.cause,
        "payload": to_payload(envelope.body),
        "text": envelope.body.describe(),
    }


def encode_payload(body: Event | Decision, *, without_key: bool = False) -> str:
    """The stored JSON text of `body`: its fields, less those that are null or empty where that
    is the field's default (see `_omitted_default`), sorted keys.

    `without_key`: also leave out the `KEY_FIELD` when its value is a string, because the row's
    `key` column holds it already (a request id is 26 bytes, on every row a request writes);
    `rows.decode_row` fills it back in from `key`.

    Both JSON encoders write tuples as arrays, so the fields go in as they are (no copy through
    `_plain`)."""
    cls = type(body)
    fields = _FIELDS.get(cls)
    if fields is None:
        fields = _FIELDS[cls] = tuple(
            (f.name, _omitted_default(f)) for f in dataclasses.fields(body)
        )
    key_field = body.KEY_FIELD if without_key else None
    out = {}
    for name, default in fields:
        value = getattr(body, name)
        if default is not _KEPT and value == default and type(value) is type(default):
            continue
        if name == key_field and type(value) is str:
            continue
        out[name] = value
    return _dumps(out)


_KEPT: Any = object()
"""Marks a field that is always written out."""


def _omitted_default(f: dataclasses.Field[Any]) -> Any:
    """The value of `f` that is left out of the stored text, or `_KEPT`: its default when that
    is null or an empty collection. Reading fills it in again (the dataclass default), so every
    payload decodes to the same object; in SQL, `json_extract` of it or of a path into it gives
    NULL (an empty `{}` was shown as such before); a `false`, `0` or `""` default is written
    out (`json_extract` shows it).

    A payload written before this (every field written out) reads the same."""
    if f.default is None or f.default == ():
        return f.default
    factory = f.default_factory
    if factory in (dict, list, tuple):
        return factory()
    return _KEPT


_FIELDS: dict[type, tuple[tuple[str, Any], ...]] = {}


def dumps(obj: Any) -> str:
    """Stable JSON text for any JSON-ready value (sorted keys, compact)."""
    return _dumps(obj)


def loads(text: str | bytes) -> Any:
    return _loads(text)


def _adapter(cls: type) -> TypeAdapter[Any]:
    """One pydantic adapter per class, built on first use (a dict, not `functools.cache`: mypy
    cannot see that a dataclass's class object is hashable)."""
    adapter = _ADAPTERS.get(cls)
    if adapter is None:
        adapter = _ADAPTERS[cls] = TypeAdapter(cls)
    return adapter


_ADAPTERS: dict[type, TypeAdapter[Any]] = {}


def upcast(type_name: str, version: int, payload: dict[str, Any]) -> dict[str, Any]:
    cls = event_class(type_name)
    if version == cls.VERSION:
        return payload
    while version < cls.VERSION:
        step = _UPCASTERS.get((type_name, version))
        if step is None:
            raise PayloadError(
                f"{type_name} payload is version {version} but no upcaster to {version + 1} exists"
            )
        payload = step(payload)
        version += 1
    if version > cls.VERSION:
        raise PayloadError(
            f"{type_name} payload is version {version}, newer than this code "
            f"(version {cls.VERSION}): upgrade llamaswap-es to read this log"
        )
    return payload


def from_payload(
    type_name: str, version: int, payload: dict[str, Any], *, validate: bool = True
) -> Event | Decision:
    if not validate:
        return _trusted(type_name, version, payload)
    cls = event_class(type_name)
    payload = upcast(type_name, version, payload)
    try:
        body: Event | Decision = _adapter(cls).validate_python(payload, strict=False)
        return body
    except ValidationError as exc:
        raise PayloadError(f"{type_name} v{version} payload is invalid: {exc}") from exc


def decode_payload(
    type_name: str, version: int, text: str | bytes, *, validate: bool = True
) -> Event | Decision:
    return from_payload(type_name, version, _loads(text), validate=validate)


# --------------------------------------------------------------------------------------------
# The trusted path: replaying our own log, where every payload was written by `encode_payload`.
# It skips pydantic and does the least per row: one dict lookup for the class, tuple conversion
# only for the fields declared as tuples, then the dataclass constructor.


def _tuple_fields(cls: type) -> tuple[str, ...]:
    """The class's fields declared as tuples (cached per class, like `_adapter`)."""
    names = _TUPLE_FIELDS.get(cls)
    if names is None:
        hints = typing.get_type_hints(cls)
        found = []
        for f in dataclasses.fields(cls):
            hint = hints.get(f.name)
            options = typing.get_args(hint) if _is_union(hint) else (hint,)
            if any(o is tuple or typing.get_origin(o) is tuple for o in options):
                found.append(f.name)
        names = _TUPLE_FIELDS[cls] = tuple(found)
    return names


_TUPLE_FIELDS: dict[type, tuple[str, ...]] = {}


def _is_union(hint: Any) -> bool:
    return typing.get_origin(hint) in (typing.Union, types.UnionType)


_REGISTRY = Event.REGISTRY


def _trusted(type_name: str, version: int, payload: dict[str, Any]) -> Event | Decision:
    cls = _REGISTRY.get(type_name) or event_class(type_name)
    if version != cls.VERSION:
        payload = upcast(type_name, version, payload)
    for name in _tuple_fields(cls):
        value = payload.get(name)
        if type(value) is list:
            payload[name] = tuple(value)
    return cls(**payload)  # type: ignore[return-value]


def decode_trusted(type_name: str, version: int, text: str | bytes) -> Event | Decision:
    """Decode a payload from our own log without validation (the replay and scan fast path)."""
    return _trusted(type_name, version, _loads(text))
