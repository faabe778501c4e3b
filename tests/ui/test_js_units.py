"""The UI's pure JavaScript helpers, tested with node's built-in runner (tests/ui/js/*.test.mjs)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

JS_TESTS = Path(__file__).resolve().parent / "js"


def test_js_helpers_pass_under_node() -> None:
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed; the UI's JavaScript unit tests need node >= 20")
    files = sorted(str(p) for p in JS_TESTS.glob("*.test.mjs"))
    assert files, f"no JavaScript tests found under {JS_TESTS}"
    result = subprocess.run(
        [node, "--test", "--test-reporter=spec", *files],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, f"node --test failed:\n{result.stdout}\n{result.stderr}"
