"""From a loaded config to the scheduler's view of it (`SchedulerConfig`) and its digests.

The reducer sees only plain data carried in `ConfigApplied`, so everything it needs is resolved
here: limits, times in ms, the planner, the policy and our own settings. Each model gets a
fingerprint of the settings that shape its running process, so a reload restarts only the models
whose fingerprint changed (ARCHITECTURE §9.6).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from llamaswap_es.config.history import shown_url
from llamaswap_es.config.models import OUR_SECTION, LlamaSwapConfig, ModelConfig
from llamaswap_es.config.normalize import DEFAULT_GROUP, resolve_local
from llamaswap_es.config.schedule import (
    EvictionPlanner,
    GroupPlanner,
    GroupRule,
    MatrixPlanner,
    ModelSchedule,
    PlacementRules,
    SchedulerConfig,
)
from llamaswap_es.config.yaml_dialect import natural_key
from llamaswap_es.errors import ConfigError

DEFAULT_CONCURRENCY_LIMIT = 10


def _stable_json(data: Any) -> str:
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def model_fingerprint(model: ModelConfig) -> str:
    """sha256 of what changes the running process: cmd, cmdStop, proxy, checkEndpoint, env.

    Routing-only keys (aliases, filters, names, metadata, ttl, limits) are left out, so
    changing them on reload does not restart a loaded model.
    """
    process = {
        "cmd": model.cmd,
        "cmdStop": model.cmd_stop,
        "proxy": model.proxy,
        "checkEndpoint": model.check_endpoint,
        "env": list(model.env),
    }
    return hashlib.sha256(_stable_json(process).encode()).hexdigest()


def _planner(config: LlamaSwapConfig) -> tuple[EvictionPlanner, list[str]]:
    """The planner and the models that get a process (group members, or all under matrix)."""
    settings = config.routing.router.settings
    if config.routing.router.use == "matrix" and settings.matrix is not None:
        matrix = settings.matrix
        planner = MatrixPlanner(
            sets=tuple(matrix.sets.items()),  # yaml.v3 sorted order, as llama-swap (§10.3)
            vars=tuple(sorted(matrix.vars.items(), key=lambda kv: natural_key(kv[0]))),
            evict_costs=tuple(
                sorted(matrix.evict_costs.items(), key=lambda kv: natural_key(kv[0]))
            ),
        )
        return planner, sorted(config.models)
    rules: list[GroupRule] = []
    placed: set[str] = set()
    for name in sorted(settings.groups):
        group = settings.groups[name]
        members: list[str] = []
        for index, member in enumerate(group.members):
            real = resolve_local(config, member)
            if real is None:
                raise ConfigError(
                    f'no model config for "{member}"',
                    source=", ".join(config.sources) or None,
                    key_path=f"routing.router.settings.groups.{name}.members[{index}]",
                )
            if real not in placed:  # an alias member runs the real model, once (ours)
                placed.add(real)
                members.append(real)
        rules.append(
            GroupRule(
                name=name,
                swap=group.swap,
                exclusive=group.exclusive,
                persistent=group.persistent,
                members=tuple(members),
            )
        )
    rules.sort(key=lambda r: (r.name != DEFAULT_GROUP, r.name))
    return GroupPlanner(groups=tuple(rules)), sorted(placed)


def build_schedule(config: LlamaSwapConfig) -> SchedulerConfig:
    """The scheduler's view of a loaded config.

    Raises `ConfigError` (`no model config for "<m>"`) when a group names a model that does not
    exist: llama-swap's loader accepts that but its server then refuses to start.
    """
    planner, process_models = _planner(config)
    priority = config.routing.scheduler.settings.fifo.priority
    ours = config.llamaswap_es
    models = {}
    for model_id in process_models:
        model = config.models[model_id]
        limit = (
            model.concurrency_limit if model.concurrency_limit > 0 else DEFAULT_CONCURRENCY_LIMIT
        )
        models[model_id] = ModelSchedule(
            model_id=model_id,
            concurrency_limit=limit,
            ttl_ms=model.ttl * 1000,
            unload_timeout_ms=model.unload_timeout * 1000,
            health_check_timeout_ms=model.health_check_timeout * 1000,
            priority=priority.get(model_id, 0),  # by real id: alias keys have no effect
            fingerprint=model_fingerprint(model),
            **_declared_placement(config, model_id),
        )
    return SchedulerConfig(
        models=models,
        planner=planner,
        policy=config.routing.scheduler.use,  # normalisation checked it is registered
        starvation_bound_ms=ours.starvation_bound_seconds * 1000,
        queue_timeout_ms=ours.queue_timeout_seconds * 1000,
        min_resident_ms=ours.min_resident_seconds * 1000,
        shutdown_grace_ms=ours.shutdown_timeout_seconds * 1000,
        idle_model=ours.idle_model,  # a real id: normalisation resolved and checked it
        start_backoff_ms=ours.start_backoff_seconds * 1000,
        start_backoff_max_ms=ours.start_backoff_max_seconds * 1000,
        placement=PlacementRules(mode=ours.placement.mode, margin_mb=ours.placement.margin_mb),
    )


def _declared_placement(config: LlamaSwapConfig, model_id: str) -> dict[str, int]:
    """The model's `llamaswap-es.models` entry as ModelSchedule fields (none: the defaults)."""
    declared = config.llamaswap_es.models.get(model_id)
    if declared is None:
        return {}
    return {
        "footprint_mb": declared.footprint_mb,
        "footprint_devices": declared.devices,
        "placement_priority": declared.priority,
    }


SECRET_MASK = "***"


def config_as_json(config: LlamaSwapConfig) -> dict[str, Any]:
    """The normalised config as JSON-ready data, with every API key masked as `***`."""
    data = config.model_dump(mode="json", by_alias=True)
    data["apiKeys"] = [SECRET_MASK for _ in data.get("apiKeys", [])]
    for peer in data.get("peers", {}).values():
        if peer.get("apiKey"):
            peer["apiKey"] = SECRET_MASK
    ours = data.get(OUR_SECTION, {})
    if ours.get("historyDatabase"):  # a password in the URL is a secret too
        ours["historyDatabase"] = shown_url(ours["historyDatabase"])
    data["aliases"] = dict(sorted(config.alias_table.items()))
    return _mask_secrets(data, config_secrets(config))


def config_secrets(config: LlamaSwapConfig) -> list[str]:
    """Every credential the config holds (API keys, peers' keys), longest first: what must
    never appear in the event log, a log line or a dump, wherever its text landed."""
    secrets = [key for key in config.api_keys if key]
    secrets += [peer.api_key for peer in config.peers.values() if peer.api_key]
    return sorted(set(secrets), key=len, reverse=True)


def _mask_secrets(node: Any, secrets: list[str]) -> Any:
    """Hide a key wherever its text landed (a macro value, a header in `env` …)."""
    if not secrets:
        return node
    if isinstance(node, str):
        for secret in secrets:
            node = node.replace(secret, SECRET_MASK)
        return node
    if isinstance(node, list):
        return [_mask_secrets(item, secrets) for item in node]
    if isinstance(node, dict):
        return {key: _mask_secrets(value, secrets) for key, value in node.items()}
    return node


def config_hash(config: LlamaSwapConfig) -> str:
    """A stable sha256 of the normalised config (computed on the masked form: no secret
    ever reaches the event log, not even hashed)."""
    return hashlib.sha256(_stable_json(config_as_json(config)).encode()).hexdigest()
