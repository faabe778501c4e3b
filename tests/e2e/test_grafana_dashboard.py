"""docs/grafana/ against a real Prometheus scraping a real server that serves traffic.

A dashboard or a rule naming a metric that does not exist (a typo, a renamed family, a label
that is not there) shows "No data" or never fires, silently. So Prometheus (Debian's package) is
started with its own config: it scrapes a running `llamaswap-es` every second and loads the rules
file; the server serves a stream of requests meanwhile, and every panel expression, every
template variable and every rule is evaluated through Prometheus's HTTP API.

How each kind is judged:

* Panels: Grafana's variables are replaced as Grafana sends them with "All" selected (`.*`) and
  `$__rate_interval` by a window sized to the 1 s scrape (`RATE_WINDOW`); each expression must
  return at least one sample with a finite value (a quantile over no observations would be NaN).
* Alert rules are `<series> <comparison> <threshold>` (the rules file promises it). Conditions the
  traffic can drive are driven and must be seen by Prometheus as alerts: a model that crashes on
  every request (crash loop) and one that fails to start (start failures). The others are false
  on a healthy server, and driving them (a full disk, a stuck loop, a 30 s queue, a dead server)
  is what other tests do against the server itself; here their series part, without the
  threshold, must return a sample: it proves the metric and labels the rule watches exist. Every
  rule must also be evaluated by Prometheus's rule manager without error.

The GPU panels read two fake cards: the machine has no NVIDIA GPU, so the server is given a
stand-in `pynvml` (tests/fixtures/fake_pynvml); sampling, `/metrics` and Prometheus are real.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import re
import subprocess
from typing import Any

import aiohttp
import pytest
import yaml

from tests.fixtures.prometheus import RunningPrometheus, promtool_binary, wait_ready
from tests.fixtures.server import REPO_ROOT, config_text, fake_model

GRAFANA_DIR = REPO_ROOT / "docs" / "grafana"
DASHBOARD = GRAFANA_DIR / "llamaswap-es-dashboard.json"
RULES = GRAFANA_DIR / "llamaswap-es-rules.yml"
README = GRAFANA_DIR / "README.md"
FAKE_PYNVML = REPO_ROOT / "tests" / "fixtures" / "fake_pynvml"

RATE_WINDOW = "20s"
"""`$__rate_interval` for a 1 s scrape: Grafana makes it at least 4 scrape intervals; this one
also holds a few request cycles of the traffic below, so quantiles have observations."""
GRAFANA_ALL = {"$__rate_interval": RATE_WINDOW, "$job": ".*", "$instance": ".*", "$model": ".*"}
THRESHOLD = re.compile(r"^(?P<series>.*?)\s*(?:>=|<=|==|!=|>|<)\s*[-+0-9.e]+\s*$", re.DOTALL)
EVALUATION_TIMEOUT_S = 90.0
DRIVEN_ALERTS = {"LlamaswapEsModelCrashLoop": "crashy", "LlamaswapEsModelStartFailures": "broken"}


def load_dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text())


def load_rules() -> list[dict[str, Any]]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


def grafana_expr(expr: str) -> str:
    """The expression Grafana sends with "All" selected; an unknown variable fails here."""
    for name in sorted(GRAFANA_ALL, key=len, reverse=True):
        expr = expr.replace(name, GRAFANA_ALL[name])
    assert "$" not in expr, f"a dashboard variable the test does not know: {expr}"
    return expr


def panel_queries(dashboard: dict[str, Any]) -> dict[str, str]:
    """`panel title [refId]` → the expression as Grafana sends it."""
    return {
        f"{panel['title']} [{target['refId']}]": grafana_expr(target["expr"])
        for panel in dashboard["panels"]
        for target in panel.get("targets", [])
    }


def series_part(rule: dict[str, Any]) -> str:
    match = THRESHOLD.match(rule["expr"].strip())
    assert match, f"{rule['alert']}: the expression is not `<series> <comparison> <threshold>`"
    return match.group("series")


def test_promtool_accepts_the_rules_file() -> None:
    checked = subprocess.run(
        [promtool_binary(), "check", "rules", str(RULES)], capture_output=True, text=True
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"SUCCESS: {len(load_rules())} rules found" in checked.stdout


def test_the_dashboard_is_well_formed_and_every_panel_is_described() -> None:
    dashboard = load_dashboard()
    panels = dashboard["panels"]
    ids = [panel["id"] for panel in panels]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    readme = README.read_text()
    for panel in panels:
        box = panel["gridPos"]
        assert box["x"] + box["w"] <= 24, f"{panel['title']} is wider than the grid"
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        assert panel["targets"], f"{panel['title']} has no query"
        assert len({t["refId"] for t in panel["targets"]}) == len(panel["targets"])
        assert f"**{panel['title']}**" in readme, f"README does not describe {panel['title']!r}"
    for rule in load_rules():
        assert f"**{rule['alert']}**" in readme, f"README does not describe {rule['alert']!r}"


async def _traffic(base_url: str, models: list[str]) -> None:
    """One request after another, cycling through the models (each one is a swap) until
    cancelled; failures are what the crashing and the broken model are for, so they are
    expected and ignored."""
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(timeout=timeout) as http:
        while True:
            for model in models:
                body = {"model": model, "messages": [{"role": "user", "content": "hi"}]}
                try:
                    async with http.post(f"{base_url}/v1/chat/completions", json=body) as resp:
                        await resp.read()
                except (aiohttp.ClientError, TimeoutError):
                    pass


async def _unmet(
    prometheus: RunningPrometheus, http: aiohttp.ClientSession, checks: dict[str, str]
) -> dict[str, str]:
    """The checks (name → expression) whose result has no finite sample, with what came back."""
    unmet = {}
    for name, expr in checks.items():
        result = await prometheus.query(http, expr)
        if not any(math.isfinite(float(sample["value"][1])) for sample in result):
            unmet[name] = f"{expr}\n    → {result}"
    return unmet


async def _wait_for_samples(
    prometheus: RunningPrometheus, http: aiohttp.ClientSession, checks: dict[str, str]
) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + EVALUATION_TIMEOUT_S
    while unmet := await _unmet(prometheus, http, checks):
        if loop.time() > deadline:
            listed = "\n".join(f"  {name}: {detail}" for name, detail in unmet.items())
            raise AssertionError(f"no finite sample within {EVALUATION_TIMEOUT_S}s:\n{listed}")
        await asyncio.sleep(0.5)


async def _template_variables_have_values(
    prometheus: RunningPrometheus, http: aiohttp.ClientSession, dashboard: dict[str, Any]
) -> None:
    for variable in dashboard["templating"]["list"]:
        if variable["type"] != "query":
            continue
        match = re.fullmatch(r"label_values\((?P<selector>.+),\s*(?P<label>\w+)\)",
                             variable["definition"])  # fmt: skip
        assert match, f"${variable['name']}: expected label_values(selector, label)"
        selector, label = grafana_expr(match["selector"]), match["label"]
        values = await prometheus.api(http, f"label/{label}/values", **{"match[]": selector})
        assert values, f"${variable['name']}: no {label} values for {selector}"


async def _rules_evaluate_and_driven_alerts_fire(
    prometheus: RunningPrometheus, http: aiohttp.ClientSession
) -> None:
    """Every rule evaluated by the rule manager without error; the driven alerts active."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + EVALUATION_TIMEOUT_S
    while True:
        groups = (await prometheus.api(http, "rules"))["groups"]
        rules = {rule["name"]: rule for group in groups for rule in group["rules"]}
        errors = {name: r.get("lastError") for name, r in rules.items() if r.get("lastError")}
        assert not errors, f"rules that Prometheus cannot evaluate: {errors}"
        alerts = (await prometheus.api(http, "alerts"))["alerts"]
        active = {(a["labels"]["alertname"], a["labels"].get("model")) for a in alerts}
        waiting = {
            "not evaluated yet": [n for n, r in rules.items() if r["health"] != "ok"],
            "not active": [(n, m) for n, m in DRIVEN_ALERTS.items() if (n, m) not in active],
        }
        if not any(waiting.values()):
            return
        if loop.time() > deadline:
            raise AssertionError(f"after {EVALUATION_TIMEOUT_S}s: {waiting}; alerts: {alerts}")
        await asyncio.sleep(0.5)


@pytest.mark.timeout(240)
async def test_every_panel_and_rule_evaluates_on_a_server_with_traffic(
    server_factory, prometheus_factory
) -> None:
    models = [
        fake_model("alpha", "--tokens", "5"),
        fake_model("beta", "--tokens", "5"),
        fake_model("crashy", "--exit-during-request"),
        fake_model("broken", "--fail-at-start"),
    ]
    server = server_factory(
        config_text(models, header="performance:\n  every: 5s"),
        env={"PYTHONPATH": f"{FAKE_PYNVML}:{REPO_ROOT}"},
    )
    prometheus: RunningPrometheus = prometheus_factory(
        targets={"llamaswap-es": f"127.0.0.1:{server.port}"}, rule_files=[RULES]
    )
    dashboard = load_dashboard()
    rules = load_rules()
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http:
        await wait_ready(prometheus, http)
        # The counters' first sample (0) is scraped before any crash, so `increase()` sees all.
        await _wait_for_samples(
            prometheus, http, {"first scrape": 'llamaswap_es_model_crashes_total{model="crashy"}'}
        )
        traffic = asyncio.create_task(_traffic(server.url, ["alpha", "beta", "crashy", "broken"]))
        try:
            checks = panel_queries(dashboard)
            checks.update({f"rule {r['alert']}": series_part(r) for r in rules})
            await _wait_for_samples(prometheus, http, checks)
            await _template_variables_have_values(prometheus, http, dashboard)
            await _rules_evaluate_and_driven_alerts_fire(prometheus, http)
            gpus = await prometheus.query(http, "llamaswap_gpu_memory_total_bytes")
            assert {s["metric"]["name"] for s in gpus} == {"NVIDIA H100 80GB HBM3", "NVIDIA L4"}
        finally:
            traffic.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await traffic
