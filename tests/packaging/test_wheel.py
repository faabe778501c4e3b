"""The wheel a user installs works: built from this checkout, installed in a clean venv outside
it, `llamaswap-es` serves the demo and answers a chat request, then stops and leaves no lock.

The quick variant of tools/wheel_smoke.py (which .ci/run runs in full, with a real `pip install`
of the dependencies): here the dependencies are taken from the test environment's site-packages
instead of being downloaded, while `llamaswap_es` itself must come from the wheel.
"""

from __future__ import annotations

import sysconfig
import zipfile
from pathlib import Path

import pytest

from tools.wheel_smoke import SmokeError, check_wheel_contents, smoke

pytestmark = pytest.mark.slow


def test_the_wheel_installs_in_a_clean_venv_and_serves_the_demo(tmp_path: Path) -> None:
    deps = Path(sysconfig.get_paths()["purelib"])
    summary = smoke(tmp_path, deps_from=deps)
    assert summary.startswith("wheel smoke: ok:")
    assert "(request " in summary, "the answer carried our X-Request-ID"
    wheel = next((tmp_path / "dist").glob("llamaswap_es-*.whl"))
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
    assert {n.split("/")[0] for n in names} - {"llamaswap_es"} == {
        next(n.split("/")[0] for n in names if ".dist-info/" in n)
    }, "only llamaswap_es (and its metadata) lands in site-packages"
    assert "llamaswap_es/_migrations/0003_projections.sql" in names
    assert "llamaswap_es/_ui/js/pages/activity.js" in names


def test_a_wheel_with_a_foreign_top_level_package_is_refused(tmp_path: Path) -> None:
    wheel = tmp_path / "llamaswap_es-0.0.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr("llamaswap_es/__init__.py", "")
        archive.writestr("tools/__init__.py", "")
    with pytest.raises(SmokeError, match=r"installs more than llamaswap_es: \['tools'\]"):
        check_wheel_contents(wheel)

