"""The single-document load pipeline (spec/config.md §4): text in, normalised config out.

Phases, in llama-swap's order: env macros on the text, macro declarations, the untyped tree
with per-model preparation, the global macro pass, `startPort`, the per-model pass with
`${PORT}`, the unresolved-macro check, the typed decode, then normalisation and validation.
Each failure becomes a `ConfigError` with llama-swap's text, the source and the key path.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import yaml
from pydantic import ValidationError

from llamaswap_es.config.auto_port import AutoPort
from llamaswap_es.config.env_macros import EnvMacroError, substitute_env_macros
from llamaswap_es.config.gotypes import FATAL, UNMARSHAL, _to_int
from llamaswap_es.config.macros import (
    DEFAULT_PROXY,
    MacroError,
    apply_macros,
    check_unresolved,
    expand_model,
    read_declarations,
    strip_comment_lines,
)
from llamaswap_es.config.models import LlamaSwapConfig
from llamaswap_es.config.namespace import validate_namespace
from llamaswap_es.config.normalize import ConfigIssue, normalize
from llamaswap_es.config.yaml_dialect import load_tree, yaml_error_text, yaml_tag_of
from llamaswap_es.errors import ConfigError

DEFAULT_START_PORT = 5800


def load_document(text: str, env: Mapping[str, str], source: str | None = None) -> LlamaSwapConfig:
    """Load one YAML document exactly as llama-swap's `LoadConfigFromReader` does."""
    try:
        return _pipeline(text, env)
    except EnvMacroError as exc:
        raise ConfigError(str(exc), source=source) from None
    except (MacroError, ConfigIssue) as exc:
        raise ConfigError(str(exc), source=source, key_path=exc.key_path) from None
    except yaml.YAMLError as exc:
        raise ConfigError(yaml_error_text(exc), source=source) from None
    except ValidationError as exc:
        message, key_path = _decode_failure(exc)
        raise ConfigError(message, source=source, key_path=key_path) from None


def _pipeline(text: str, env: Mapping[str, str]) -> LlamaSwapConfig:
    text = substitute_env_macros(text, env)
    tree = load_tree(text)
    if tree is None:
        tree = {}
    if not isinstance(tree, dict):
        raise MacroError(
            "yaml: unmarshal errors:\n  line 1: cannot unmarshal "
            f"{yaml_tag_of(tree)} into config.configMacroConfig"
        )
    declarations = read_declarations(tree)
    tree.pop("macros", None)
    models = tree.get("models")
    if isinstance(models, dict):
        if not all(isinstance(k, str) for k in models):
            models = {}  # llama-swap's quirk: a non-string model key drops the section (§4.3)
            tree["models"] = models
        for body in models.values():
            if isinstance(body, dict):
                _prepare_model(body)
    for key in list(tree):
        if key != "models":
            tree[key] = apply_macros(tree[key], declarations.global_macros)
    next_port = _start_port(tree)
    auto_ports: dict[str, AutoPort] = {}
    if isinstance(models, dict):
        for model_id in sorted(models):
            if isinstance(models[model_id], dict):
                models[model_id], next_port = expand_model(
                    model_id, models[model_id], declarations, next_port, auto_ports
                )
    check_unresolved(tree)
    config = LlamaSwapConfig.model_validate(tree)
    config.macros = dict(declarations.global_macros)
    config.auto_ports = {m: a for m, a in auto_ports.items() if m in config.models}
    for model_id, decls in declarations.model_macros.items():
        if model_id in config.models:
            config.models[model_id].macros = dict(decls)
    compiled = normalize(config)
    validate_namespace(config, compiled)
    return config


def _prepare_model(body: dict[str, Any]) -> None:
    body.pop("macros", None)
    for key in ("cmd", "cmdStop"):
        if isinstance(body.get(key), str):
            body[key] = strip_comment_lines(body[key])
    if body.get("proxy") is None:
        body["proxy"] = DEFAULT_PROXY


def _start_port(tree: dict[str, Any]) -> int:
    raw = tree.get("startPort")
    if raw is None:
        return DEFAULT_START_PORT
    try:
        port = _to_int(raw)
    except Exception as exc:  # a pydantic custom error carrying yaml.v3's line
        detail = getattr(exc, "context", None) or {}
        raise MacroError(
            f"yaml: unmarshal errors:\n  line 0: {detail.get('text', exc)}", "startPort"
        ) from None
    if port < 1:
        raise MacroError("startPort must be greater than 1", "startPort")
    return port


def _dotted(loc: tuple[Any, ...]) -> str:
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        elif isinstance(part, str) and not part.startswith(("function-", "dict[", "list[")):
            text += f".{part}" if text else part
    return text


def _decode_failure(exc: ValidationError) -> tuple[str, str | None]:
    """yaml.v3's message for a failed typed decode: a custom decoder's error wins outright,
    otherwise every type mismatch is listed, as `yaml: unmarshal errors:` does."""
    errors = exc.errors(include_url=False)
    for error in errors:
        if error["type"] == FATAL:
            return error["ctx"]["text"], _dotted(error["loc"]) or None
    lines = []
    for error in errors:
        if error["type"] == UNMARSHAL:
            lines.append(f"  line 0: {error['ctx']['text']}")
        else:
            lines.append(f"  line 0: {_dotted(error['loc'])}: {error['msg']}")
    first = _dotted(errors[0]["loc"]) if errors else None
    return "yaml: unmarshal errors:\n" + "\n".join(lines), first or None
