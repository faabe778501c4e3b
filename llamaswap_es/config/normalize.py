"""Phase 9 of the load: defaults that depend on other keys, and validation (spec §4.9 steps 1-15).

The steps run in llama-swap's order because the order decides which error a broken file gets.
Every failure is a `ConfigIssue` with llama-swap's text and the key path it concerns; the loader
turns it into a `ConfigError` naming the file too.
"""

from __future__ import annotations

import os
from pathlib import Path

from llamaswap_es.config.go_url import go_url_parse_error
from llamaswap_es.config.gotypes import format_go_duration
from llamaswap_es.config.matrix import CompiledMatrix, expand_matrix
from llamaswap_es.config.matrix_dsl import MatrixError
from llamaswap_es.config.models import (
    DEFAULT_GROUP,
    DEFAULT_IGNORE_PATHS,
    LOG_TO_STDOUT,
    OUR_SECTION,
    GroupConfig,
    LlamaSwapConfig,
    MatrixConfig,
    ModelConfig,
    PlacementModel,
)
from llamaswap_es.config.policy_registry import (
    PolicyRegistryError,
    policy_entries,
    unknown_policy_text,
)
from llamaswap_es.config.scheduler_default import DEFAULT_SCHEDULER, default_scheduler_warning

MIN_HEALTH_CHECK_TIMEOUT_S = 15
DEFAULT_UNLOAD_TIMEOUT_S = 10
MIN_PERFORMANCE_EVERY_NS = 5_000_000_000
MODALITIES = ("text", "audio", "image")
COMFYUI_MODEL = "comfyui_auto"
COMFYUI_MIN_CONCURRENCY = 50


class ConfigIssue(ValueError):
    """A validation failure: llama-swap's message and the dotted key path."""

    def __init__(self, message: str, key_path: str | None = None):
        super().__init__(message)
        self.key_path = key_path


def normalize(config: LlamaSwapConfig) -> CompiledMatrix | None:
    """Apply steps 1-15 in place; returns the compiled matrix when the matrix router is used."""
    _globals(config)
    _alias_table(config)
    for model_id in sorted(config.models):
        _model(config, model_id, config.models[model_id])
    compiled = _routing(config)
    _scheduler(config, compiled)
    _preload(config)
    _idle_model(config)
    _placement_models(config)
    _api_keys(config)
    return compiled


def _globals(config: LlamaSwapConfig) -> None:
    config.health_check_timeout = max(config.health_check_timeout, MIN_HEALTH_CHECK_TIMEOUT_S)
    perf = config.performance
    if perf.every == 0:
        perf.every = MIN_PERFORMANCE_EVERY_NS
    if perf.every < MIN_PERFORMANCE_EVERY_NS:
        raise ConfigIssue(
            f"performance: every must be at least 5s, got {format_go_duration(perf.every)}",
            "performance.every",
        )
    if config.start_port < 1:
        raise ConfigIssue("startPort must be greater than 1", "startPort")
    if config.global_ttl < 0:
        raise ConfigIssue("globalTTL must be >= 0", "globalTTL")
    if config.unload_timeout < 0:
        raise ConfigIssue("unloadTimeout must be >= 0", "unloadTimeout")
    if config.unload_timeout == 0:
        config.unload_timeout = DEFAULT_UNLOAD_TIMEOUT_S
    seen: set[str] = set()
    headers: list[str] = []
    for header in config.ui.activity.session_id:
        header = header.strip()
        if header and header.lower() not in seen:
            seen.add(header.lower())
            headers.append(header)
    config.ui.activity.session_id = headers
    if config.store is not None:
        _check_store_path(config.store.path)
    if not config.upstream.ignore_paths:
        config.upstream.ignore_paths = list(DEFAULT_IGNORE_PATHS)
    if config.log_to_stdout not in LOG_TO_STDOUT:
        raise ConfigIssue("logToStdout must be one of: proxy, upstream, both, none", "logToStdout")


def _check_store_path(raw: str) -> None:
    path = raw.strip()
    if not path:
        raise ConfigIssue("store.path must not be empty", "store.path")
    target = Path(path)
    try:
        if target.is_dir():
            raise ConfigIssue(f"store.path: {path} is a directory, not a file", "store.path")
        if target.exists():
            if not os.access(target, os.W_OK):
                raise ConfigIssue(
                    f"store.path: {path} is not writable: open {path}: permission denied",
                    "store.path",
                )
            return
        parent = target.parent if str(target.parent) else Path(".")
        if not parent.is_dir():
            raise ConfigIssue(
                f"store.path: directory {parent} is not writable: stat {parent}: no such file or "
                "directory",
                "store.path",
            )
        if not os.access(parent, os.W_OK | os.X_OK):
            raise ConfigIssue(
                f"store.path: directory {parent} is not writable: permission denied", "store.path"
            )
    except OSError as exc:
        raise ConfigIssue(f"store.path: {exc.strerror or exc}", "store.path") from None


def _alias_table(config: LlamaSwapConfig) -> None:
    table: dict[str, str] = {}
    for model_id in sorted(config.models):
        for index, alias in enumerate(config.models[model_id].aliases):
            if alias in table:
                raise ConfigIssue(
                    f"duplicate alias {alias} found in model: {model_id}",
                    f"models.{model_id}.aliases[{index}]",
                )
            table[alias] = model_id
    config.alias_table = table


def _model(config: LlamaSwapConfig, model_id: str, model: ModelConfig) -> None:
    where = f"models.{model_id}"
    model.health_check_timeout = config.health_check_timeout
    if model_id == COMFYUI_MODEL:
        model.concurrency_limit = max(model.concurrency_limit, COMFYUI_MIN_CONCURRENCY)
        model.compat.ignore_websockets = True
    if model.ttl == -1:
        model.ttl = config.global_ttl
    if model.ttl < 0:
        raise ConfigIssue(f"model {model_id}: invalid TTL value {model.ttl}", f"{where}.ttl")
    if model.unload_timeout < 0:
        raise ConfigIssue(
            f"model {model_id}: invalid unloadTimeout value {model.unload_timeout}",
            f"{where}.unloadTimeout",
        )
    if model.unload_timeout == 0:
        model.unload_timeout = config.unload_timeout
    caps = model.capabilities
    for side, values in (("in", caps.in_), ("out", caps.out)):
        for value in values:
            if value not in MODALITIES:
                raise ConfigIssue(
                    f'model {model_id}: capabilities.{side}: invalid modality "{value}", must be '
                    "one of: text, audio, image",
                    f"{where}.capabilities.{side}",
                )
    if caps.context < 0:
        raise ConfigIssue(
            f"model {model_id}: capabilities.context: must be >= 0", f"{where}.capabilities.context"
        )
    for key in model.filters.set_params_by_id:
        if key == model_id:
            continue
        key_path = f"{where}.filters.setParamsByID"
        if key in config.models:
            raise ConfigIssue(
                f"model {model_id} filters.setParamsByID: key '{key}' conflicts with an existing "
                "model ID",
                key_path,
            )
        owner = config.alias_table.get(key)
        if owner is not None and owner != model_id:
            raise ConfigIssue(
                f"duplicate alias '{key}' in model {model_id} filters.setParamsByID, already used "
                f"by model {owner}",
                key_path,
            )
        if owner is None:
            model.aliases.append(key)
            config.alias_table[key] = model_id
    problem = go_url_parse_error(model.proxy)
    if problem:
        raise ConfigIssue(f"model {model_id}: invalid proxy URL: {problem}", f"{where}.proxy")
    if model.send_loading_state is None:
        model.send_loading_state = config.send_loading_state


def _routing(config: LlamaSwapConfig) -> CompiledMatrix | None:
    router = config.routing.router
    legacy = config.matrix is not None or bool(config.groups)
    modern = bool(router.use) or router.settings.matrix is not None or bool(router.settings.groups)
    if legacy and modern:
        raise ConfigIssue(
            "config uses both the legacy top-level 'matrix'/'groups' keys and the new "
            "'routing.router' block; please migrate the top-level keys into 'routing.router' and "
            "remove them",
            "routing.router",
        )
    matrix: MatrixConfig | None = None
    groups: dict[str, GroupConfig] = {}
    groups_path = "routing.router.settings.groups"
    if legacy:
        if config.groups and config.matrix is not None:
            raise ConfigIssue("config cannot use both 'groups' and 'matrix'", "matrix")
        matrix, groups = config.matrix, dict(config.groups)
        groups_path = "groups"
    elif router.use == "matrix":
        if router.settings.matrix is None:
            raise ConfigIssue(
                "routing.router.use is 'matrix' but routing.router.settings.matrix is not set",
                "routing.router.settings.matrix",
            )
        matrix = router.settings.matrix
    elif router.use in ("", "group"):
        groups = dict(router.settings.groups)
    else:
        raise ConfigIssue(
            f'routing.router.use: unknown router "{router.use}" (valid: group, matrix)',
            "routing.router.use",
        )
    compiled = None
    if matrix is not None:
        try:
            compiled = expand_matrix(matrix, set(config.models))
        except MatrixError as exc:
            raise ConfigIssue(f"matrix: {exc}", "matrix") from None
        router.use, router.settings.matrix, router.settings.groups = "matrix", matrix, {}
    else:
        _groups(config, groups, groups_path)
        router.use, router.settings.matrix, router.settings.groups = "group", None, groups
    config.groups, config.matrix = {}, None  # the canonical form lives under routing.router
    return compiled


def _groups(config: LlamaSwapConfig, groups: dict[str, GroupConfig], path: str) -> None:
    grouped = {member for group in groups.values() for member in group.members}
    groups[DEFAULT_GROUP] = GroupConfig(
        swap=True,
        exclusive=True,
        persistent=False,
        members=sorted(m for m in config.models if m not in grouped),
    )
    owner: dict[str, str] = {}
    for name in sorted(groups):
        seen: set[str] = set()
        for member in groups[name].members:
            if member in seen:
                raise ConfigIssue(
                    f"duplicate model member {member} found in group: {name}",
                    f"{path}.{name}.members",
                )
            seen.add(member)
            if member in owner:
                raise ConfigIssue(
                    f"model member {member} is used in multiple groups: {owner[member]} and {name}",
                    f"{path}.{name}.members",
                )
            owner[member] = name


def _scheduler(config: LlamaSwapConfig, compiled: CompiledMatrix | None) -> None:
    scheduler = config.routing.scheduler
    if scheduler.use == "":
        warning = default_scheduler_warning(config, compiled)
        if warning:
            config.warnings = (*config.warnings, warning)
        scheduler.use = DEFAULT_SCHEDULER
    try:
        known = scheduler.use in policy_entries()
    except PolicyRegistryError as exc:
        raise ConfigIssue(f"routing.scheduler.use: {exc}", "routing.scheduler.use") from None
    if not known:
        raise ConfigIssue(
            f"routing.scheduler.use: {unknown_policy_text(scheduler.use)}",
            "routing.scheduler.use",
        )
    for key in scheduler.settings.fifo.priority:
        if key not in config.models and key not in config.alias_table:
            raise ConfigIssue(
                f'routing.scheduler.settings.fifo.priority references unknown model "{key}"',
                f"routing.scheduler.settings.fifo.priority.{key}",
            )


def resolve_local(config: LlamaSwapConfig, name: str) -> str | None:
    """A request name → the real local model id (exact id first, then alias)."""
    if name in config.models:
        return name
    return config.alias_table.get(name)


def _preload(config: LlamaSwapConfig) -> None:
    hook = config.hooks.on_startup
    resolved = [resolve_local(config, name.strip()) for name in hook.preload if name.strip()]
    hook.preload = [model_id for model_id in resolved if model_id is not None]


def _idle_model(config: LlamaSwapConfig) -> None:
    """Ours: `llamaswap-es.idleModel` names a local model (id or alias); stored as its real id,
    so the scheduler never sees an alias."""
    ours = config.llamaswap_es
    name = ours.idle_model.strip()
    if not name:
        ours.idle_model = ""
        return
    model_id = resolve_local(config, name)
    if model_id is None:
        raise ConfigIssue(
            f'{OUR_SECTION}.idleModel references unknown model "{name}"',
            f"{OUR_SECTION}.idleModel",
        )
    ours.idle_model = model_id


def _placement_models(config: LlamaSwapConfig) -> None:
    """Ours: `llamaswap-es.models` is keyed by model id or alias; stored by real id, so the
    scheduler never sees an alias. An unknown model, or the same model named twice, is refused
    with its key, and a model whose declared span is wider than 1 needs a footprint to split."""
    ours = config.llamaswap_es
    resolved: dict[str, tuple[str, PlacementModel]] = {}
    for name in sorted(ours.models):
        where = f"{OUR_SECTION}.models.{name}"
        model_id = resolve_local(config, name.strip())
        if model_id is None:
            raise ConfigIssue(f'{where}: references unknown model "{name}"', where)
        if model_id in resolved:
            raise ConfigIssue(
                f'{where}: model "{model_id}" is already configured (as '
                f'"{resolved[model_id][0]}")',
                where,
            )
        settings = ours.models[name]
        if settings.footprint_mb < 0:
            raise ConfigIssue(
                f"{where}.footprintMb: must be >= 0 (0 = not declared), got "
                f"{settings.footprint_mb}",
                f"{where}.footprintMb",
            )
        if settings.devices < 1:
            raise ConfigIssue(
                f"{where}.devices: must be >= 1, got {settings.devices}", f"{where}.devices"
            )
        resolved[model_id] = (name, settings)
    ours.models = {model_id: settings for model_id, (_, settings) in sorted(resolved.items())}


def _api_keys(config: LlamaSwapConfig) -> None:
    for index, key in enumerate(config.api_keys):
        if key == "":
            raise ConfigIssue("empty api key found in apiKeys", f"apiKeys[{index}]")
        if " " in key:
            raise ConfigIssue(
                f"apiKeys[{index}]: api key cannot contain spaces", f"apiKeys[{index}]"
            )
