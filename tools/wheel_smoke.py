"""Build the wheel, install it in a clean venv, serve the demo from it and answer a request.

What a user gets from `pip install llamaswap-es` (or `pipx install`, or the Containerfile, which
runs the same steps) must start: this script is those steps, run by `.ci/run` on every run and by
tests/packaging/test_wheel.py. The venv and the server's working directory are outside the
checkout and PYTHONPATH is cleared, so nothing from the checkout can be imported by accident.

    python tools/wheel_smoke.py [--work DIR] [--wheel-dir DIR]

Exit status 0 with one `wheel smoke: ok …` line; otherwise 1 and a line naming the step that
failed (the server's output follows when it was the server).
"""

from __future__ import annotations

import argparse
import json
import os
import select
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import zipfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
START_TIMEOUT_S = 60
REQUEST_TIMEOUT_S = 60
STOP_TIMEOUT_S = 30
REQUIRED_FILES = (
    "llamaswap_es/_migrations/0001_events.sql",
    "llamaswap_es/_ui/index.html",
    "llamaswap_es/_ui/vendor/htm-preact-standalone.mjs",
    "llamaswap_es/deploy/llamaswap-es.service",
    "llamaswap_es/replay/cli.py",
)


class SmokeError(Exception):
    """A step failed; the message names it."""


def build_wheel(out_dir: Path) -> Path:
    """`pip wheel .` (no dependencies) into `out_dir`; the wheel's path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    _run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(out_dir), "."],
         "building the wheel", cwd=REPO_ROOT)  # fmt: skip
    wheels = sorted(out_dir.glob("llamaswap_es-*.whl"), key=lambda p: p.stat().st_mtime)
    if not wheels:
        raise SmokeError(f"building the wheel: no llamaswap_es-*.whl in {out_dir}")
    return wheels[-1]


def check_wheel_contents(wheel: Path) -> list[str]:
    """Every top-level name in the wheel; raises when something required is missing or
    something besides `llamaswap_es` would land in site-packages."""
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
    tops = sorted({name.split("/", 1)[0] for name in names})
    foreign = [t for t in tops if t != "llamaswap_es" and not t.endswith(".dist-info")]
    if foreign:
        raise SmokeError(f"{wheel.name} installs more than llamaswap_es: {foreign}")
    missing = [f for f in REQUIRED_FILES if f not in names]
    if missing:
        raise SmokeError(f"{wheel.name} lacks {missing}")
    return tops


def install_in_clean_venv(wheel: Path, venv: Path, deps_from: Path | None = None) -> Path:
    """A new venv at `venv` with the wheel (and its dependencies) installed; its bin folder.

    With `deps_from` (a site-packages folder that has the dependencies, not llamaswap_es) the
    wheel alone is installed and that folder is appended to the venv's path: the quick variant
    the test suite uses. The venv's own site-packages comes first, so `llamaswap_es` is still
    the wheel's (checked below); `.pth` files of the appended folder are not run, so an editable
    install there cannot make the checkout importable.
    """
    bin_dir = venv / "bin"
    if deps_from is None:
        _run([sys.executable, "-m", "venv", str(venv)], "creating the venv")
        _run([str(bin_dir / "python"), "-m", "pip", "install", "-q", str(wheel)],
             "installing the wheel", cwd=venv)  # fmt: skip
    else:
        _run([sys.executable, "-m", "venv", "--without-pip", str(venv)], "creating the venv")
        _run([sys.executable, "-m", "pip", "--python", str(bin_dir / "python"), "install", "-q",
              "--no-deps", str(wheel)], "installing the wheel", cwd=venv)  # fmt: skip
        site = next(venv.glob("lib/python3*/site-packages"))
        (site / "zz_smoke_dependencies.pth").write_text(f"{deps_from}\n")
    found = subprocess.run(
        [str(bin_dir / "python"), "-c", "import llamaswap_es; print(llamaswap_es.__file__)"],
        cwd=venv, env=_clean_env(), capture_output=True, text=True,
    )  # fmt: skip
    if not found.stdout.strip().startswith(str(venv)):
        raise SmokeError(f"llamaswap_es is imported from {found.stdout.strip()!r}, not {venv}")
    _run([str(bin_dir / "llamaswap-es"), "--version"], "llamaswap-es --version", cwd=venv)
    return bin_dir


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def serve_demo_and_ask(bin_dir: Path, work: Path) -> str:
    """Start the installed `llamaswap-es` with the demo, ask a demo model, stop it cleanly."""
    port = free_port()
    db = work / "data" / "events.db"
    env = _clean_env()
    env.update(HOME=str(work), XDG_DATA_HOME=str(work / "data"), PYTHONUNBUFFERED="1")
    env["PATH"] = f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"
    command = [str(bin_dir / "llamaswap-es"), "--listen", f"127.0.0.1:{port}", "--db", str(db)]
    server = subprocess.Popen(
        command, cwd=work, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    output: list[str] = []
    try:
        _wait_for_banner(server, port, output)
        base = f"http://127.0.0.1:{port}"
        models = [m["id"] for m in _get_json(f"{base}/v1/models")["data"]]
        if "demo-fast" not in models:
            raise SmokeError(f"/v1/models does not list the demo models: {models}")
        answer, request_id = _chat(base, "demo-fast")
        with urllib.request.urlopen(f"{base}/ui/", timeout=REQUEST_TIMEOUT_S) as response:
            if b"<html" not in response.read().lower():
                raise SmokeError("/ui/ does not serve the UI's index.html")
        server.send_signal(signal.SIGTERM)
        code = server.wait(timeout=STOP_TIMEOUT_S)
        if code != 0:
            raise SmokeError(f"the server exited with status {code} after SIGTERM")
        lock = db.with_name(db.name + ".lock")
        if lock.exists():
            raise SmokeError(f"{lock} is left behind after a clean exit")
        return f"{answer!r} (request {request_id})"
    except (SmokeError, OSError, subprocess.TimeoutExpired, KeyError, ValueError) as exc:
        _drain(server, output)
        raise SmokeError(f"{exc}\n--- server output ---\n{''.join(output)}") from exc
    finally:
        _stop(server)


def _wait_for_banner(server: subprocess.Popen[bytes], port: int, output: list[str]) -> None:
    assert server.stderr is not None
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        ready, _, _ = select.select([server.stderr], [], [], 0.5)
        if ready:
            line = server.stderr.readline().decode(errors="replace")
            if not line:
                break
            output.append(line)
            if f"127.0.0.1:{port}/ui/" in line:
                return
        elif server.poll() is not None:
            break
    raise SmokeError(f"the installed server did not start within {START_TIMEOUT_S} s")


def _stop(server: subprocess.Popen[bytes]) -> None:
    """SIGTERM first, so the server stops its model's process group (a SIGKILLed server would
    leave the model running, holding its port); SIGKILL only if it does not stop in time."""
    if server.poll() is not None:
        return
    server.send_signal(signal.SIGTERM)
    try:
        server.wait(timeout=STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait(timeout=10)


def _drain(server: subprocess.Popen[bytes], output: list[str]) -> None:
    _stop(server)
    if server.stderr is not None:
        output.append(server.stderr.read().decode(errors="replace"))


def _clean_env() -> dict[str, str]:
    """This environment without what could make the checkout importable."""
    return {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}


def _get_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=REQUEST_TIMEOUT_S) as response:
        return json.loads(response.read())


def _chat(base: str, model: str) -> tuple[str, str]:
    body = {"model": model, "messages": [{"role": "user", "content": "hello"}], "max_tokens": 5}
    request = urllib.request.Request(
        f"{base}/v1/chat/completions",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=REQUEST_TIMEOUT_S) as response:
        doc = json.loads(response.read())
        request_id = response.headers.get("X-Request-ID", "")
    if not request_id:
        raise SmokeError("the answer carries no X-Request-ID header")
    return doc["choices"][0]["message"]["content"], request_id


def _run(argv: list[str], step: str, cwd: Path | None = None) -> None:
    result = subprocess.run(argv, cwd=cwd, capture_output=True, text=True)
    if result.returncode != 0:
        raise SmokeError(f"{step} failed ({result.returncode}):\n{result.stdout}{result.stderr}")


def smoke(work: Path, wheel_dir: Path | None = None, deps_from: Path | None = None) -> str:
    """Every step in order; returns the summary line."""
    started = time.monotonic()
    wheel = build_wheel(wheel_dir or work / "dist")
    check_wheel_contents(wheel)
    bin_dir = install_in_clean_venv(wheel, work / "venv", deps_from)
    answered = serve_demo_and_ask(bin_dir, work)
    took = time.monotonic() - started
    return f"wheel smoke: ok: {wheel.name} in a clean venv answered {answered} ({took:.0f} s)"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", type=Path, help="working folder (default: a new temporary one)")
    parser.add_argument("--wheel-dir", type=Path, help="where to write the wheel")
    parser.add_argument(
        "--deps-from", type=Path, metavar="SITE_PACKAGES",
        help="take the dependencies from this folder instead of installing them (quicker)",
    )  # fmt: skip
    args = parser.parse_args(argv)
    try:
        if args.work is not None:
            args.work.mkdir(parents=True, exist_ok=True)
            print(smoke(args.work.resolve(), args.wheel_dir, args.deps_from))
        else:
            with tempfile.TemporaryDirectory(prefix="llamaswap-es-wheel-") as tmp:
                print(smoke(Path(tmp), args.wheel_dir, args.deps_from))
    except SmokeError as exc:
        print(f"wheel smoke: FAILED: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
