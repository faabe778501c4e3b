"""Macros: declarations, expansion and the unresolved-macro check (spec/config.md §4.2-4.7, §5).

The order of operations is observable (it decides what a macro can see and which error wins),
so this follows llama-swap's pipeline step by step on the plain data tree: declarations are
validated first, the global list is applied to every top-level value, then each model gets
`MODEL_ID`, the global list with its own overrides, then `${PORT}`; whatever `${name}` is left
is an error naming where it was found.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from llamaswap_es.config.auto_port import AutoPort, auto_port_of
from llamaswap_es.config.yaml_dialect import GoTimestamp, go_format_value, go_type_name, yaml_tag_of

MACRO_NAME = re.compile(r"^[a-zA-Z0-9_-]+$")
MACRO_REF = re.compile(r"\$\{([a-zA-Z0-9_-]+)\}")
ENV_REF = re.compile(r"\$\{env\.([A-Za-z_][A-Za-z0-9_]*)\}")
RESERVED = ("PID", "PORT", "MODEL_ID")
DEFAULT_PROXY = "http://localhost:${PORT}"
PORT_SLUG = "${PORT}"

#: Top-level keys of llama-swap's typed schema; only these are checked for leftover macros.
KNOWN_TOP_LEVEL_KEYS = frozenset(
    {
        "healthCheckTimeout",
        "logLevel",
        "logTimeFormat",
        "logToStdout",
        "logRequests",
        "metricsMaxInMemory",
        "captureBuffer",
        "store",
        "ui",
        "performance",
        "startPort",
        "sendLoadingState",
        "includeAliasesInList",
        "globalTTL",
        "unloadTimeout",
        "apiKeys",
        "upstream",
        "models",
        "profiles",
        "selectors",
        "hooks",
        "routing",
        "groups",
        "matrix",
        "peers",
        "llamaswap-es",  # ours: checked too, so a typo'd macro in our section is caught
    }
)
#: Model fields whose leftover macros get llama-swap's "found in <id>.<field>" wording.
_NAMED_MODEL_FIELDS = ("cmd", "cmdStop", "proxy", "checkEndpoint", "name", "description")


class MacroError(ValueError):
    """A macro problem, with llama-swap's text and the key path it concerns."""

    def __init__(self, message: str, key_path: str | None = None):
        super().__init__(message)
        self.key_path = key_path


Macro = tuple[str, Any]


@dataclass(frozen=True)
class MacroDeclarations:
    """The declared macros, in YAML order, as written (values unexpanded)."""

    global_macros: tuple[Macro, ...]
    model_macros: dict[str, tuple[Macro, ...]]


def _decl_list(raw: Any, where: str) -> tuple[Macro, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, dict):
        raise MacroError("macros must be a mapping", where)
    return tuple((k if isinstance(k, str) else go_format_value(k), v) for k, v in raw.items())


def _check_declaration(name: str, value: Any) -> str | None:
    if len(name) >= 64:
        return f"macro name '{name}' exceeds maximum length of 63 characters"
    if not MACRO_NAME.match(name):
        return (
            f"macro name '{name}' contains invalid characters, must match pattern ^[a-zA-Z0-9_-]+$"
        )
    if isinstance(value, str):
        if "${" + name + "}" in value:
            return f"macro '{name}' contains self-reference"
    elif isinstance(value, GoTimestamp) or not isinstance(value, bool | int | float):
        return (
            f"macro '{name}' has invalid type {go_type_name(value)}, must be a scalar type "
            "(string, int, float, or bool)"
        )
    if name in RESERVED:
        return f"macro name '{name}' is reserved"
    return None


def read_declarations(tree: dict[str, Any]) -> MacroDeclarations:
    """Phase 2: the top-level and per-model macro lists, validated in llama-swap's order."""
    global_macros = _decl_list(tree.get("macros"), "macros")
    models = tree.get("models")
    if models is not None and not isinstance(models, dict):
        raise MacroError(
            "yaml: unmarshal errors:\n  line 0: cannot unmarshal "
            f"{yaml_tag_of(models)} into map[string]config.modelMacroConfig",
            "models",
        )
    model_macros: dict[str, tuple[Macro, ...]] = {}
    for raw_id, body in (models or {}).items():
        model_id = raw_id if isinstance(raw_id, str) else go_format_value(raw_id)
        if body is None:
            continue
        if not isinstance(body, dict):
            raise MacroError(
                "yaml: unmarshal errors:\n  line 0: cannot unmarshal "
                f"{yaml_tag_of(body)} `{go_format_value(body)}` into config.modelMacroConfig",
                f"models.{model_id}",
            )
        try:
            model_macros[model_id] = _decl_list(body.get("macros"), f"models.{model_id}.macros")
        except MacroError as exc:
            raise MacroError(f"model {model_id}: {exc}", exc.key_path) from None
    for name, value in global_macros:
        problem = _check_declaration(name, value)
        if problem:
            raise MacroError(problem, f"macros.{name}")
    for model_id, decls in model_macros.items():
        for name, value in decls:
            problem = _check_declaration(name, value)
            if problem:
                raise MacroError(f"model {model_id}: {problem}", f"models.{model_id}.macros.{name}")
    return MacroDeclarations(global_macros, model_macros)


def substitute(tree: Any, name: str, value: Any) -> Any:
    """Apply one macro to a value tree: an exact `${name}` keeps the value's type."""
    slug = "${" + name + "}"
    text = go_format_value(value)

    def walk(node: Any) -> Any:
        if isinstance(node, str):
            if node == slug:
                return value
            return node.replace(slug, text) if slug in node else node
        if isinstance(node, dict):
            if not all(isinstance(k, str) for k in node):
                return node  # yaml.v3 decodes such maps to another type the walker skips
            return {k: walk(v) for k, v in node.items()}
        if isinstance(node, list):
            return [walk(v) for v in node]
        return node

    return walk(tree)


def apply_macros(tree: Any, macros: list[Macro] | tuple[Macro, ...]) -> Any:
    """Apply a macro list last to first, so a macro can use the ones declared before it."""
    for name, value in reversed(macros):
        tree = substitute(tree, name, value)
    return tree


def model_macro_list(model_id: str, decls: MacroDeclarations) -> list[Macro]:
    """`MODEL_ID`, then the globals (overridden in place), then the model's new ones."""
    macros: list[Macro] = [("MODEL_ID", model_id), *decls.global_macros]
    for name, value in decls.model_macros.get(model_id, ()):
        for index, (existing, _) in enumerate(macros):
            if existing == name:
                macros[index] = (name, value)
                break
        else:
            macros.append((name, value))
    return macros


def strip_comment_lines(text: str) -> str:
    """Drop `cmd`/`cmdStop` lines whose first non-blank character is `#`."""
    return "\n".join(line for line in text.split("\n") if not line.strip().startswith("#"))


def _substitute_keys(
    model_id: str, by_id: dict[str, Any], originals: dict[str, str], macros: list[Macro]
) -> dict[str, Any]:
    """Expand macros in `setParamsByID` keys (text only); two keys meeting is an error."""
    result: dict[str, Any] = {}
    origin_of: dict[str, str] = {}
    new_originals: dict[str, str] = {}
    for key, value in by_id.items():
        new_key = key
        for name, macro_value in reversed(macros):
            new_key = new_key.replace("${" + name + "}", go_format_value(macro_value))
        original = originals.get(key, key)
        if new_key in result:
            raise MacroError(
                f'model {model_id} filters.setParamsByID: keys "{origin_of[new_key]}" and '
                f'"{original}" resolve to the same value',
                f"models.{model_id}.filters.setParamsByID",
            )
        result[new_key] = value
        origin_of[new_key] = original
        new_originals[new_key] = original
    originals.clear()
    originals.update(new_originals)
    return result


def _expand_by_id_keys(
    model_id: str, body: dict[str, Any], originals: dict[str, str], macros: list[Macro]
) -> None:
    filters = body.get("filters")
    if isinstance(filters, dict):
        by_id = filters.get("setParamsByID")
        if isinstance(by_id, dict) and all(isinstance(k, str) for k in by_id):
            filters["setParamsByID"] = _substitute_keys(model_id, by_id, originals, macros)


def expand_model(
    model_id: str,
    body: dict[str, Any],
    decls: MacroDeclarations,
    next_port: int,
    auto_ports: dict[str, AutoPort] | None = None,
) -> tuple[dict[str, Any], int]:
    """Phase 6 for one model: its macros, then `${PORT}`; returns the body and the next port.

    A model given a port by `${PORT}` is recorded in `auto_ports` (when given) with its texts
    before the substitution, so the runtime can move it off a port someone else holds."""
    macros = model_macro_list(model_id, decls)
    body = apply_macros(body, macros)
    originals: dict[str, str] = {}
    _expand_by_id_keys(model_id, body, originals, macros)
    cmd, proxy = body.get("cmd"), body.get("proxy")
    cmd_uses = isinstance(cmd, str) and PORT_SLUG in cmd
    proxy_uses = isinstance(proxy, str) and PORT_SLUG in proxy
    if proxy_uses and not cmd_uses:
        raise MacroError(
            f"model {model_id}: proxy uses ${{PORT}} but cmd does not - ${{PORT}} is only "
            "available when used in cmd",
            f"models.{model_id}.proxy",
        )
    if cmd_uses:
        if auto_ports is not None:
            found = auto_port_of(body, next_port)
            if found is not None:
                auto_ports[model_id] = found
        port_macro = [("PORT", next_port)]
        body = apply_macros(body, port_macro)
        _expand_by_id_keys(model_id, body, originals, port_macro)
        next_port += 1
    filters = body.get("filters")
    if isinstance(filters, dict) and isinstance(filters.get("setParamsByID"), dict):
        for key in filters["setParamsByID"]:
            if isinstance(key, str):
                match = MACRO_REF.search(key)
                if match:
                    raise MacroError(
                        f"unknown macro '${{{match.group(1)}}}' found in model {model_id} "
                        "filters.setParamsByID key",
                        f"models.{model_id}.filters.setParamsByID",
                    )
    return body, next_port


def _strings_with_paths(node: Any, path: list[str | int]) -> list[tuple[list[str | int], str]]:
    found: list[tuple[list[str | int], str]] = []
    if isinstance(node, str):
        found.append((path, node))
    elif isinstance(node, dict):
        if all(isinstance(k, str) for k in node):
            for key, value in node.items():
                found.extend(_strings_with_paths(value, [*path, key]))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            found.extend(_strings_with_paths(value, [*path, index]))
    return found


def _dotted(path: list[str | int]) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else part)
    return text


def _model_field_error(model_id: str, field: list[str | int], name: str) -> str:
    keys = [p for p in field if isinstance(p, str)]
    joined = ".".join(keys)
    if joined in _NAMED_MODEL_FIELDS or joined == "filters.stripParams":
        if name in ("PORT", "MODEL_ID"):
            return f"macro '${{{name}}}' should have been substituted in {model_id}.{joined}"
        return f"unknown macro '${{{name}}}' found in {model_id}.{joined}"
    if keys and keys[0] in ("capabilities", "metadata"):
        joined = keys[0]
    return f"model {model_id} {joined}: unknown macro '${{{name}}}'"


def check_unresolved(tree: dict[str, Any]) -> None:
    """Phase 7: the first leftover `${name}` in a known key is an error naming its place."""
    for top, value in tree.items():
        if top not in KNOWN_TOP_LEVEL_KEYS:
            continue
        if top == "models" and isinstance(value, dict):
            for model_id in sorted(value):
                for path, text in _strings_with_paths(value[model_id], []):
                    _check_model_string(model_id, path, text)
            continue
        for path, text in _strings_with_paths(value, [top]):
            env = ENV_REF.search(text)
            if env:
                raise MacroError(
                    f"{_dotted(path)}: environment variable '{env.group(1)}' not set",
                    _dotted(path),
                )
            match = MACRO_REF.search(text)
            if match:
                raise MacroError(
                    f"{_dotted(path)}: unknown macro '${{{match.group(1)}}}'", _dotted(path)
                )


def _check_model_string(model_id: str, path: list[str | int], text: str) -> None:
    key_path = _dotted(["models", model_id, *path])
    env = ENV_REF.search(text)
    if env:
        raise MacroError(f"{key_path}: environment variable '{env.group(1)}' not set", key_path)
    for match in MACRO_REF.finditer(text):
        if match.group(1) == "PID" and path == ["cmdStop"]:
            continue
        raise MacroError(_model_field_error(model_id, path, match.group(1)), key_path)
