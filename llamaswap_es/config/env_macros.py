"""Phase 1 of the load: `${env.NAME}` substitution on the raw text (spec/config.md §4.1).

It runs before YAML parsing so an environment value can sit anywhere, keys and flow lists
included; only macros outside YAML comments count, so a commented-out line never demands a
variable that is not set.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import yaml

from llamaswap_es.config.yaml_dialect import load_tree, natural_key

ENV_MACRO = re.compile(r"\$\{env\.([A-Za-z_][A-Za-z0-9_]*)\}")


class EnvMacroError(ValueError):
    """An env macro names a variable that is unset or unusable; `name` is the variable."""

    def __init__(self, message: str, name: str):
        super().__init__(message)
        self.name = name


def _strings_in_key_order(node: Any) -> list[str]:
    """Every string of the parsed document (keys too) in the order llama-swap re-serialises
    it: comment-free, mapping keys in yaml.v3's sorted order. That order decides which unset
    variable is reported first."""
    if isinstance(node, str):
        return [node]
    if isinstance(node, list):
        return [s for item in node for s in _strings_in_key_order(item)]
    if isinstance(node, dict):
        out: list[str] = []
        for key in sorted(node, key=lambda k: natural_key(str(k))):
            out.extend(_strings_in_key_order(key))
            out.extend(_strings_in_key_order(node[key]))
        return out
    return []


def referenced_env_names(text: str) -> list[str]:
    """Names used by `${env.NAME}` outside comments, in order of first appearance."""
    try:
        searched = "\n".join(_strings_in_key_order(load_tree(text)))
    except yaml.YAMLError:
        searched = text  # invalid YAML: scan everything so the env error comes first
    names: list[str] = []
    for match in ENV_MACRO.finditer(searched):
        if match.group(1) not in names:
            names.append(match.group(1))
    return names


def substitute_env_macros(text: str, env: Mapping[str, str]) -> str:
    """Replace every `${env.NAME}` with the variable's value, escaped for YAML double quotes."""
    for name in referenced_env_names(text):
        if name not in env:
            raise EnvMacroError(f"environment variable '{name}' is not set", name)
        value = env[name]
        if any(ch in value for ch in "\n\r\0"):
            raise EnvMacroError(
                f"environment variable '{name}' contains newlines or null bytes which are not "
                "allowed in YAML substitution",
                name,
            )
        escaped = value.replace("\\", "\\\\").replace('"', '\\"')
        text = text.replace("${env." + name + "}", escaped)
    return text
