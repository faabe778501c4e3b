"""The built-in demo configuration, served when `llamaswap-es` runs without `--config`.

Three fake llama-server models (our `llamaswap_es.fake_upstream`) in llama-swap's default group,
so only one runs at a time: a newcomer who asks for one model and then another sees a real swap,
with real processes, on any machine, in seconds. The config is ordinary llama-swap YAML, printed by
`llamaswap-es check-config` like any other, so it doubles as an example.
"""

from __future__ import annotations

import json
import shlex
import sys

DEMO_MODELS = {
    "demo-fast": ("A demo model that loads in half a second", 500, 5),
    "demo-slow": ("A demo model that takes two seconds to load", 2000, 20),
    "demo-chatty": ("A demo model that streams long answers", 800, 15),
}


def demo_config_yaml(python: str = sys.executable) -> str:
    """llama-swap YAML for the demo models, using this interpreter to run the fake upstream."""
    lines = [
        "# llamaswap-es built-in demo: three fake llama-server models, one running at a time.",
        "healthCheckTimeout: 30",
        "sendLoadingState: true",
        "models:",
    ]
    for model_id, (description, load_delay_ms, token_delay_ms) in DEMO_MODELS.items():
        tokens = 200 if model_id == "demo-chatty" else 40
        cmd = (
            f"{shlex.quote(python)} -m llamaswap_es.fake_upstream --port ${{PORT}} "
            f"--model-name {model_id} --load-delay-ms {load_delay_ms} "
            f"--tokens {tokens} --token-delay-ms {token_delay_ms}"
        )
        lines += [
            f"  {model_id}:",
            f"    description: {json.dumps(description)}",
            f"    cmd: {json.dumps(cmd)}",
            "    aliases:",
            f"      - {model_id.replace('demo-', '')}",
        ]
    return "\n".join(lines) + "\n"
