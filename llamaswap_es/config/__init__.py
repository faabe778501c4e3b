"""llama-swap's configuration, loaded as llama-swap loads it, and the scheduler's view of it.

config = load_config("config.yaml", None)          # ConfigError on any problem
schedule = build_schedule(config)                   # SchedulerConfig for ConfigApplied
print(json.dumps(config_as_json(config)))           # API keys masked
"""

from llamaswap_es.config.loader import config_sources, load_config
from llamaswap_es.config.models import LlamaSwapConfig, LlamaSwapEsSettings, ModelConfig
from llamaswap_es.config.namespace import NameResolver
from llamaswap_es.config.scheduling import (
    build_schedule,
    config_as_json,
    config_hash,
    model_fingerprint,
)

__all__ = [
    "LlamaSwapConfig",
    "LlamaSwapEsSettings",
    "ModelConfig",
    "NameResolver",
    "build_schedule",
    "config_as_json",
    "config_hash",
    "config_sources",
    "load_config",
    "model_fingerprint",
]
