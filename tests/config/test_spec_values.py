"""spec/config.md §17: configurations llama-swap accepts, and the values it gives them."""

from __future__ import annotations

from llamaswap_es.config import build_schedule
from llamaswap_es.config.schedule import GroupPlanner, MatrixPlanner


def test_empty_document_gets_llama_swaps_defaults(load_yaml) -> None:
    c = load_yaml("")
    assert (c.start_port, c.health_check_timeout, c.log_level, c.log_to_stdout) == (
        5800,
        120,
        "info",
        "proxy",
    )
    assert (c.metrics_max_in_memory, c.capture_buffer, c.global_ttl, c.unload_timeout) == (
        1000,
        5,
        0,
        10,
    )
    assert c.performance.every == 5_000_000_000 and not c.performance.disabled
    assert c.ui.activity.session_id == ["X-Session-ID", "X-Litellm-Session-Id"]
    assert c.routing.router.use == "group" and c.routing.scheduler.use == "serial"  # ours
    default = c.routing.router.settings.groups["(default)"]
    assert (default.swap, default.exclusive, default.persistent, default.members) == (
        True,
        True,
        False,
        [],
    )


def test_one_model_defaults(load_yaml) -> None:
    m = load_yaml("models:\n  model1:\n    cmd: path/to/cmd --port ${PORT}\n").models["model1"]
    assert (m.cmd, m.proxy, m.check_endpoint) == (
        "path/to/cmd --port 5800",
        "http://localhost:5800",
        "/health",
    )
    assert (m.ttl, m.unload_timeout, m.concurrency_limit, m.cmd_stop) == (0, 10, 0, "")
    t = m.timeouts
    assert (
        t.connect,
        t.keepalive,
        t.response_header,
        t.tls_handshake,
        t.expect_continue,
        t.idle_conn,
    ) == (30, 30, 0, 10, 1, 90)


def test_ports_are_given_in_byte_order_only_to_models_using_them(load_yaml) -> None:
    c = load_yaml(
        "startPort: 9000\nmodels:\n  model2:\n    cmd: b ${PORT}\n    proxy: http://1.2.3.4:${PORT}\n"
        "  author/model:F16:\n    cmd: a ${PORT}\n  model1:\n    cmd: c ${PORT}\n"
        "  fixed:\n    cmd: d --port 7\n    proxy: http://localhost:7\n"
    )
    assert c.models["author/model:F16"].cmd == "a 9000"
    assert c.models["model1"].cmd == "c 9001"
    assert c.models["model2"].proxy == "http://1.2.3.4:9002"
    assert c.models["fixed"].proxy == "http://localhost:7"


def test_folded_macro_and_comment_lines(load_yaml) -> None:
    c = load_yaml(
        "startPort: 9990\nmacros:\n  latest-llama: >\n    /user/llama-server\n    --port ${PORT}\n"
        "models:\n  m:\n    cmd: |\n      # ${latest-llama} is a macro\n      ${latest-llama}\n"
        "      --model /m.gguf\n"
    )
    assert " ".join(c.models["m"].cmd.split()) == "/user/llama-server --port 9990 --model /m.gguf"


def test_typed_macros_keep_their_types(load_yaml) -> None:
    c = load_yaml(
        "macros:\n  PORT_NUM: 10001\n  TEMP: 0.7\n  ENABLED: true\n  f: 1000000.0\n"
        "models:\n  m:\n    cmd: s ${PORT}\n    metadata:\n      port: ${PORT_NUM}\n"
        "      temp: '${TEMP}'\n      on: ${ENABLED}\n      msg: 'p ${PORT_NUM} t ${TEMP} f ${f}'\n"
        "      tags: ['model:${MODEL_ID}', 'port:${PORT}']\n      ${KEY}: literal\n"
    )
    meta = c.models["m"].metadata
    assert meta["port"] == 10001 and meta["temp"] == 0.7 and meta["on"] is True
    assert meta["msg"] == "p 10001 t 0.7 f 1e+06"
    assert meta["tags"] == ["model:m", "port:5800"]
    assert meta["${KEY}"] == "literal"


def test_model_macro_overrides_global_in_place(load_yaml) -> None:
    c = load_yaml(
        'macros:\n  tag: global\n  msg: "value-${tag}"\nmodels:\n  m:\n    macros:\n'
        "      tag: model-level\n    cmd: s ${msg} ${PORT}\n"
    )
    assert c.models["m"].cmd == "s value-model-level 5800"
    assert c.models["m"].macros == {"tag": "model-level"}


def test_pid_stays_literal_in_cmdStop(load_yaml) -> None:
    c = load_yaml(
        "macros:\n  stop: kill ${PID}\nmodels:\n  m:\n    cmd: s ${PORT}\n    cmdStop: ${stop}\n"
    )
    assert c.models["m"].cmd_stop == "kill ${PID}"


def test_env_macros(load_yaml) -> None:
    c = load_yaml(
        "# ${env.ONLY_IN_COMMENT}\nmodels:\n  m:\n"
        "    cmd: ${env.P}/srv ${PORT}  # ${env.TRAILING}\n"
        '    env:\n      - "Q=${env.Q}"\n      - P2=${env.Q}\n    proxy: http://localhost:${PORT}\n',
        {"P": "/opt/models", "Q": 'C:\\p"q'},
    )
    assert c.models["m"].cmd == "/opt/models/srv 5800"
    assert c.models["m"].env == ['Q=C:\\p"q', 'P2=C:\\\\p\\"q']


def test_ttl_unload_and_health_defaults(load_yaml) -> None:
    c = load_yaml(
        "globalTTL: 300\nunloadTimeout: 25\nhealthCheckTimeout: 5\nmodels:\n"
        "  a:\n    cmd: s ${PORT}\n  b:\n    cmd: s ${PORT}\n    ttl: 0\n    unloadTimeout: 45\n"
        "  c:\n    cmd: s ${PORT}\n    ttl: 5.9\n    healthCheckTimeout: 99\n"
    )
    assert [c.models[m].ttl for m in "abc"] == [300, 0, 5]
    assert [c.models[m].unload_timeout for m in "abc"] == [25, 45, 25]
    assert c.health_check_timeout == 15 and c.models["c"].health_check_timeout == 15


def test_performance_duration(load_yaml) -> None:
    assert load_yaml("performance:\n  every: 1m30s\n").performance.every == 90_000_000_000
    assert load_yaml("performance:\n  every: 0s\n").performance.every == 5_000_000_000


def test_set_params_by_id_auto_aliases_and_strip_params(load_yaml) -> None:
    c = load_yaml(
        'macros:\n  default_strip: "temperature, top_p"\nmodels:\n  m:\n    cmd: s ${PORT}\n'
        "    aliases: ['m:low']\n    filters:\n"
        '      stripParams: "model, top_k, top_k, ${default_strip}, , ,"\n'
        "      setParamsByID:\n        '${MODEL_ID}': {a: 0}\n        '${MODEL_ID}:high': {a: 1}\n"
        "        '${MODEL_ID}:low': {a: 2}\n        'm:${PORT}': {a: 3}\n"
    )
    m = c.models["m"]
    assert m.aliases == ["m:low", "m:high", "m:5800"]
    assert c.alias_table == {"m:low": "m", "m:high": "m", "m:5800": "m"}
    assert m.filters.sanitized_strip_params() == ["temperature", "top_k", "top_p"]


def test_yaml_v3_typing(load_yaml) -> None:
    c = load_yaml(
        "sendLoadingState: yes\nmodels:\n  m:\n    cmd: s ${PORT}\n    unlisted: 'yes'\n"
        "    aliases: [1, 2.50, 0x1F]\n    metadata: {w: yes, n: 017}\n"
        "  '123':\n    cmd: t ${PORT}\n"
    )
    m = c.models["m"]
    assert c.send_loading_state is True and m.unlisted is True
    assert m.aliases == ["1", "2.5", "31"]
    assert m.metadata == {"w": "yes", "n": 15}
    assert "123" in c.models
    assert load_yaml("models:\n  123:\n    cmd: s ${PORT}\n").models == {}


def test_null_entries_are_zero_objects(load_yaml) -> None:
    c = load_yaml("models:\n  m: ~\ngroups:\n  g: ~\n")
    assert c.models["m"].proxy == "" and c.models["m"].timeouts.connect == 0
    g = c.routing.router.settings.groups["g"]
    assert (g.swap, g.exclusive, g.persistent) == (False, False, False)


def test_comfyui_and_loading_state(load_yaml) -> None:
    c = load_yaml(
        "sendLoadingState: true\nmodels:\n  comfyui_auto:\n    cmd: s ${PORT}\n"
        "    concurrencyLimit: 10\n  other:\n    cmd: s ${PORT}\n    sendLoadingState: false\n"
    )
    comfy = c.models["comfyui_auto"]
    assert comfy.concurrency_limit == 50 and comfy.compat.ignore_websockets
    assert comfy.send_loading_state is True and c.models["other"].send_loading_state is False


def test_groups_and_default_group(load_yaml) -> None:
    c = load_yaml(
        "models:\n"
        + "".join(f"  {m}:\n    cmd: s ${{PORT}}\n" for m in ("model1", "model2", "model3"))
        + "groups:\n  forever:\n    exclusive: false\n    persistent: true\n    members: [model2]\n"
    )
    groups = c.routing.router.settings.groups
    assert groups["(default)"].members == ["model1", "model3"]
    assert groups["forever"].swap and not groups["forever"].exclusive
    schedule = build_schedule(c)
    assert isinstance(schedule.planner, GroupPlanner)
    assert [g.name for g in schedule.planner.groups] == ["(default)", "forever"]


def test_matrix_sets_in_yaml_v3_sorted_order(load_yaml) -> None:
    c = load_yaml(
        "models:\n"
        + "".join(f"  {m}:\n    cmd: s ${{PORT}}\n" for m in "abc")
        + 'matrix:\n  vars: {A: a}\n  evict_costs: {A: 3}\n  sets:\n    zeta: "A & b"\n'
        '    alpha: "a & c"\n    m10: "+alpha"\n    m9: "b"\n'
    )
    assert list(c.routing.router.settings.matrix.sets) == ["alpha", "m9", "m10", "zeta"]
    schedule = build_schedule(c)
    assert isinstance(schedule.planner, MatrixPlanner)
    assert [name for name, _ in schedule.planner.sets] == ["alpha", "m9", "m10", "zeta"]
    assert schedule.planner.evict_costs == (("A", 3),) and set(schedule.models) == {"a", "b", "c"}


def test_preload_cleanup_and_scheduler_priority(load_yaml) -> None:
    c = load_yaml(
        "models:\n  a:\n    cmd: s ${PORT}\n    aliases: [al]\n"
        "hooks:\n  on_startup:\n    preload: [' al ', '', unknown, a, a]\n"
        "routing:\n  scheduler:\n    use: serial\n    settings:\n      fifo:\n"
        "        priority: {al: 5}\n"
    )
    assert c.hooks.on_startup.preload == ["a", "a", "a"]
    schedule = build_schedule(c)
    assert schedule.policy == "serial"
    assert schedule.models["a"].priority == 0  # alias keys validate but do not apply


def test_profiles_selectors_and_peers_load(load_yaml) -> None:
    c = load_yaml(
        "models:\n  a:\n    cmd: s ${PORT}\n    aliases: [alias-a]\n  b:\n    cmd: s ${PORT}\n"
        "groups:\n  g:\n    swap: false\n    members: [a, b]\n"
        "peers:\n  p1:\n    proxy: http://192.168.1.23:8080/api\n    models: [shared, org/model]\n"
        "  p2:\n    proxy: http://h\n    models: [shared, unique]\n"
        "selectors:\n  s:\n    strategy: spillover\n    targets: [a, b, unique]\n"
        "profiles:\n  p:\n    pins:\n      x: s\n      y: ~\n      z: p1/org/model\n"
    )
    assert c.peers["p1"].timeouts.response_header == 60
    assert c.selectors["s"].settings.spillover == 1
    assert c.profiles["p"].pins == {"x": "s", "y": "", "z": "p1/org/model"}


def test_hang_detection_is_on_by_default_and_can_be_tuned_or_turned_off(load_yaml) -> None:
    default = load_yaml("models: {}\n").llamaswap_es.hang_detection
    assert default.enabled
    assert (default.probe_interval_ms, default.probe_timeout_ms) == (5_000, 5_000)
    assert default.failures_before_hung == 3
    tuned = load_yaml(
        "llamaswap-es:\n  hangDetection:\n    probeIntervalMs: 200\n    probeTimeoutMs: 300\n"
        "    failuresBeforeHung: 2\n"
    ).llamaswap_es.hang_detection
    assert (tuned.probe_interval_ms, tuned.probe_timeout_ms, tuned.failures_before_hung) == (
        200,
        300,
        2,
    )
    off = load_yaml("llamaswap-es:\n  hangDetection: {enabled: false}\n")
    assert not off.llamaswap_es.hang_detection.enabled
    assert load_yaml("llamaswap-es:\n  hangDetection: ~\n").llamaswap_es.hang_detection.enabled
