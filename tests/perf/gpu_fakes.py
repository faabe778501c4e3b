"""Stand-ins for what a GPU host has: commands on PATH, a LACT daemon, a DRM sysfs tree.

Each is the real thing in miniature: an executable script that prints a fixture for exactly the
arguments the source must pass, a unix-socket server speaking LACT's newline-delimited JSON, and
a directory tree laid out as the kernel lays out /sys (symlinks included).
"""

from __future__ import annotations

import json
import os
import socketserver
import sys
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

FIXTURES = Path(__file__).parent / "fixtures"


def fake_command(bin_dir: Path, name: str, expected_args: tuple[str, ...], output: str) -> Path:
    """`bin_dir/name`: prints `output` when called with exactly `expected_args`, else fails."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    script = bin_dir / name
    script.write_text(
        f"#!{sys.executable}\n"
        "import sys\n"
        f"if sys.argv[1:] != {list(expected_args)!r}:\n"
        "    sys.exit(f'unexpected arguments: {sys.argv[1:]}')\n"
        f"sys.stdout.write({output!r})\n"
    )
    script.chmod(0o755)
    return script


def failing_command(bin_dir: Path, name: str, message: str, status: int = 9) -> Path:
    """`bin_dir/name`: prints `message` on stderr and exits non-zero (no driver, say)."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    script = bin_dir / name
    script.write_text(
        f"#!{sys.executable}\nimport sys\nsys.stderr.write({message!r})\nsys.exit({status})\n"
    )
    script.chmod(0o755)
    return script


class _LactHandler(socketserver.StreamRequestHandler):
    def handle(self) -> None:
        answers: dict[str, Any] = self.server.answers  # type: ignore[attr-defined]
        for raw in self.rfile:
            request = json.loads(raw)
            self.server.requests.append(request)  # type: ignore[attr-defined]
            command = request.get("command")
            if command == "device_stats":
                key = f"device_stats {request.get('args', {}).get('id')}"
            else:
                key = command
            answer = answers.get(key, {"status": "error", "data": f"unknown variant `{command}`"})
            self.wfile.write(json.dumps(answer).encode() + b"\n")


class _LactServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True


@contextmanager
def lact_daemon(answers: dict[str, Any]) -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """A LACT daemon on a real unix socket: (its path, the requests it received).

    `answers` maps `list_devices` and `device_stats <id>` to the whole JSON answer."""
    with tempfile.TemporaryDirectory(prefix="lact-", dir="/tmp") as directory:  # short: 108 bytes
        path = os.path.join(directory, "lactd.sock")
        server = _LactServer(path, _LactHandler)
        server.answers = answers  # type: ignore[attr-defined]
        server.requests = []  # type: ignore[attr-defined]
        thread = threading.Thread(target=server.serve_forever, name="fake lactd", daemon=True)
        thread.start()
        try:
            yield path, server.requests  # type: ignore[attr-defined]
        finally:
            server.shutdown()
            server.server_close()
            thread.join(timeout=5)


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def _link(link: Path, target: Path) -> None:
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(os.path.relpath(target, link.parent))


def drm_card(
    root: Path,
    card: str,
    pci: str,
    driver: str,
    files: dict[str, str],
    *,
    uevent: str = "",
) -> Path:
    """A card as the kernel shows it: /sys/class/drm/<card> -> the PCI device directory, whose
    `driver` links to /sys/bus/pci/drivers/<driver>; `files` are relative to the device."""
    device = root / "devices" / "pci0000:00" / pci
    drivers = root / "bus" / "pci" / "drivers" / driver
    drivers.mkdir(parents=True, exist_ok=True)
    _link(device / "driver", drivers)
    _write(device / "uevent", uevent or f"DRIVER={driver}\nPCI_SLOT_NAME={pci}\n")
    for relative, text in files.items():
        _write(device / relative, text)
    card_dir = root / "devices" / "pci0000:00" / pci / "drm" / card
    card_dir.mkdir(parents=True, exist_ok=True)
    _link(card_dir / "device", device)
    _link(root / "class" / "drm" / card, card_dir)
    return device
