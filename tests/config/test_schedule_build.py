"""`build_schedule`: the scheduler's view, fingerprints, hashes, and masked JSON output."""

from __future__ import annotations

import json

import pytest

from llamaswap_es.config import build_schedule, config_as_json, config_hash
from llamaswap_es.config.schedule import SchedulerConfig
from llamaswap_es.errors import ConfigError

BASE = (
    "healthCheckTimeout: 60\nglobalTTL: 30\napiKeys: [sekrit-key]\n"
    "llamaswap-es:\n  starvationBoundSeconds: 12\n  minResidentSeconds: 3\n"
    "models:\n  a:\n    cmd: srv ${PORT}\n    concurrencyLimit: 4\n    ttl: -1\n"
    "  b:\n    cmd: srv ${PORT}\n    aliases: [bee]\n    unloadTimeout: 7\n"
    "peers:\n  p:\n    proxy: http://x\n    apiKey: peer-sekrit\n    models: [r]\n"
)


def test_schedule_resolves_every_default(load_yaml) -> None:
    schedule = build_schedule(load_yaml(BASE))
    a, b = schedule.models["a"], schedule.models["b"]
    assert (a.concurrency_limit, a.ttl_ms, a.health_check_timeout_ms) == (4, 30_000, 60_000)
    assert (b.concurrency_limit, b.unload_timeout_ms) == (10, 7_000)
    assert (schedule.starvation_bound_ms, schedule.min_resident_ms) == (12_000, 3_000)
    assert schedule.shutdown_grace_ms == 30_000 and schedule.policy == "serial"
    assert schedule.queue_timeout_ms == 0  # off unless asked for
    assert SchedulerConfig.from_dict(schedule.to_dict()) == schedule


def test_queue_timeout_setting_reaches_the_scheduler(load_yaml) -> None:
    text = BASE.replace(
        "minResidentSeconds: 3\n", "minResidentSeconds: 3\n  queueTimeoutSeconds: 45\n"
    )
    schedule = build_schedule(load_yaml(text))
    assert schedule.queue_timeout_ms == 45_000
    assert SchedulerConfig.from_dict(schedule.to_dict()) == schedule


def test_a_schedule_logged_before_the_queue_timeout_existed_still_reads(load_yaml) -> None:
    old = build_schedule(load_yaml(BASE)).to_dict()
    del old["queue_timeout_ms"]
    assert SchedulerConfig.from_dict(old).queue_timeout_ms == 0


def test_start_backoff_is_on_by_default_and_reaches_the_scheduler(load_yaml) -> None:
    schedule = build_schedule(load_yaml(BASE))
    assert (schedule.start_backoff_ms, schedule.start_backoff_max_ms) == (2_000, 60_000)
    text = BASE.replace(
        "minResidentSeconds: 3\n", "minResidentSeconds: 3\n  startBackoffSeconds: 0\n"
    )
    assert build_schedule(load_yaml(text)).start_backoff_ms == 0  # off: llama-swap's behaviour
    text = BASE.replace(
        "minResidentSeconds: 3\n", "minResidentSeconds: 3\n  startBackoffSeconds: 90\n"
    )
    schedule = build_schedule(load_yaml(text))
    assert (schedule.start_backoff_ms, schedule.start_backoff_max_ms) == (90_000, 90_000)
    assert SchedulerConfig.from_dict(schedule.to_dict()) == schedule


def test_a_schedule_logged_before_the_start_backoff_existed_reads_as_off(load_yaml) -> None:
    old = build_schedule(load_yaml(BASE)).to_dict()
    del old["start_backoff_ms"], old["start_backoff_max_ms"]
    restored = SchedulerConfig.from_dict(old)
    assert (restored.start_backoff_ms, restored.start_backoff_max_ms) == (0, 0)


def test_idle_model_reaches_the_scheduler_as_a_real_id(load_yaml) -> None:
    assert build_schedule(load_yaml(BASE)).idle_model == ""  # off unless asked for
    text = BASE.replace("minResidentSeconds: 3\n", "minResidentSeconds: 3\n  idleModel: bee\n")
    schedule = build_schedule(load_yaml(text))
    assert schedule.idle_model == "b"  # the alias resolves to its model
    assert SchedulerConfig.from_dict(schedule.to_dict()) == schedule


def test_a_schedule_logged_before_the_idle_model_existed_still_reads(load_yaml) -> None:
    old = build_schedule(load_yaml(BASE)).to_dict()
    del old["idle_model"]
    assert SchedulerConfig.from_dict(old).idle_model == ""


def test_fingerprint_changes_only_with_process_settings(load_yaml) -> None:
    before = build_schedule(load_yaml(BASE)).models
    routing_only = BASE.replace("aliases: [bee]", "aliases: [bee, buzz]\n    description: x")
    after = build_schedule(load_yaml(routing_only)).models
    assert after["b"].fingerprint == before["b"].fingerprint
    changed = build_schedule(load_yaml(BASE.replace("  b:\n    cmd: srv", "  b:\n    cmd: srv2")))
    assert changed.models["b"].fingerprint != before["b"].fingerprint
    assert changed.models["a"].fingerprint == before["a"].fingerprint


def test_unknown_group_member_stops_the_server(load_yaml) -> None:
    config = load_yaml(BASE + "groups:\n  g:\n    members: [ghost]\n")
    with pytest.raises(ConfigError) as caught:
        build_schedule(config)
    assert caught.value.message == 'no model config for "ghost"'
    assert caught.value.key_path == "routing.router.settings.groups.g.members[0]"


def test_json_masks_secrets_and_hash_is_stable(load_yaml) -> None:
    config = load_yaml(BASE + "macros:\n  k: sekrit-key\n")
    text = json.dumps(config_as_json(config))
    assert "sekrit" not in text and '"***"' in text
    assert config_hash(config) == config_hash(load_yaml(BASE + "macros:\n  k: sekrit-key\n"))
    assert config_hash(config) != config_hash(load_yaml(BASE))
