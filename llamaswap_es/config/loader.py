"""Where a configuration comes from: `--config`, `--config-dir`, and their merge (spec §2).

llama-swap always uses its merge loader, even for a lone `--config`: each file gets its env
macros and is parsed on its own, the node trees are merged (identity maps such as `models` may
not repeat a key; lists concatenate; scalars must agree), and the merged tree goes through the
single-document pipeline. We do the same, so a file behaves identically alone or in a directory.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from llamaswap_es.config.document import load_document
from llamaswap_es.config.env_macros import EnvMacroError, substitute_env_macros
from llamaswap_es.config.models import LlamaSwapConfig
from llamaswap_es.config.yaml_dialect import NULL_TAG, compose_tree, serialize_tree, yaml_error_text
from llamaswap_es.errors import ConfigError

IDENTITY_PATHS = frozenset(
    {
        "models",
        "groups",
        "profiles",
        "selectors",
        "peers",
        "matrix",
        "routing.router.settings.groups",
        "routing.router.settings.matrix",
    }
)
_KIND = {SequenceNode: 2, MappingNode: 4, ScalarNode: 8}


def _os_error(exc: OSError, op: str, path: str) -> str:
    reason = (exc.strerror or str(exc)).lower()
    return f"{op} {path}: {reason}"


def config_sources(config_file: str | None, config_dir: str | None) -> list[str]:
    """The files to merge, in order: `--config` first, then the directory's YAML files."""
    if not config_file and not config_dir:
        raise ConfigError("at least one of -config or -config-dir must be provided")
    sources: list[str] = [config_file] if config_file else []
    if config_dir:
        try:
            names = os.listdir(config_dir)
        except OSError as exc:
            raise ConfigError(
                f"-config-dir {config_dir}: {_os_error(exc, 'open', config_dir)}", source=config_dir
            ) from None
        found = sorted(
            os.path.join(config_dir, name)
            for name in names
            if name.endswith((".yml", ".yaml"))
            and not os.path.isdir(os.path.join(config_dir, name))
        )
        if config_file:
            absolute = os.path.abspath(config_file)
            if any(os.path.abspath(path) == absolute for path in found):
                raise ConfigError(
                    f"-config path {config_file} is also present in -config-dir {config_dir}; "
                    "remove it from one",
                    source=config_file,
                )
        sources.extend(found)
    if not sources:
        raise ConfigError("no configuration sources found", source=config_dir)
    return sources


def _parse_source(path: str, env: Mapping[str, str]) -> MappingNode | None:
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    except OSError as exc:
        raise ConfigError(
            f"failed to read config {path}: {_os_error(exc, 'open', path)}", source=path
        ) from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"failed to read config {path}: {exc}", source=path) from None
    try:
        text = substitute_env_macros(text, env)
    except EnvMacroError as exc:
        raise ConfigError(f"config {path}: {exc}", source=path) from None
    try:
        root = compose_tree(text)
    except yaml.YAMLError as exc:
        raise ConfigError(
            f"failed to parse config {path}: {yaml_error_text(exc)}", source=path
        ) from None
    if isinstance(root, SequenceNode):
        raise ConfigError(f"config {path}: top-level YAML must be a mapping", source=path)
    if not isinstance(root, MappingNode) or not root.value:
        return None  # empty, `{}` or a bare scalar: the file is skipped
    return root


def _is_empty_null(node: Node | None) -> bool:
    return node is None or (
        isinstance(node, ScalarNode) and node.tag == NULL_TAG and node.value == ""
    )


def _find(mapping: MappingNode, key: str) -> int | None:
    for index, (key_node, _) in enumerate(mapping.value):
        if isinstance(key_node, ScalarNode) and key_node.value == key:
            return index
    return None


def _merge_mapping(dst: MappingNode, src: MappingNode, prefix: str, source: str) -> None:
    for key_node, src_value in src.value:
        key = key_node.value if isinstance(key_node, ScalarNode) else str(key_node)
        path = f"{prefix}.{key}" if prefix else key
        index = _find(dst, key)
        if index is None:
            dst.value.append((key_node, src_value))
            continue
        dst_value = dst.value[index][1]
        if path in IDENTITY_PATHS:
            if not (isinstance(dst_value, MappingNode) and isinstance(src_value, MappingNode)):
                raise ConfigError(
                    f'conflict at "{path}": expected a mapping, introduced by {source}',
                    source=source,
                    key_path=path,
                )
            for child_key, child_value in src_value.value:
                if _find(dst_value, child_key.value) is not None:
                    raise ConfigError(
                        f'duplicate {key} "{child_key.value}" found in {source} (already defined '
                        "in another config source)",
                        source=source,
                        key_path=f"{path}.{child_key.value}",
                    )
                dst_value.value.append((child_key, child_value))
            continue
        merged = _merge_values(dst_value, src_value, path, source)
        dst.value[index] = (dst.value[index][0], merged)


def _merge_values(dst: Node, src: Node, path: str, source: str) -> Node:
    if isinstance(dst, MappingNode) and isinstance(src, MappingNode):
        _merge_mapping(dst, src, path, source)
        return dst
    if isinstance(dst, SequenceNode) and isinstance(src, SequenceNode):
        dst.value.extend(src.value)
        return dst
    if isinstance(dst, ScalarNode) and isinstance(src, ScalarNode):
        if _is_empty_null(dst):
            return src
        if _is_empty_null(src) or (dst.value == src.value and dst.tag == src.tag):
            return dst
        raise ConfigError(
            f'conflict at "{path}": {source} sets a different value than a previous source',
            source=source,
            key_path=path,
        )
    if _is_empty_null(dst):
        return src
    if _is_empty_null(src):
        return dst
    raise ConfigError(
        f'conflict at "{path}": incompatible YAML node kinds (kind {_KIND[type(dst)]} vs '
        f"{_KIND[type(src)]}) introduced by {source}",
        source=source,
        key_path=path,
    )


def load_config(
    config_file: str | None,
    config_dir: str | None,
    env: Mapping[str, str] | None = None,
) -> LlamaSwapConfig:
    """Load, merge, expand, validate and normalise llama-swap's configuration.

    `env` is the environment for `${env.NAME}` (the process environment when None). Raises
    `ConfigError` with llama-swap's text, the file and the key path.
    """
    environment = os.environ if env is None else env
    sources = config_sources(config_file, config_dir)
    merged: MappingNode | None = None
    for path in sources:
        root = _parse_source(path, environment)
        if root is None:
            continue
        if merged is None:
            merged = root
        else:
            _merge_mapping(merged, root, "", path)
    text = serialize_tree(merged) if merged is not None else ""
    where = sources[0] if len(sources) == 1 else ", ".join(sources)
    config = load_document(text, environment, source=where)
    config.sources = tuple(sources)
    return config
