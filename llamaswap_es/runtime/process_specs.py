"""From a loaded model entry to what the executor needs to run it.

The config loader has already substituted every macro (`${PORT}` included) except `${PID}` in
`cmdStop`, so this is a plain translation: llama-swap's `env` list of `NAME=value` strings becomes
a mapping, and the global `healthCheckTimeout` (seconds) becomes the spec's milliseconds.
"""

from __future__ import annotations

from llamaswap_es.config import LlamaSwapConfig, ModelConfig
from llamaswap_es.errors import ProcessError
from llamaswap_es.runtime.process_spec import ProcessSpec


def env_mapping(model_id: str, entries: list[str]) -> dict[str, str]:
    """llama-swap's `env: ["NAME=value", …]`; a later entry for the same name wins."""
    env: dict[str, str] = {}
    for entry in entries:
        name, sep, value = entry.partition("=")
        if not sep or not name:
            raise ProcessError(f"model {model_id!r}: env entry {entry!r} is not NAME=value")
        env[name] = value
    return env


def process_spec(config: LlamaSwapConfig, model_id: str) -> ProcessSpec:
    model: ModelConfig = config.models[model_id]
    auto = config.auto_ports.get(model_id)
    if auto is not None and auto.render(auto.port) != (
        model.cmd, model.proxy, model.check_endpoint, model.cmd_stop
    ):
        auto = None  # the texts were changed after `${PORT}` (normalised): keep the port
    spare_from = max((a.port for a in config.auto_ports.values()), default=0) + 1
    return ProcessSpec(
        model_id=model_id,
        cmd=model.cmd,
        proxy=model.proxy,
        cmd_stop=model.cmd_stop,
        env=env_mapping(model_id, list(model.env)),
        check_endpoint=model.check_endpoint,
        health_check_timeout_ms=config.health_check_timeout * 1000,
        auto_port=auto,
        spare_ports_from=spare_from if auto is not None else None,
        **_devices_env(config, model_id),
    )


def _devices_env(config: LlamaSwapConfig, model_id: str) -> dict[str, str]:
    """The model's `llamaswap-es.models.<id>.devicesEnv`, when it has an entry there."""
    placed = config.llamaswap_es.models.get(model_id)
    return {} if placed is None else {"devices_env": placed.devices_env.strip()}
