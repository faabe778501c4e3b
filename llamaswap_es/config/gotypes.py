"""Field types that decode the way yaml.v3 decodes into Go fields (spec/config.md §7, §4.8).

A file that loads in llama-swap must load here with the same values, and a file that fails there
must fail with the same words: ints accept floats (truncated) but not `"30"`, bools accept YAML 1.1
`yes`/`off`, string fields take any scalar as its canonical text, durations are Go duration
strings. Each mismatch raises yaml.v3's `cannot unmarshal` line; the loader gathers them into
llama-swap's `yaml: unmarshal errors:` message.
"""

from __future__ import annotations

import math
import re
from typing import Annotated, Any

from pydantic import BeforeValidator, PlainSerializer, WithJsonSchema
from pydantic_core import PydanticCustomError

from llamaswap_es.config.yaml_dialect import GoTimestamp, go_format_value, yaml_tag_of

UNMARSHAL = "go_unmarshal"
"""pydantic error type of a yaml.v3 type mismatch (collected, like yaml.v3's TypeError)."""
FATAL = "go_fatal"
"""pydantic error type of a custom decoder's failure (aborts the decode, message verbatim)."""


def unmarshal_text(value: Any, go_type: str) -> str:
    """yaml.v3's words for a value that does not fit `go_type`."""
    tag = yaml_tag_of(value)
    if isinstance(value, dict | list):
        return f"cannot unmarshal {tag} into {go_type}"
    return f"cannot unmarshal {tag} `{go_format_value(value)}` into {go_type}"


def unmarshal_error(value: Any, go_type: str) -> PydanticCustomError:
    return PydanticCustomError(UNMARSHAL, "{text}", {"text": unmarshal_text(value, go_type)})


def fatal_error(message: str) -> PydanticCustomError:
    return PydanticCustomError(FATAL, "{text}", {"text": message})


def _to_str(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, dict | list):
        raise unmarshal_error(value, "string")
    return go_format_value(value)


def _to_int(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise unmarshal_error(value, "int")
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value) or abs(value) >= 2**63:
            raise unmarshal_error(value, "int")
        return int(value)  # truncation toward zero, as yaml.v3 does
    return value


_TRUE = {"y", "Y", "yes", "Yes", "YES", "on", "On", "ON"}
_FALSE = {"n", "N", "no", "No", "NO", "off", "Off", "OFF"}


def _to_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        if value in _TRUE:
            return True
        if value in _FALSE:
            return False
    raise unmarshal_error(value, "bool")


def _to_str_list(value: Any) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise unmarshal_error(value, "[]string")
    return [_to_str(item) for item in value]


def _to_any_map(value: Any) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise unmarshal_error(value, "map[string]interface {}")
    return {k if isinstance(k, str) else go_format_value(k): v for k, v in value.items()}


def _to_int_map(value: Any) -> dict[str, int]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise unmarshal_error(value, "map[string]int")
    return {k if isinstance(k, str) else go_format_value(k): _to_int(v) for k, v in value.items()}


def _to_str_map(value: Any) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise unmarshal_error(value, "map[string]string")
    return {
        k if isinstance(k, str) else go_format_value(k): ("" if v is None else _to_str(v))
        for k, v in value.items()
    }


_DURATION_PART = re.compile(r"(\d+\.?\d*|\.\d+)(ns|us|µs|μs|ms|s|m|h)")
_UNIT_NS = {
    "ns": 1,
    "us": 1_000,
    "µs": 1_000,
    "μs": 1_000,
    "ms": 1_000_000,
    "s": 1_000_000_000,
    "m": 60_000_000_000,
    "h": 3_600_000_000_000,
}


def parse_go_duration_ns(text: str) -> int | None:
    """Go's `time.ParseDuration`, in nanoseconds; None when the text is not a duration."""
    body = text
    sign = 1
    if body[:1] in ("+", "-"):
        sign = -1 if body[0] == "-" else 1
        body = body[1:]
    if body == "0":
        return 0
    if not body:
        return None
    total = 0.0
    pos = 0
    while pos < len(body):
        match = _DURATION_PART.match(body, pos)
        if not match:
            return None
        total += float(match.group(1)) * _UNIT_NS[match.group(2)]
        pos = match.end()
    return sign * round(total)


def format_go_duration(ns: int) -> str:
    """Go's `Duration.String()` (`1m30s`, `4s`, `-1s`, `500ms`)."""
    if ns == 0:
        return "0s"
    sign = "-" if ns < 0 else ""
    ns = abs(ns)
    if ns < 1_000_000_000:
        for unit, size in (("ms", 1_000_000), ("µs", 1_000), ("ns", 1)):
            if ns >= size:
                return sign + _trim(ns / size) + unit
    hours, rest = divmod(ns, 3_600_000_000_000)
    minutes, rest = divmod(rest, 60_000_000_000)
    seconds = rest / 1_000_000_000
    text = ""
    if hours:
        text += f"{hours}h"
    if hours or minutes:
        text += f"{minutes}m"
    return sign + text + _trim(seconds) + "s"


def _trim(value: float) -> str:
    return f"{value:.9f}".rstrip("0").rstrip(".")


def _to_duration_ns(value: Any) -> int:
    if isinstance(value, str):
        parsed = parse_go_duration_ns(value)
        if parsed is not None:
            return parsed
    raise unmarshal_error(value, "time.Duration")


# What each type accepts, as JSON Schema (config-schema.json), beside the decoder that accepts it.
# `null` keeps a scalar's default (or empties a list or map), and a value that is one whole macro
# reference (`${name}`, `${env.NAME}`) is substituted, typed, before decoding.
MACRO_SCHEMA: dict[str, Any] = {"type": "string", "pattern": r"^\$\{[^}]+\}$"}
SCALAR_SCHEMA: dict[str, Any] = {"type": ["string", "number", "boolean", "null"]}
INT_SCHEMA: dict[str, Any] = {
    "anyOf": [{"type": ["number", "null"]}, MACRO_SCHEMA],
    "description": "a whole number (a fraction is truncated, as yaml.v3 does)",
}
BOOL_SCHEMA: dict[str, Any] = {
    "anyOf": [{"type": ["boolean", "null"]}, {"enum": sorted(_TRUE | _FALSE)}, MACRO_SCHEMA]
}
DURATION_SCHEMA: dict[str, Any] = {
    "anyOf": [
        {"type": "string", "pattern": r"^[-+]?(0|((\d+\.?\d*|\.\d+)(ns|us|µs|μs|ms|s|m|h))+)$"},
        {"type": "null"},
        MACRO_SCHEMA,
    ],
    "description": "a Go duration: 5s, 1m30s, 250ms",
}

GoStr = Annotated[str, BeforeValidator(_to_str), WithJsonSchema(SCALAR_SCHEMA)]
GoInt = Annotated[int, BeforeValidator(_to_int), WithJsonSchema(INT_SCHEMA)]
GoBool = Annotated[bool, BeforeValidator(_to_bool), WithJsonSchema(BOOL_SCHEMA)]
GoStrList = Annotated[
    list[str],
    BeforeValidator(_to_str_list),
    WithJsonSchema({"type": ["array", "null"], "items": SCALAR_SCHEMA}),
]
GoAnyMap = Annotated[
    dict[str, Any], BeforeValidator(_to_any_map), WithJsonSchema({"type": ["object", "null"]})
]
GoIntMap = Annotated[
    dict[str, int],
    BeforeValidator(_to_int_map),
    WithJsonSchema({"type": ["object", "null"], "additionalProperties": INT_SCHEMA}),
]
GoStrMap = Annotated[
    dict[str, str],
    BeforeValidator(_to_str_map),
    WithJsonSchema({"type": ["object", "null"], "additionalProperties": SCALAR_SCHEMA}),
]
GoDurationNs = Annotated[
    int,
    BeforeValidator(_to_duration_ns),
    PlainSerializer(format_go_duration, return_type=str),
    WithJsonSchema(DURATION_SCHEMA),
]

__all__ = [
    "FATAL",
    "UNMARSHAL",
    "GoAnyMap",
    "GoBool",
    "GoDurationNs",
    "GoInt",
    "GoIntMap",
    "GoStr",
    "GoStrList",
    "GoStrMap",
    "GoTimestamp",
    "fatal_error",
    "format_go_duration",
    "parse_go_duration_ns",
    "unmarshal_error",
]
