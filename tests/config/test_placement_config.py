"""`llamaswap-es: placement` and `llamaswap-es: models`: what reaches the scheduler, and every
bad value refused with the key and the model it concerns."""

from __future__ import annotations

import pytest

from llamaswap_es.config.schedule import ModelSchedule, PlacementRules, SchedulerConfig
from llamaswap_es.config.scheduling import build_schedule
from llamaswap_es.errors import ConfigError
from tests.config.conftest import Loader

MODELS = """models:
  qwen:
    cmd: llama-server --port ${PORT}
    aliases: [q]
  mistral:
    cmd: llama-server --port ${PORT}
"""


def test_declared_footprints_and_the_mode_reach_the_schedule_by_real_id(load_yaml: Loader) -> None:
    config = load_yaml(
        MODELS
        + "llamaswap-es:\n"
        + "  placement: {mode: memory, marginMb: 1024, sampleStepMb: 128}\n"
        + "  models:\n"
        + "    q: {footprintMb: 46000, devices: 2, priority: 3, devicesEnv: HIP_VISIBLE_DEVICES}\n"
    )
    schedule = build_schedule(config)
    assert schedule.placement == PlacementRules(mode="memory", margin_mb=1024)
    qwen = schedule.models["qwen"]
    assert (qwen.footprint_mb, qwen.footprint_devices, qwen.placement_priority) == (46000, 2, 3)
    assert schedule.models["mistral"].footprint_mb == 0
    assert config.llamaswap_es.placement.sample_step_mb == 128
    assert config.llamaswap_es.models["qwen"].devices_env == "HIP_VISIBLE_DEVICES"
    assert SchedulerConfig.from_dict(schedule.to_dict()) == schedule


def test_placement_is_off_by_default_and_an_old_schedule_reads_the_same(load_yaml: Loader) -> None:
    schedule = build_schedule(load_yaml(MODELS))
    assert schedule.placement == PlacementRules(mode="off", margin_mb=512)
    data = schedule.to_dict()
    assert "placement" not in data  # a config without placement logs what it logged before
    assert "footprint_mb" not in data["models"]["qwen"]
    assert ModelSchedule.from_dict(data["models"]["qwen"]).footprint_mb == 0


@pytest.mark.parametrize(
    ("ours", "message"),
    [
        ("placement: {mode: vram}", 'llamaswap-es.placement.mode: must be "off" or "memory"'),
        ("placement: {marginMb: -1}", "llamaswap-es.placement.marginMb: must be >= 0, got -1"),
        ("placement: {sampleStepMb: 0}", "llamaswap-es.placement.sampleStepMb: must be > 0"),
        ("placement: {margin: 5}", 'llamaswap-es.placement: unknown setting "margin"'),
        ("models: {ghost: {footprintMb: 1}}", 'llamaswap-es.models.ghost: references unknown'),
        (
            "models: {qwen: {footprintMb: -5}}",
            "llamaswap-es.models.qwen.footprintMb: must be >= 0 (0 = not declared), got -5",
        ),
        ("models: {qwen: {devices: 0}}", "llamaswap-es.models.qwen.devices: must be >= 1, got 0"),
        (
            "models: {qwen: {footprintMb: 1}, q: {footprintMb: 2}}",
            'model "qwen" is already configured',
        ),
        ("models: {qwen: {vram: 1}}", 'at llamaswap-es.models.qwen: unknown setting "vram"'),
    ],
    ids=[
        "mode",
        "margin",
        "step",
        "typo",
        "unknown-model",
        "negative-footprint",
        "no-devices",
        "alias-twice",
        "model-typo",
    ],
)
def test_bad_placement_settings_are_refused_naming_the_key(
    load_yaml: Loader, ours: str, message: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        load_yaml(MODELS + "llamaswap-es:\n  " + ours + "\n")
    assert message in str(caught.value)
