"""What the executor needs to run one model's upstream, and llama-swap's `cmd` tokenisation.

The config loader builds a `ProcessSpec` per model (with `${PORT}` and macros already
substituted); the executor turns it into an argv only when the process is started, as llama-swap
does (spec/config.md §8.1), so a bad `cmd` fails that model's start and nothing else.
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from urllib.parse import urlsplit

from llamaswap_es.config.auto_port import AutoPort
from llamaswap_es.errors import ProcessError

ENV_TAG_VAR = "LLAMASWAP_ES_TAG"
"""Environment variable carrying `<env_tag>:<model>:<instance>` in every process we spawn, so a
child whose pid never reached the log can still be found after a crash (ARCHITECTURE §6)."""

_DEFAULT_PORTS = {"http": 80, "https": 443}


def join_command_lines(raw: str) -> str:
    """Drop `#` comment lines and join trailing-backslash continuations (config.md §8.1 step 2)."""
    lines: list[str] = []
    for line in raw.split("\n"):
        trimmed = line.strip()
        if trimmed.startswith("#"):
            continue
        if trimmed.endswith("\\"):
            lines.append(trimmed[:-1] + " ")
        else:
            lines.append(line)
    return "\n".join(lines)


def split_command(raw: str, *, model_id: str, what: str = "cmd") -> list[str]:
    """Split a llama-swap command line into argv like a POSIX shell (no expansion, no pipes).

    Raises `ProcessError` naming the model when the command is empty or cannot be parsed (an
    unterminated quote), so the user sees which model's `cmd` to fix.
    """
    try:
        argv = shlex.split(join_command_lines(raw), comments=False, posix=True)
    except ValueError as exc:
        raise ProcessError(f"model {model_id!r}: cannot parse {what} {raw!r}: {exc}") from None
    if not argv:
        raise ProcessError(f"model {model_id!r}: empty command in {what}")
    return argv


def stop_command(cmd_stop: str, pid: int, *, model_id: str) -> list[str] | None:
    """`cmdStop` with `${PID}` replaced, as argv; None when unset, `ProcessError` when bad."""
    if not cmd_stop.strip():
        return None
    return split_command(cmd_stop.replace("${PID}", str(pid)), model_id=model_id, what="cmdStop")


def _frozen_env(env: Mapping[str, str]) -> Mapping[str, str]:
    return MappingProxyType(dict(env))


@dataclass(frozen=True, slots=True, kw_only=True)
class ProcessSpec:
    """One model's upstream as the executor runs it.

    `cmd` and `cmd_stop` are the raw strings from the config (tokenised at start/stop time);
    `cmd_stop` may contain `${PID}`. `env` holds the model's extra variables (added to the
    server's own environment). `check_endpoint` is a path, or "none" to skip health checks.
    """

    model_id: str
    cmd: str
    proxy: str
    cmd_stop: str = ""
    env: Mapping[str, str] = field(default_factory=dict)
    check_endpoint: str = "/health"
    health_check_timeout_ms: int = 120_000
    cwd: str | None = None
    auto_port: AutoPort | None = None
    """Set when `${PORT}` chose this model's port: it may then move to a free one at start."""
    spare_ports_from: int | None = None
    """Where a moved port is searched from: above every port `${PORT}` handed out."""
    devices_env: str = "CUDA_VISIBLE_DEVICES"
    """The variable that names the GPUs placement chose to this model's runtime
    (`llamaswap-es.models.<id>.devicesEnv`); "" = never set one."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "env", _frozen_env(self.env))

    def __hash__(self) -> int:
        return hash((self.model_id, self.cmd, self.proxy, self.cmd_stop, self.check_endpoint))

    def argv(self) -> list[str]:
        """The command to spawn; `ProcessError` naming the model if `cmd` is empty or bad."""
        return split_command(self.cmd, model_id=self.model_id, what="cmd")

    def stop_argv(self, pid: int) -> list[str] | None:
        """The `cmdStop` argv with `${PID}` replaced, or None when it is unset.

        Raises `ProcessError` when set but unparsable (the caller falls back to SIGTERM, as
        llama-swap does).
        """
        return stop_command(self.cmd_stop, pid, model_id=self.model_id)

    def on_port(self, port: int) -> ProcessSpec:
        """This spec with its `${PORT}` texts rendered for `port` (itself when not movable)."""
        if self.auto_port is None or port == self.port:
            return self
        cmd, proxy, check_endpoint, cmd_stop = self.auto_port.render(port)
        return replace(
            self, cmd=cmd, proxy=proxy, check_endpoint=check_endpoint, cmd_stop=cmd_stop
        )

    def on_devices(self, devices: tuple[int, ...], uuids: tuple[str, ...] = ()) -> ProcessSpec:
        """This spec with the GPUs placement chose in its environment (`StartProcess.devices`).

        `CUDA_VISIBLE_DEVICES` gets the GPUs' UUIDs when the sample knew them (they do not
        depend on enumeration order), else their NVML indexes with `CUDA_DEVICE_ORDER=PCI_BUS_ID`
        so CUDA counts them as NVML does; another variable (`HIP_VISIBLE_DEVICES` …) gets the
        indexes. Nothing changes when no devices were chosen, when `devicesEnv` is "", or when
        the model's own `env` already sets the variable (the config pins its GPUs)."""
        name = self.devices_env
        if not devices or not name or name in self.env:
            return self
        env = dict(self.env)
        if name == "CUDA_VISIBLE_DEVICES" and len(uuids) == len(devices) and all(uuids):
            env[name] = ",".join(uuids)
        else:
            env[name] = ",".join(str(d) for d in devices)
            if name == "CUDA_VISIBLE_DEVICES":
                env.setdefault("CUDA_DEVICE_ORDER", "PCI_BUS_ID")
        return replace(self, env=env)

    @property
    def skips_health_check(self) -> bool:
        return self.check_endpoint.strip() == "none"

    @property
    def health_url(self) -> str:
        """`proxy` joined with `checkEndpoint` with exactly one slash between them."""
        return join_url(self.proxy, self.check_endpoint.strip())

    @property
    def port(self) -> int | None:
        """The port requests go to (explicit, or the scheme's default); None if unparsable."""
        return proxy_port(self.proxy)


def join_url(base: str, path: str) -> str:
    """Join a base URL and a path with one slash, like Go's reverse proxy does."""
    if not path:
        return base
    return base.rstrip("/") + "/" + path.lstrip("/")


def proxy_port(proxy: str) -> int | None:
    try:
        parts = urlsplit(proxy)
        return parts.port if parts.port is not None else _DEFAULT_PORTS.get(parts.scheme)
    except ValueError:
        return None
