"""`serial` is the default scheduler; a config that relied on fifo's co-residency is told so once,
with the one YAML line that keeps llama-swap's behaviour, and that line does keep it."""

from __future__ import annotations

from pathlib import Path

import pytest

from llamaswap_es.config import build_schedule
from llamaswap_es.config.policy_registry import policy_names
from llamaswap_es.errors import ConfigError
from tests.config.conftest import Loader
from tests.config.test_cli import _run

M = "models:\n  a:\n    cmd: srv --port ${PORT}\n  b:\n    cmd: srv --port ${PORT}\n"
"""Two valid models, to add routing to."""

WARNED = "routing.scheduler.use is not set"


def _warning(config) -> str:  # type: ignore[no-untyped-def]
    found = [w for w in config.warnings if WARNED in w]
    assert len(found) == 1, config.warnings
    return found[0]


def test_a_config_without_a_scheduler_is_scheduled_serially_and_quietly(load_yaml: Loader) -> None:
    config = load_yaml(M)
    assert config.routing.scheduler.use == "serial"
    assert build_schedule(config).policy == "serial"
    assert config.warnings == ()


def test_fifo_is_one_line_away(load_yaml: Loader) -> None:
    config = load_yaml(M + "routing: {scheduler: {use: fifo}}\n")
    assert build_schedule(config).policy == "fifo"


def test_a_group_that_runs_models_together_is_warned_and_the_named_line_restores_fifo(
    load_yaml: Loader,
) -> None:
    text = M + "groups:\n  together:\n    swap: false\n    members: [a, b]\n"
    warning = _warning(load_yaml(text))
    assert 'group "together" has swap: false' in warning
    assert '"serial" scheduler is used' in warning and "one loaded model at a time" in warning
    line = "routing: {scheduler: {use: fifo}}"
    assert warning.endswith(f"add this line at the top level: {line}")
    fixed = load_yaml(text + line + "\n")
    assert fixed.routing.scheduler.use == "fifo" and fixed.warnings == ()


def test_the_line_fits_a_config_that_already_has_a_routing_block(load_yaml: Loader) -> None:
    text = (
        M + "routing:\n  router:\n    settings:\n      groups:\n"
        "        keep:\n          persistent: true\n          members: [a]\n"
    )
    warning = _warning(load_yaml(text))
    assert 'group "keep" has persistent: true' in warning
    assert warning.endswith("add this line under routing: scheduler: {use: fifo}")
    fixed = load_yaml(text.replace("routing:\n", "routing:\n  scheduler: {use: fifo}\n"))
    assert fixed.routing.scheduler.use == "fifo" and fixed.warnings == ()


def test_fifo_priorities_without_a_scheduler_are_warned_about(load_yaml: Loader) -> None:
    text = M + "routing:\n  scheduler:\n    settings:\n      fifo:\n        priority: {a: 5}\n"
    warning = _warning(load_yaml(text))
    assert "routing.scheduler.settings.fifo.priority orders the queue" in warning
    assert warning.endswith("add this line under routing.scheduler: use: fifo")
    fixed = load_yaml(text.replace("  scheduler:\n", "  scheduler:\n    use: fifo\n"))
    assert fixed.routing.scheduler.use == "fifo" and fixed.warnings == ()


def test_a_matrix_is_warned_about_only_when_a_set_holds_several_models(load_yaml: Loader) -> None:
    alone = load_yaml(M + "matrix:\n  sets:\n    one: a | b\n")
    assert alone.warnings == ()  # one model at a time: serial loses nothing
    together = load_yaml(M + "matrix:\n  sets:\n    one: a | b\n    both: a & b\n")
    assert 'the matrix lets models run together (set "both")' in _warning(together)


def test_choosing_a_scheduler_silences_the_warning(load_yaml: Loader) -> None:
    text = "groups:\n  g:\n    exclusive: false\n    members: [a]\n"
    for use in ("serial", "fifo"):
        config = load_yaml(M + text + f"routing: {{scheduler: {{use: {use}}}}}\n")
        assert config.routing.scheduler.use == use and config.warnings == ()


def test_an_unknown_scheduler_names_every_registered_one(load_yaml: Loader) -> None:
    with pytest.raises(ConfigError) as caught:
        load_yaml(M + "routing: {scheduler: {use: lifo}}\n")
    assert caught.value.message.startswith(
        f'routing.scheduler.use: unknown scheduler "lifo" (valid: {", ".join(policy_names())});'
    )
    assert "(valid: fifo, serial)" in caught.value.message
    assert "llamaswap_es.policies" in caught.value.message  # how to add one
    assert caught.value.key_path == "routing.scheduler.use"


def test_check_config_says_it_once_on_stderr_and_keeps_stdout_json(tmp_path: Path) -> None:
    (tmp_path / "c.yaml").write_text(M + "groups:\n  g:\n    swap: false\n    members: [a, b]\n")
    done = _run("check-config", "--config", "c.yaml", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stderr.count(WARNED) == 1
    assert done.stderr.startswith("llamaswap-es: warning: routing.scheduler.use is not set")
    assert '"use": "serial"' in done.stdout
