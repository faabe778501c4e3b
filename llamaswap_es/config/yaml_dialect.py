"""llama-swap's YAML dialect (Go's yaml.v3) on top of PyYAML.

llama-swap files must load here exactly as they load there, and PyYAML's defaults are YAML 1.1:
`yes`/`on` would become booleans, `017` would not be octal, duplicate keys would silently win.
This module gives a loader that resolves plain scalars the way yaml.v3 does (spec/config.md §16),
rejects duplicate keys with yaml.v3's wording, keeps merge keys, and a dumper for the node trees
the multi-file merge serialises back to text. It also formats values as Go's `%v` does, because
macro expansion and string fields show numbers in that form.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from decimal import Decimal
from typing import Any

import yaml
from yaml.constructor import ConstructorError, SafeConstructor
from yaml.nodes import MappingNode, Node, ScalarNode
from yaml.resolver import BaseResolver

from llamaswap_es.config.yaml_aliases import check_aliases

try:  # libyaml's parser is much faster on large files; the pure one behaves the same
    from yaml._yaml import CParser as _CParser

    _HAVE_LIBYAML = True
except ImportError:  # pragma: no cover - libyaml missing
    _HAVE_LIBYAML = False
from yaml.composer import Composer
from yaml.emitter import Emitter
from yaml.parser import Parser
from yaml.reader import Reader
from yaml.scanner import Scanner
from yaml.serializer import Serializer

NULL_TAG = "tag:yaml.org,2002:null"
BOOL_TAG = "tag:yaml.org,2002:bool"
INT_TAG = "tag:yaml.org,2002:int"
FLOAT_TAG = "tag:yaml.org,2002:float"
STR_TAG = "tag:yaml.org,2002:str"
TIMESTAMP_TAG = "tag:yaml.org,2002:timestamp"
MERGE_TAG = "tag:yaml.org,2002:merge"
MAP_TAG = "tag:yaml.org,2002:map"
SEQ_TAG = "tag:yaml.org,2002:seq"

_NULLS = {"", "~", "null", "Null", "NULL"}
_BOOLS = {"true": True, "True": True, "TRUE": True, "false": False, "False": False, "FALSE": False}
_SPECIAL_FLOATS = {
    ".inf": math.inf,
    ".Inf": math.inf,
    ".INF": math.inf,
    "+.inf": math.inf,
    "+.Inf": math.inf,
    "+.INF": math.inf,
    "-.inf": -math.inf,
    "-.Inf": -math.inf,
    "-.INF": -math.inf,
    ".nan": math.nan,
    ".NaN": math.nan,
    ".NAN": math.nan,
}
_YAML_STYLE_FLOAT = re.compile(r"^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$")
_GO_INT = re.compile(r"^[-+]?(0[xX][0-9a-fA-F]+|0[oO][0-7]+|0[bB][01]+|0[0-7]*|[1-9][0-9]*)$")
_TS_DATE = re.compile(r"^(\d{4})-(\d{1,2})-(\d{1,2})$")
_TS_FULL = re.compile(
    r"^(\d{4})-(\d{1,2})-(\d{1,2})(?:[Tt]|( ))(\d{1,2}):(\d{1,2}):(\d{1,2})(\.\d+)?"
    r"(Z|[+-]\d{2}:\d{2})?$"
)
_INT64_MIN, _UINT64_MAX = -(2**63), 2**64 - 1


class GoTimestamp(dt.datetime):
    """A plain scalar yaml.v3 read as a timestamp (invalid as a macro value, kept in metadata)."""

    def go_text(self) -> str:
        """RFC 3339 with nanosecond precision trimmed, as Go re-encodes a time.Time."""
        base = self.strftime("%Y-%m-%dT%H:%M:%S")
        if self.microsecond:
            base += ("." + f"{self.microsecond:06d}").rstrip("0")
        offset = self.utcoffset()
        if not offset:
            return base + "Z"
        minutes = int(offset.total_seconds() // 60)
        sign = "+" if minutes >= 0 else "-"
        minutes = abs(minutes)
        return f"{base}{sign}{minutes // 60:02d}:{minutes % 60:02d}"


def _parse_go_int(text: str) -> int | None:
    if not _GO_INT.match(text):
        return None
    sign = -1 if text.startswith("-") else 1
    body = text.lstrip("+-")
    low = body.lower()
    if low.startswith(("0x", "0o", "0b")):
        value = int(body, 0)
    elif len(body) > 1 and body.startswith("0"):
        value = int(body, 8)
    else:
        value = int(body)
    value *= sign
    if value < _INT64_MIN or value > _UINT64_MAX:
        return None
    return value


def _parse_timestamp(text: str) -> GoTimestamp | None:
    if len(text) < 5 or not text[:4].isdigit() or text[4] != "-":
        return None
    try:
        match = _TS_DATE.match(text)
        if match:
            year, month, day = (int(g) for g in match.groups())
            return GoTimestamp(year, month, day, tzinfo=dt.UTC)
        match = _TS_FULL.match(text)
        if not match:
            return None
        y, mo, d, space, h, mi, s, frac, zone = match.groups()
        if space and zone:
            return None  # "2006-1-2 15:4:5" carries no zone in yaml.v3's formats
        if not space and not zone:
            return None
        micro = int((frac[1:] + "000000")[:6]) if frac else 0
        tz = dt.UTC
        if zone and zone != "Z":
            sign = 1 if zone[0] == "+" else -1
            tz = dt.timezone(sign * dt.timedelta(hours=int(zone[1:3]), minutes=int(zone[4:6])))
        return GoTimestamp(int(y), int(mo), int(d), int(h), int(mi), int(s), micro, tzinfo=tz)
    except ValueError:
        return None


def resolve_plain(text: str) -> tuple[str, Any]:
    """The tag and value yaml.v3 gives an unquoted scalar (spec/config.md §16.1)."""
    if text in _NULLS:
        return NULL_TAG, None
    if text in _BOOLS:
        return BOOL_TAG, _BOOLS[text]
    if text in _SPECIAL_FLOATS:
        return FLOAT_TAG, _SPECIAL_FLOATS[text]
    if text == "<<":
        return MERGE_TAG, text
    first = text[0]
    if first == ".":
        try:
            return FLOAT_TAG, float(text)
        except ValueError:
            return STR_TAG, text
    if first.isdigit() or first in "+-":
        stamp = _parse_timestamp(text)
        if stamp is not None:
            return TIMESTAMP_TAG, stamp
        plain = text.replace("_", "")
        value = _parse_go_int(plain)
        if value is not None:
            return INT_TAG, value
        if _YAML_STYLE_FLOAT.match(plain):
            return FLOAT_TAG, float(plain)
    return STR_TAG, text


class GoResolver(BaseResolver):
    """Resolves plain scalars with yaml.v3's rules instead of YAML 1.1's."""

    def resolve(self, kind: type, value: Any, implicit: tuple[bool, bool]) -> str:
        if kind is ScalarNode and implicit[0]:
            return resolve_plain(value)[0]
        return super().resolve(kind, value, implicit)


class GoConstructor(SafeConstructor):
    """Builds plain Python data: str, int, float, bool, None, GoTimestamp, list, dict."""

    def construct_go_scalar(self, node: ScalarNode) -> Any:
        if node.style is None or node.style == "":
            tag, value = resolve_plain(node.value)
            if tag == node.tag:
                return value
        if node.tag == STR_TAG:
            return node.value
        # an explicit tag (`!!int "5"`) — resolve the text under that tag
        tag, value = resolve_plain(node.value)
        return value if tag == node.tag else node.value

    def construct_mapping(self, node: MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[tuple[Any, str], int] = {}
        for key_node, _ in node.value:
            if isinstance(key_node, ScalarNode) and key_node.tag != MERGE_TAG:
                ident = (type(key_node), key_node.value)
                if ident in seen:
                    raise DuplicateKeyError(
                        key_node.value, key_node.start_mark.line + 1, seen[ident]
                    )
                seen[ident] = key_node.start_mark.line + 1
        self.flatten_mapping(node)
        mapping: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = self.construct_object(key_node, deep=True)
            if isinstance(key, list):
                key = tuple(key)
            if isinstance(key, dict):
                raise ConstructorError(None, None, "invalid map key", key_node.start_mark)
            mapping[key] = self.construct_object(value_node, deep=deep)
        return mapping


for _tag in (NULL_TAG, BOOL_TAG, INT_TAG, FLOAT_TAG, STR_TAG, TIMESTAMP_TAG):
    # types-PyYAML types `add_constructor` for its Loader classes only; every constructor has it
    GoConstructor.add_constructor(_tag, GoConstructor.construct_go_scalar)  # type: ignore[type-var]


class DuplicateKeyError(yaml.YAMLError):
    """yaml.v3 refuses a mapping that names one key twice."""

    def __init__(self, key: str, line: int, first_line: int):
        self.key, self.line, self.first_line = key, line, first_line
        super().__init__(
            f'yaml: unmarshal errors:\n  line {line}: mapping key "{key}" already defined at line '
            f"{first_line}"
        )


if _HAVE_LIBYAML:

    class GoLoader(_CParser, GoConstructor, GoResolver):  # type: ignore[misc]
        """A PyYAML loader speaking yaml.v3's dialect (libyaml parser)."""

        def __init__(self, stream: str):
            _CParser.__init__(self, stream)
            GoConstructor.__init__(self)
            GoResolver.__init__(self)

else:  # pragma: no cover - libyaml missing

    class GoLoader(Reader, Scanner, Parser, Composer, GoConstructor, GoResolver):  # type: ignore[no-redef]
        """A PyYAML loader speaking yaml.v3's dialect (pure-Python parser)."""

        def __init__(self, stream: str):
            Reader.__init__(self, stream)
            Scanner.__init__(self)
            Parser.__init__(self)
            Composer.__init__(self)
            GoConstructor.__init__(self)
            GoResolver.__init__(self)


class GoDumper(Emitter, Serializer, GoResolver):
    """Serialises node trees (the multi-file merge) so that GoLoader reads them back unchanged."""

    def __init__(self, stream: Any, **kwargs: Any):
        Emitter.__init__(self, stream, allow_unicode=True, width=1 << 30)
        Serializer.__init__(self)
        GoResolver.__init__(self)


def yaml_error_text(error: yaml.YAMLError) -> str:
    """yaml.v3-like one-line text for a syntax error (`yaml: line N: problem`)."""
    if isinstance(error, DuplicateKeyError):
        return str(error)
    mark = getattr(error, "problem_mark", None)
    problem = getattr(error, "problem", None) or str(error)
    if mark is not None:
        return f"yaml: line {mark.line + 1}: {problem}"
    return f"yaml: {problem}"


def load_tree(text: str) -> Any:
    """Parse one YAML document into plain data with yaml.v3's typing (None when empty).

    Aliases are checked before anything is built (config/yaml_aliases.py): an anchor that
    contains itself or an alias bomb is a YAMLError naming the line, as in yaml.v3.
    """
    loader = GoLoader(text)
    try:
        node = loader.get_single_node()
        check_aliases(node, text)
        return None if node is None else loader.construct_document(node)
    finally:
        loader.dispose()


def compose_tree(text: str) -> Node | None:
    """Parse one YAML document into a node tree (for the multi-file merge), aliases checked."""
    loader = GoLoader(text)
    try:
        node = loader.get_single_node()
        check_aliases(node, text)
        return node
    finally:
        loader.dispose()


def serialize_tree(node: Node) -> str:
    """Write a node tree back to YAML text that `load_tree` reads as the same data."""
    return yaml.serialize(node, Dumper=GoDumper)


def go_format_float(value: float) -> str:
    """Go's `%v` for a float64: shortest digits, exponent form outside 1e-4 ≤ |x| < 1e6."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if value == 0:
        return "-0" if math.copysign(1, value) < 0 else "0"
    sign, digits, exponent = Decimal(repr(value)).as_tuple()
    text = "".join(str(d) for d in digits).rstrip("0") or "0"
    point = len(digits) + int(exponent)  # decimal point position relative to the digits
    x = point - 1
    prefix = "-" if sign else ""
    if x < -4 or x >= 21 or x >= 6:
        mantissa = text[0] + ("." + text[1:] if len(text) > 1 else "")
        return f"{prefix}{mantissa}e{'-' if x < 0 else '+'}{abs(x):02d}"
    if point <= 0:
        return f"{prefix}0.{'0' * -point}{text}"
    if point >= len(text):
        return prefix + text + "0" * (point - len(text))
    return f"{prefix}{text[:point]}.{text[point:]}"


def go_format_value(value: Any) -> str:
    """A scalar's string form as Go's `%v` prints it (spec/config.md §5.3)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return go_format_float(value)
    if isinstance(value, GoTimestamp):
        return value.go_text()
    if value is None:
        return "<nil>"
    return str(value)


def go_type_name(value: Any) -> str:
    """The Go type a generic yaml.v3 decode gives this value (used in llama-swap's messages)."""
    if value is None:
        return "<nil>"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float64"
    if isinstance(value, GoTimestamp):
        return "time.Time"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "[]interface {}"
    if isinstance(value, dict):
        if all(isinstance(k, str) for k in value):
            return "map[string]interface {}"
        return "map[interface {}]interface {}"
    return type(value).__name__


def yaml_tag_of(value: Any) -> str:
    """yaml.v3's short tag for a value (`!!str`, `!!int`, … `!!map`)."""
    if value is None:
        return "!!null"
    if isinstance(value, bool):
        return "!!bool"
    if isinstance(value, int):
        return "!!int"
    if isinstance(value, float):
        return "!!float"
    if isinstance(value, GoTimestamp):
        return "!!timestamp"
    if isinstance(value, str):
        return "!!str"
    if isinstance(value, list):
        return "!!seq"
    return "!!map"


_NATURAL_CHUNK = re.compile(r"\d+|\D")


def natural_key(text: str) -> list[tuple[int, Any]]:
    """yaml.v3's map key order: digit runs numerically, non-letters before letters."""
    key: list[tuple[int, Any]] = []
    for chunk in _NATURAL_CHUNK.findall(text):
        if chunk.isdigit():
            key.append((1, (int(chunk), len(chunk))))
        elif chunk.isalpha():
            key.append((2, chunk))
        else:
            key.append((0, chunk))
    return key
