"""Import every registered scheduling policy and hand it to the core.

The names come from `config.policy_registry` (the built-ins and the entry point group
`llamaswap_es.policies`); the core cannot import code itself (it does no I/O), so every command
that runs a reducer calls `load_policies()` first: `llamaswap-es` (serve, check-config, replay)
does at start, and the server again before a reload (`load_config_and_policies`), so a policy
installed meanwhile can be selected without a restart. A policy that cannot be imported is an
error that names its entry point and what went wrong; nothing is skipped silently.
"""

from __future__ import annotations

import importlib

from llamaswap_es.config import LlamaSwapConfig, load_config
from llamaswap_es.config.policy_registry import PolicyEntry, policy_entries
from llamaswap_es.core.policies import SchedulingPolicy
from llamaswap_es.core.policy_registry import loaded_policy_names, register_policy
from llamaswap_es.errors import ConfigError


class PolicyLoadError(ValueError):
    """A registered policy could not be imported or is not a policy: the message names it."""


def load_policies() -> list[str]:
    """Import and register every registered policy not loaded yet; return all loaded names."""
    loaded = set(loaded_policy_names())
    entries = policy_entries()
    if set(entries) - loaded:
        importlib.invalidate_caches()  # a package installed since the last import is seen
    for name, entry in entries.items():
        if name not in loaded:
            _register(entry, _import(entry))
    return loaded_policy_names()


def _import(entry: PolicyEntry) -> object:
    module_name, _, attribute = entry.target.partition(":")
    try:
        obj: object = importlib.import_module(module_name)
        for part in attribute.split(".") if attribute else ():
            obj = getattr(obj, part)
    except Exception as exc:  # any failure of third-party code: say whose and why
        raise PolicyLoadError(
            f"scheduling policy {entry.name!r} ({entry.origin}) could not be loaded from "
            f"{entry.target}: {type(exc).__name__}: {exc}"
        ) from exc
    return obj() if isinstance(obj, type) else obj


def _register(entry: PolicyEntry, policy: object) -> SchedulingPolicy:
    name = getattr(policy, "name", None)
    if name != entry.name:
        raise PolicyLoadError(
            f"scheduling policy {entry.name!r} ({entry.origin}) points at {entry.target}, "
            f"whose `name` is {name!r}: the entry point's name and the policy's must be equal"
        )
    try:
        return register_policy(policy)
    except ValueError as exc:
        raise PolicyLoadError(f"{entry.origin}: {exc}") from None


def load_config_and_policies(config_file: str | None, config_dir: str | None) -> LlamaSwapConfig:
    """`load_config` for a server that reloads: policies installed since it started are loaded
    first, so the config may select them; a policy that cannot be loaded is a ConfigError (the
    reload is refused and the running config kept, as for any bad config)."""
    try:
        load_policies()
    except ValueError as exc:  # PolicyLoadError, PolicyRegistryError: they name the plugin
        raise ConfigError(str(exc), key_path="routing.scheduler.use") from None
    return load_config(config_file, config_dir)
