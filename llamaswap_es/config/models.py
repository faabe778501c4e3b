"""The pydantic models of llama-swap's configuration, plus our `llamaswap-es:` section.

Field names are snake_case in Python and llama-swap's spelling in YAML (the alias). Decoding
follows yaml.v3 (see gotypes): unknown keys are ignored, absent or null scalars keep their
default, null lists and maps become empty, and a null entry in a map of objects (`models: {m: ~}`)
becomes an all-zero object without defaults, exactly as llama-swap treats it (spec §16.7).
Loaded configs are treated as immutable once `load_config` returns them.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, ClassVar, get_origin

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationInfo,
    WithJsonSchema,
    field_validator,
    model_validator,
)
from pydantic.json_schema import SkipJsonSchema

from llamaswap_es.config.auto_port import AutoPort
from llamaswap_es.config.browser_access import (
    AccessEntryError,
    normalize_allowed_host,
    normalize_allowed_origin,
)
from llamaswap_es.config.go_url import go_url_parse_error
from llamaswap_es.config.gotypes import (
    SCALAR_SCHEMA,
    GoAnyMap,
    GoBool,
    GoDurationNs,
    GoInt,
    GoIntMap,
    GoStr,
    GoStrList,
    GoStrMap,
    fatal_error,
    unmarshal_error,
    unmarshal_text,
)
from llamaswap_es.config.history import HistorySettingError, check_node_name, parse_history_url
from llamaswap_es.config.policy_registry import BUILTIN_POLICIES
from llamaswap_es.config.yaml_dialect import go_format_value, natural_key

DEFAULT_SESSION_ID_HEADERS = ("X-Session-ID", "X-Litellm-Session-Id")
LOG_TO_STDOUT = ("proxy", "upstream", "both", "none")
ROUTERS = ("group", "matrix")
DEFAULT_IGNORE_PATHS = (r".*\.(js|json|css|png|gif|jpg|jpeg|ico|txt)$",)


class GoStruct(BaseModel):
    """Base of every config object: yaml.v3's decoding rules for Go structs."""

    model_config = ConfigDict(
        extra="ignore",
        populate_by_name=True,
        validate_default=False,
        use_attribute_docstrings=True,  # the docstrings below are config-schema.json's text
    )
    go_type: ClassVar[str] = "struct"

    @model_validator(mode="before")
    @classmethod
    def _go_decode(cls, data: Any) -> Any:
        if isinstance(data, BaseModel):
            return data
        if not isinstance(data, dict):
            raise unmarshal_error(data, cls.go_type)
        by_alias = {(f.alias or name): f for name, f in cls.model_fields.items()}
        cleaned: dict[str, Any] = {}
        for key, value in data.items():
            key = key if isinstance(key, str) else go_format_value(key)
            field = by_alias.get(key)
            if field is None:
                continue  # unknown keys are ignored, as yaml.v3 does
            if value is None and get_origin(field.annotation) not in (list, dict):
                continue  # null scalar or struct: keep the default
            cleaned[key] = value
        return cleaned

    @classmethod
    def zero(cls) -> GoStruct:
        """The all-zero object a null map entry decodes to (no defaults, no checks)."""
        values: dict[str, Any] = {}
        for name, field in cls.model_fields.items():
            default = field.get_default(call_default_factory=True)
            if isinstance(default, GoStruct):
                values[name] = type(default).zero()
            elif isinstance(default, bool):
                values[name] = False
            elif isinstance(default, int):
                values[name] = 0
            elif isinstance(default, str):
                values[name] = ""
            elif isinstance(default, list | dict):
                values[name] = type(default)()
            else:
                values[name] = None
        return cls.model_construct(**values)


def struct_map(cls: type[GoStruct]) -> BeforeValidator:
    """A map of objects: null map → empty, null entry → the object's zero value."""

    def decode(value: Any) -> Any:
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise unmarshal_error(value, f"map[string]{cls.go_type}")
        return {
            (k if isinstance(k, str) else go_format_value(k)): (cls.zero() if v is None else v)
            for k, v in value.items()
        }

    return BeforeValidator(decode)


# ------------------------------------------------------------------------------------------
# models.<id>


class Timeouts(GoStruct):
    """Upstream HTTP transport timeouts in seconds; 0 disables one (spec §8.7)."""

    go_type: ClassVar[str] = "config.TimeoutsConfig"
    connect: GoInt = 30
    keepalive: GoInt = 30
    response_header: GoInt = Field(0, alias="responseHeader")
    tls_handshake: GoInt = Field(10, alias="tlsHandshake")
    expect_continue: GoInt = Field(1, alias="expectContinue")
    idle_conn: GoInt = Field(90, alias="idleConn")


class PeerTimeouts(Timeouts):
    response_header: GoInt = Field(60, alias="responseHeader")


class Filters(GoStruct):
    """Request-body rewrites (spec §9); `strip_params` is the legacy spelling."""

    go_type: ClassVar[str] = "config.Filters"
    strip_params: GoStr = Field("", alias="stripParams")
    legacy_strip_params: GoStr = Field("", alias="strip_params")
    set_params: GoAnyMap = Field(default_factory=dict, alias="setParams")
    set_params_by_id: dict[str, GoAnyMap] = Field(default_factory=dict, alias="setParamsByID")

    def sanitized_strip_params(self) -> list[str]:
        """The keys to delete: trimmed, no empties, no duplicates, never `model`, sorted."""
        raw = self.strip_params or self.legacy_strip_params
        return sorted({p.strip() for p in raw.split(",") if p.strip() and p.strip() != "model"})


class PeerFilters(Filters):
    go_type: ClassVar[str] = "config.PeerFilters"


class Capabilities(GoStruct):
    go_type: ClassVar[str] = "config.Capabilities"
    in_: GoStrList = Field(default_factory=list, alias="in")
    out: GoStrList = Field(default_factory=list)
    tools: GoBool = False
    reranker: GoBool = False
    context: GoInt = 0

    def is_empty(self) -> bool:
        return not (self.in_ or self.out or self.tools or self.reranker or self.context)


class Compat(GoStruct):
    go_type: ClassVar[str] = "config.CompatConfig"
    ignore_websockets: GoBool = Field(False, alias="ignoreWebsockets")


class ModelConfig(GoStruct):
    """One `models.<id>` entry (spec §8), after macro expansion."""

    go_type: ClassVar[str] = "config.ModelConfig"
    cmd: GoStr = ""
    cmd_stop: GoStr = Field("", alias="cmdStop")
    proxy: GoStr = "http://localhost:${PORT}"
    check_endpoint: GoStr = Field("/health", alias="checkEndpoint")
    env: GoStrList = Field(default_factory=list)
    aliases: GoStrList = Field(default_factory=list)
    name: GoStr = ""
    description: GoStr = ""
    ttl: GoInt = -1
    unload_timeout: GoInt = Field(0, alias="unloadTimeout")
    unlisted: GoBool = False
    use_model_name: GoStr = Field("", alias="useModelName")
    concurrency_limit: GoInt = Field(0, alias="concurrencyLimit")
    filters: Filters = Field(default_factory=Filters)
    macros: GoAnyMap = Field(default_factory=dict)
    metadata: GoAnyMap = Field(default_factory=dict)
    send_loading_state: GoBool | None = Field(None, alias="sendLoadingState")
    timeouts: Timeouts = Field(default_factory=Timeouts)
    compat: Compat = Field(default_factory=Compat)
    capabilities: Capabilities = Field(default_factory=Capabilities)
    health_check_timeout: GoInt = Field(0, alias="healthCheckTimeout")


# ------------------------------------------------------------------------------------------
# routing


DEFAULT_GROUP = "(default)"
"""The group the loader adds for every model that belongs to no group (llama-swap's name)."""


class GroupConfig(GoStruct):
    """A group of the group router (spec §10.2)."""

    go_type: ClassVar[str] = "config.GroupConfig"
    swap: GoBool = True
    exclusive: GoBool = True
    persistent: GoBool = False
    members: GoStrList = Field(default_factory=list)


def _decode_sets(value: Any) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise fatal_error("sets must be a mapping")
    sets: dict[str, str] = {}
    for key, expr in value.items():
        name = key if isinstance(key, str) else go_format_value(key)
        if isinstance(expr, dict | list):
            raise fatal_error(
                f'failed to decode DSL for set "{name}": '
                f"{unmarshal_text(expr, 'string')}"
            )
        sets[name] = "" if expr is None else go_format_value(expr)
    # llama-swap's loaded config carries the sets in yaml.v3's sorted key order (spec §10.3)
    return {name: sets[name] for name in sorted(sets, key=natural_key)}


class MatrixConfig(GoStruct):
    """The matrix router's settings (spec §10.3); `sets` in yaml.v3 sorted order."""

    go_type: ClassVar[str] = "config.MatrixConfig"
    vars: GoStrMap = Field(default_factory=dict)
    evict_costs: GoIntMap = Field(default_factory=dict)
    sets: Annotated[
        dict[str, str],
        BeforeValidator(_decode_sets),
        WithJsonSchema({"type": ["object", "null"], "additionalProperties": SCALAR_SCHEMA}),
    ] = Field(default_factory=dict)


class RouterSettings(GoStruct):
    go_type: ClassVar[str] = "config.RouterSettings"
    groups: Annotated[dict[str, GroupConfig], struct_map(GroupConfig)] = Field(default_factory=dict)
    matrix: MatrixConfig | None = None


class RouterConfig(GoStruct):
    go_type: ClassVar[str] = "config.RouterConfig"
    use: GoStr = Field("", json_schema_extra={"enum": ["", *ROUTERS, None]})
    """`group` (the default) or `matrix`."""
    settings: RouterSettings = Field(default_factory=RouterSettings)


class FifoSettings(GoStruct):
    go_type: ClassVar[str] = "config.FifoSettings"
    priority: GoIntMap = Field(default_factory=dict)


class SchedulerSettings(GoStruct):
    go_type: ClassVar[str] = "config.SchedulerSettings"
    fifo: FifoSettings = Field(default_factory=FifoSettings)


class SchedulerSection(GoStruct):
    go_type: ClassVar[str] = "config.SchedulerConfig"
    use: GoStr = Field("", json_schema_extra={"examples": [*BUILTIN_POLICIES]})
    """The scheduling policy: `serial` (the default here: one request and one model at a time),
    `fifo` (llama-swap's: concurrent requests, priorities, models side by side as groups or the
    matrix allow), or the name of a policy another installed package registers in the entry
    point group `llamaswap_es.policies`."""
    settings: SchedulerSettings = Field(default_factory=SchedulerSettings)


class RoutingConfig(GoStruct):
    go_type: ClassVar[str] = "config.RoutingConfig"
    router: RouterConfig = Field(default_factory=RouterConfig)
    scheduler: SchedulerSection = Field(default_factory=SchedulerSection)


# ------------------------------------------------------------------------------------------
# peers, selectors, profiles, hooks and the small top-level blocks


class PeerConfig(GoStruct):
    """A remote OpenAI-compatible server whose models we forward to (spec §11)."""

    model_config = ConfigDict(json_schema_extra={"required": ["proxy", "models"]})
    go_type: ClassVar[str] = "config.PeerConfig"
    proxy: GoStr = ""
    api_key: GoStr = Field("", alias="apiKey")
    models: GoStrList = Field(default_factory=list, json_schema_extra={"minItems": 1})
    filters: PeerFilters = Field(default_factory=PeerFilters)
    timeouts: PeerTimeouts = Field(default_factory=PeerTimeouts)

    @model_validator(mode="after")
    def _required(self) -> PeerConfig:
        if not self.proxy.strip():
            raise fatal_error("proxy is required")
        problem = go_url_parse_error(self.proxy)
        if problem:
            raise fatal_error(f"invalid peer proxy URL ({self.proxy}): {problem}")
        if not self.models:
            raise fatal_error("peer models can not be empty")
        return self


class SelectorSettings(GoStruct):
    go_type: ClassVar[str] = "config.SelectorSettings"
    spillover: GoInt = 1


class SelectorConfig(GoStruct):
    """A virtual model id that picks one of its targets at request time (spec §13.1)."""

    go_type: ClassVar[str] = "config.SelectorConfig"
    strategy: GoStr = ""
    targets: GoStrList = Field(default_factory=list)
    settings: SelectorSettings = Field(default_factory=SelectorSettings)
    name: GoStr = ""
    description: GoStr = ""
    unlisted: GoBool = False
    metadata: GoAnyMap = Field(default_factory=dict)


LEGACY_PROFILE = (
    "profile must be a mapping with description and pins; the legacy list syntax is no longer "
    "supported"
)


class ProfileConfig(GoStruct):
    """Runtime-switchable pins: requested name → replacement name (spec §13.2)."""

    go_type: ClassVar[str] = "config.ProfileConfig"
    description: GoStr = ""
    pins: GoStrMap = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _no_legacy_list(cls, data: Any) -> Any:
        if not isinstance(data, dict | BaseModel):
            raise fatal_error(LEGACY_PROFILE)
        return data


class OnStartup(GoStruct):
    go_type: ClassVar[str] = "config.OnStartupHooks"
    preload: GoStrList = Field(default_factory=list)


class Hooks(GoStruct):
    go_type: ClassVar[str] = "config.HooksConfig"
    on_startup: OnStartup = Field(default_factory=OnStartup)


class Activity(GoStruct):
    go_type: ClassVar[str] = "config.ActivityConfig"
    session_id: GoStrList = Field(default_factory=lambda: list(DEFAULT_SESSION_ID_HEADERS))


class UIConfig(GoStruct):
    go_type: ClassVar[str] = "config.UIConfig"
    activity: Activity = Field(default_factory=Activity)


class Performance(GoStruct):
    go_type: ClassVar[str] = "config.PerformanceConfig"
    disabled: GoBool = False
    every: GoDurationNs = 5_000_000_000


class Upstream(GoStruct):
    go_type: ClassVar[str] = "config.UpstreamConfig"
    ignore_paths: GoStrList = Field(default_factory=list, alias="ignorePaths")

    @model_validator(mode="after")
    def _compile(self) -> Upstream:
        for pattern in self.ignore_paths:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise fatal_error(
                    f'upstream.ignorePaths: invalid regular expression "{pattern}": '
                    f"error parsing regexp: {exc}"
                ) from None
        return self


class StoreConfig(GoStruct):
    go_type: ClassVar[str] = "config.StoreConfig"
    path: GoStr = ""


# ------------------------------------------------------------------------------------------
# ours


OUR_SECTION = "llamaswap-es"
_POSITIVE: dict[str, Any] = {"exclusiveMinimum": 0}


def _normal_or_full_schema(schema: dict[str, Any]) -> None:
    """config-schema.json: the text `normal` or `full`, in any case (not any scalar)."""
    schema.pop("type", None)
    schema["anyOf"] = [
        {"type": "string", "pattern": "^([nN][oO][rR][mM][aA][lL]|[fF][uU][lL][lL])$"},
        {"type": "null"},
    ]


_NOT_NEGATIVE: dict[str, Any] = {"minimum": 0}

DEFAULT_EVENT_RETENTION_DAYS = 7
"""Raw events kept a week: recovery, replay and `explain` of recent days; a busy server's log
then stays bounded (docs/configuration.md#retention gives the sizes)."""
DEFAULT_EVENT_PACK_ROWS = 4096
"""Request events per pack (events/pack.py): ~1,400 requests, compressed ~7-fold together."""
MIN_EVENT_PACK_ROWS = 64
DEFAULT_ACTIVITY_RETENTION_DAYS = 90
"""The request history (one small row per request) kept a quarter, longer than the events."""


class HangDetectionSettings(GoStruct):
    """`llamaswap-es: hangDetection`: how a serving model is watched for a hang (ours).

    While a model is ready its health endpoint is probed every `probeIntervalMs`; a probe that
    gets no HTTP answer within `probeTimeoutMs` fails, and `failuresBeforeHung` failures in a row
    declare it hung (it is stopped and its requests get an error). Any answer, even an error
    status, counts as alive: this looks for silence, not for errors. Unknown keys are errors.
    """

    go_type: ClassVar[str] = "llamaswap-es hangDetection settings"
    enabled: GoBool = True
    probe_interval_ms: GoInt = Field(5_000, alias="probeIntervalMs")
    probe_timeout_ms: GoInt = Field(5_000, alias="probeTimeoutMs")
    failures_before_hung: GoInt = Field(3, alias="failuresBeforeHung")

    @model_validator(mode="before")
    @classmethod
    def _known_keys_only(cls, data: Any) -> Any:
        if isinstance(data, dict):
            known = {(f.alias or n) for n, f in cls.model_fields.items()}
            for key in data:
                if key not in known:
                    raise fatal_error(
                        f'{OUR_SECTION}.hangDetection: unknown setting "{key}" (valid: '
                        f"{', '.join(sorted(known))})"
                    )
        return data

    @model_validator(mode="after")
    def _ranges(self) -> HangDetectionSettings:
        minimums = {
            "probeIntervalMs": (self.probe_interval_ms, 1),
            "probeTimeoutMs": (self.probe_timeout_ms, 1),
            "failuresBeforeHung": (self.failures_before_hung, 1),
        }
        for key, (value, least) in minimums.items():
            if value < least:
                raise fatal_error(
                    f"{OUR_SECTION}.hangDetection.{key}: must be >= {least}, got {value} "
                    "(to turn hang detection off, set enabled: false)"
                )
        return self


PLACEMENT_MODES = ("off", "memory")
DEFAULT_DEVICES_ENV = "CUDA_VISIBLE_DEVICES"


def _known_keys(cls: type[GoStruct], data: Any, where: str) -> None:
    """Our sections refuse unknown keys (a typo must not be silently ignored)."""
    if isinstance(data, dict):
        known = {(f.alias or n) for n, f in cls.model_fields.items()}
        for key in data:
            if key not in known:
                valid = ", ".join(sorted(known))
                prefix = f"{where}: " if where else ""
                raise fatal_error(f'{prefix}unknown setting "{key}" (valid: {valid})')


class PlacementSettings(GoStruct):
    """`llamaswap-es: placement`: placing models by GPU memory (issue 18, ours).

    `mode: memory` lets the scheduler choose the GPUs a starting model runs on from their sampled
    free memory and the model's footprint, evicting idle models by priority then least recent
    use until it fits; `off` (the default) keeps groups and the matrix alone, as llama-swap.
    """

    go_type: ClassVar[str] = "llamaswap-es placement settings"
    mode: GoStr = Field("off", json_schema_extra={"enum": [*PLACEMENT_MODES, None]})
    """`off` (groups and the matrix decide alone) or `memory` (they decide, then memory)."""
    margin_mb: GoInt = Field(512, alias="marginMb", json_schema_extra=_NOT_NEGATIVE)
    """MiB kept free on every device beyond the footprints (the CUDA context, fragmentation)."""
    sample_step_mb: GoInt = Field(256, alias="sampleStepMb", json_schema_extra=_POSITIVE)
    """A device's free memory is recorded in the log again only once it moved by more than this."""

    @model_validator(mode="before")
    @classmethod
    def _known_keys_only(cls, data: Any) -> Any:
        _known_keys(cls, data, f"{OUR_SECTION}.placement")
        return data

    @model_validator(mode="after")
    def _ranges(self) -> PlacementSettings:
        where = f"{OUR_SECTION}.placement"
        self.mode = self.mode.strip().lower()
        if self.mode == "false":  # YAML 1.1 readers turn a bare `off` into false
            self.mode = "off"
        if self.mode not in PLACEMENT_MODES:
            raise fatal_error(f'{where}.mode: must be "off" or "memory", got "{self.mode}"')
        if self.margin_mb < 0:
            raise fatal_error(f"{where}.marginMb: must be >= 0, got {self.margin_mb}")
        if self.sample_step_mb <= 0:
            raise fatal_error(f"{where}.sampleStepMb: must be > 0, got {self.sample_step_mb}")
        return self


class PlacementModel(GoStruct):
    """`llamaswap-es: models: <id>`: what placement by memory needs to know about one model."""

    go_type: ClassVar[str] = "llamaswap-es model settings"
    footprint_mb: GoInt = Field(0, alias="footprintMb", json_schema_extra=_NOT_NEGATIVE)
    """Its total GPU memory need in MiB (declared: a measurement wins over it, it wins over a
    GGUF estimate); 0 = not declared."""
    devices: GoInt = Field(1, json_schema_extra=_POSITIVE)
    """How many GPUs it spans (the need per GPU is footprintMb / devices)."""
    priority: GoInt = 0
    """Eviction priority: a model of lower priority is evicted first to make room, then the
    least recently used."""
    devices_env: GoStr = Field(DEFAULT_DEVICES_ENV, alias="devicesEnv")
    """The environment variable that tells its runtime which GPUs to use
    (`CUDA_VISIBLE_DEVICES`, `HIP_VISIBLE_DEVICES` …); "" = never set one."""

    @model_validator(mode="before")
    @classmethod
    def _known_keys_only(cls, data: Any) -> Any:
        _known_keys(cls, data, "")  # the loader's location names the model
        return data


class LlamaSwapEsSettings(GoStruct):
    """Our own settings (`llamaswap-es:`); unknown keys here are errors, to catch typos."""

    model_config = ConfigDict(json_schema_extra={"additionalProperties": False})
    go: ClassVar[str] = "llamaswap-es settings"
    db: GoStr | None = None
    """Event-log path; the command line's --db wins."""
    synchronous: GoStr = Field("normal", json_schema_extra=_normal_or_full_schema)
    """SQLite durability: `normal` (default) or `full`."""
    probe_interval_ms: GoInt = Field(100, alias="probeIntervalMs", json_schema_extra=_POSITIVE)
    """Health-probe interval while a model starts, in ms (llama-swap: 1 s)."""
    starvation_bound_seconds: GoInt = Field(
        300, alias="starvationBoundSeconds", json_schema_extra=_NOT_NEGATIVE
    )
    """A request queued longer than this forces its swap; 0 keeps llama-swap's order."""
    queue_timeout_seconds: GoInt = Field(
        0, alias="queueTimeoutSeconds", json_schema_extra=_NOT_NEGATIVE
    )
    """A request still queued this long after it arrived is answered 503; 0 = off."""
    min_resident_seconds: GoInt = Field(
        0, alias="minResidentSeconds", json_schema_extra=_NOT_NEGATIVE
    )
    """A model ready for less than this is not evicted for a swap; 0 = off."""
    idle_model: GoStr = Field("", alias="idleModel")
    """A model (id or alias) loaded when a TTL unload leaves the GPU idle; "" = off. Resolved
    to its real id by the loader's normalisation."""
    start_backoff_seconds: GoInt = Field(
        2, alias="startBackoffSeconds", json_schema_extra=_NOT_NEGATIVE
    )
    """After a failed start the model is not started again for this long, doubling with each
    failure in a row; 0 = off (llama-swap's: start again for every request)."""
    start_backoff_max_seconds: GoInt = Field(
        60, alias="startBackoffMaxSeconds", json_schema_extra=_NOT_NEGATIVE
    )
    """Where the doubling stops (at least startBackoffSeconds; unset, raised to it)."""
    max_request_body_mb: GoInt = Field(32, alias="maxRequestBodyMB", json_schema_extra=_POSITIVE)
    """Largest request body accepted, in MB."""
    shutdown_timeout_seconds: GoInt = Field(
        30, alias="shutdownTimeoutSeconds", json_schema_extra=_NOT_NEGATIVE
    )
    """Grace for stopping models on shutdown before they are killed."""
    event_stream_buffer_kib: GoInt = Field(
        4096, alias="eventStreamBufferKiB", json_schema_extra=_POSITIVE
    )
    """How far one UI event stream (`/api/events`) may fall behind before it is dropped, in KiB
    (the tab reconnects and reloads its state): bounds what a tab that stopped reading holds."""
    event_retention_days: int = Field(
        DEFAULT_EVENT_RETENTION_DAYS, alias="eventRetentionDays", ge=0
    )
    """Events older than this many days are pruned, in steps anchored on reducer snapshots;
    0 keeps them forever. On by default so that a busy server's log stays bounded."""
    event_pack_rows: int = Field(DEFAULT_EVENT_PACK_ROWS, alias="eventPackRows", ge=0)
    """Request events every projection has applied are packed (compressed) this many rows to a
    pack, once the newest as many stay rows; 0 turns packing off (docs/configuration.md)."""
    activity_retention_days: int = Field(
        DEFAULT_ACTIVITY_RETENTION_DAYS, alias="activityRetentionDays", ge=0
    )
    """Activity rows older than this many days are deleted; 0 keeps them forever (as llama-swap
    does). By default kept longer than the raw events they were folded from."""
    hang_detection: HangDetectionSettings = Field(
        default_factory=HangDetectionSettings, alias="hangDetection"
    )
    """How a serving model is watched for a hang (probes while ready); on by default."""
    allowed_hosts: GoStrList = Field(default_factory=list, alias="allowedHosts")
    """Host names (besides loopback names and IP addresses) under which the admin API and UI
    answer; `*.domain` for its subdomains, `*` for any (behind a reverse proxy that checks it)."""
    allowed_origins: GoStrList = Field(default_factory=list, alias="allowedOrigins")
    """Web origins (`scheme://host[:port]`) whose pages may call the admin API cross-origin."""

    @field_validator("allowed_hosts", "allowed_origins", mode="after")
    @classmethod
    def _browser_access(cls, entries: list[str], info: ValidationInfo) -> list[str]:
        """Each entry normalised to what the request header is compared with; one that could
        never match is refused with what to write instead."""
        hosts = info.field_name == "allowed_hosts"
        normalize = normalize_allowed_host if hosts else normalize_allowed_origin
        key = "allowedHosts" if hosts else "allowedOrigins"
        normalized: list[str] = []
        for index, entry in enumerate(entries):
            try:
                normalized.append(normalize(entry))
            except AccessEntryError as exc:
                raise fatal_error(f"{key}[{index}]: {exc}") from None
        return list(dict.fromkeys(normalized))
    placement: PlacementSettings = Field(default_factory=PlacementSettings)
    """Placing models by GPU memory (`mode: memory`); off by default."""
    models: Annotated[dict[str, PlacementModel], struct_map(PlacementModel)] = Field(
        default_factory=dict
    )
    """Per model (id or alias): its declared GPU footprint, span and eviction priority."""
    node_name: GoStr = Field("", alias="nodeName")
    """This server's name in the fleet's history; "" = the host name (`effective_node_name`)."""
    history_database: GoStr = Field("", alias="historyDatabase")
    """Where the history sink writes: a database URL; "" = this node's own event-log file."""
    history_sink: GoBool = Field(True, alias="historySink")
    """False turns the history sink off (nothing is written to any history database)."""

    @field_validator("event_pack_rows", mode="before")
    @classmethod
    def _pack_rows(cls, value: Any) -> int:
        """0 (off) or a block big enough to compress; a bool or fraction is refused."""
        if isinstance(value, bool) or not isinstance(value, int):
            shown = "a collection" if isinstance(value, dict | list) else go_format_value(value)
            raise fatal_error(f"must be a whole number of rows (0 turns packing off), got {shown}")
        if value != 0 and value < MIN_EVENT_PACK_ROWS:
            raise fatal_error(
                f"must be 0 (off) or at least {MIN_EVENT_PACK_ROWS} rows (smaller packs barely "
                f"compress), got {value}"
            )
        return value

    @field_validator("event_retention_days", "activity_retention_days", mode="before")
    @classmethod
    def _whole_days(cls, value: Any) -> int:
        """Retention deletes data: a value YAML would truncate (1.5) or a bool is refused."""
        # The error's location (the loader prefixes it) names the key: `llamaswap-es.<key>`.
        if isinstance(value, bool) or not isinstance(value, int):
            shown = "a collection" if isinstance(value, dict | list) else go_format_value(value)
            raise fatal_error(f"must be a whole number of days (0 keeps everything), got {shown}")
        if value < 0:
            raise fatal_error(f"must be >= 0 (0 keeps everything), got {value}")
        return value

    @model_validator(mode="before")
    @classmethod
    def _known_keys_only(cls, data: Any) -> Any:
        if isinstance(data, dict):
            known = {(f.alias or n) for n, f in cls.model_fields.items()}
            for key in data:
                if key not in known:
                    raise fatal_error(
                        f'{OUR_SECTION}: unknown setting "{key}" (valid: '
                        f"{', '.join(sorted(known))})"
                    )
        return data

    @model_validator(mode="after")
    def _ranges(self) -> LlamaSwapEsSettings:
        if self.synchronous.lower() not in ("normal", "full"):
            raise fatal_error(
                f'{OUR_SECTION}.synchronous: must be "normal" or "full", got "{self.synchronous}"'
            )
        self.synchronous = self.synchronous.lower()
        try:
            self.node_name = check_node_name(self.node_name)
        except HistorySettingError as exc:
            raise fatal_error(f"{OUR_SECTION}.nodeName: {exc}") from None
        self.history_database = self.history_database.strip()
        if self.history_database:
            try:
                parse_history_url(self.history_database)
            except HistorySettingError as exc:
                raise fatal_error(f"{OUR_SECTION}.historyDatabase: {exc}") from None
        positive = {
            "probeIntervalMs": self.probe_interval_ms,
            "maxRequestBodyMB": self.max_request_body_mb,
            "eventStreamBufferKiB": self.event_stream_buffer_kib,
        }
        for key, value in positive.items():
            if value <= 0:
                raise fatal_error(f"{OUR_SECTION}.{key}: must be > 0, got {value}")
        non_negative = {
            "starvationBoundSeconds": self.starvation_bound_seconds,
            "queueTimeoutSeconds": self.queue_timeout_seconds,
            "minResidentSeconds": self.min_resident_seconds,
            "shutdownTimeoutSeconds": self.shutdown_timeout_seconds,
            "startBackoffSeconds": self.start_backoff_seconds,
            "startBackoffMaxSeconds": self.start_backoff_max_seconds,
        }
        for key, value in non_negative.items():
            if value < 0:
                raise fatal_error(f"{OUR_SECTION}.{key}: must be >= 0, got {value}")
        self._check_backoff()
        return self

    def _check_backoff(self) -> None:
        """The cap must not be below the first window; left unset, it grows to fit it."""
        first, cap = self.start_backoff_seconds, self.start_backoff_max_seconds
        if "start_backoff_max_seconds" not in self.model_fields_set:
            self.start_backoff_max_seconds = max(cap, first)
        elif first > 0 and cap < first:
            raise fatal_error(
                f"{OUR_SECTION}.startBackoffMaxSeconds: must be >= startBackoffSeconds "
                f"({first}), got {cap}"
            )


# ------------------------------------------------------------------------------------------
# the whole file


class LlamaSwapConfig(GoStruct):
    """A whole configuration: llama-swap's keys (spec §6) and our section."""

    go_type: ClassVar[str] = "config.Config"
    health_check_timeout: GoInt = Field(120, alias="healthCheckTimeout")
    log_level: GoStr = Field("info", alias="logLevel")
    log_time_format: GoStr = Field("", alias="logTimeFormat")
    log_to_stdout: GoStr = Field(
        "proxy", alias="logToStdout", json_schema_extra={"enum": [*LOG_TO_STDOUT, None]}
    )
    log_requests: GoBool = Field(False, alias="logRequests")
    metrics_max_in_memory: GoInt = Field(1000, alias="metricsMaxInMemory")
    capture_buffer: GoInt = Field(5, alias="captureBuffer")
    store: StoreConfig | None = None
    ui: UIConfig = Field(default_factory=UIConfig)
    performance: Performance = Field(default_factory=Performance)
    start_port: GoInt = Field(5800, alias="startPort")
    send_loading_state: GoBool = Field(False, alias="sendLoadingState")
    include_aliases_in_list: GoBool = Field(False, alias="includeAliasesInList")
    global_ttl: GoInt = Field(0, alias="globalTTL")
    unload_timeout: GoInt = Field(10, alias="unloadTimeout")
    macros: GoAnyMap = Field(default_factory=dict)
    api_keys: GoStrList = Field(default_factory=list, alias="apiKeys")
    upstream: Upstream = Field(default_factory=Upstream)
    models: Annotated[dict[str, ModelConfig], struct_map(ModelConfig)] = Field(default_factory=dict)
    profiles: Annotated[dict[str, ProfileConfig], struct_map(ProfileConfig)] = Field(
        default_factory=dict
    )
    selectors: Annotated[dict[str, SelectorConfig], struct_map(SelectorConfig)] = Field(
        default_factory=dict
    )
    hooks: Hooks = Field(default_factory=Hooks)
    routing: RoutingConfig = Field(default_factory=RoutingConfig)
    groups: Annotated[dict[str, GroupConfig], struct_map(GroupConfig)] = Field(default_factory=dict)
    matrix: MatrixConfig | None = None
    peers: Annotated[dict[str, PeerConfig], struct_map(PeerConfig)] = Field(default_factory=dict)
    llamaswap_es: LlamaSwapEsSettings = Field(
        default_factory=LlamaSwapEsSettings, alias=OUR_SECTION
    )

    # Filled in by the loader's normalisation (not YAML keys).
    alias_table: SkipJsonSchema[dict[str, str]] = Field(
        default_factory=dict, exclude=True, alias="\x00aliases"
    )
    """alias → real model id, explicit and setParamsByID-generated aliases alike."""
    sources: SkipJsonSchema[tuple[str, ...]] = Field(default=(), exclude=True, alias="\x00sources")
    """The files this configuration was read from, in merge order."""
    warnings: SkipJsonSchema[tuple[str, ...]] = Field(
        default=(), exclude=True, alias="\x00warnings"
    )
    """What the loader wants said once about a config it accepted (check-config prints them,
    the server logs them at start and when a reload brings a new one)."""
    auto_ports: SkipJsonSchema[dict[str, AutoPort]] = Field(
        default_factory=dict, exclude=True, alias="\x00autoPorts"
    )
    """Models whose port `${PORT}` chose, with their texts before it (config/auto_port.py)."""
