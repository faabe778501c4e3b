"""The real `python -m llamaswap_es` entry: check-config, flags in both spellings, warnings."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from llamaswap_es.cli import _normalise_go_flags, build_parser, serve_options
from llamaswap_es.config import load_config
from llamaswap_es.paths import default_db_path
from llamaswap_es.web.serve_options import ServeOptions, listen_warning
from tests.conftest import REPO_ROOT


def _run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "llamaswap_es", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_check_config_prints_normalised_json(tmp_path: Path) -> None:
    (tmp_path / "c.yaml").write_text(
        "apiKeys: [top-sekrit]\nmodels:\n  m:\n    cmd: srv --port ${PORT}\n    aliases: [mm]\n"
    )
    done = _run("check-config", "-config", "c.yaml", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert data["models"]["m"]["cmd"] == "srv --port 5800"
    assert data["aliases"] == {"mm": "m"}
    assert data["apiKeys"] == ["***"] and "top-sekrit" not in done.stdout


def test_check_config_shows_the_fleet_settings_without_the_database_password(
    tmp_path: Path,
) -> None:
    (tmp_path / "c.yaml").write_text(
        "llamaswap-es:\n  nodeName: gpu-1\n"
        "  historyDatabase: postgresql://fleet:db-sekrit@db.lan:5432/history\n"
    )
    done = _run("check-config", "--config", "c.yaml", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    ours = json.loads(done.stdout)["llamaswap-es"]
    assert ours["nodeName"] == "gpu-1" and ours["historySink"] is True
    assert ours["historyDatabase"] == "postgresql://fleet:***@db.lan:5432/history"
    assert "db-sekrit" not in done.stdout


def test_the_node_name_defaults_to_the_host_name(tmp_path: Path) -> None:
    import socket

    from llamaswap_es.config.history import effective_node_name

    (tmp_path / "c.yaml").write_text("models: {}\n")
    config = load_config(str(tmp_path / "c.yaml"), None)
    assert config.llamaswap_es.node_name == ""
    expected = socket.gethostname().strip() or "localhost"
    assert effective_node_name(config.llamaswap_es.node_name) == expected
    assert effective_node_name("gpu-2") == "gpu-2"


def test_check_config_reports_llama_swap_text_file_and_key(tmp_path: Path) -> None:
    (tmp_path / "c.yaml").write_text(
        "models:\n  m:\n    cmd: srv\n    ttl: -5\n    proxy: http://h:1\n"
    )
    done = _run("check-config", "--config=c.yaml", cwd=tmp_path)
    assert done.returncode == 2
    assert "model m: invalid TTL value -5" in done.stderr
    assert "file: c.yaml" in done.stderr and "key:  models.m.ttl" in done.stderr


def test_serve_is_not_wired_yet_and_tls_needs_both(tmp_path: Path) -> None:
    done = _run("--tls-cert-file", "x.pem", cwd=tmp_path)
    assert done.returncode == 2
    assert "both -tls-cert-file and -tls-key-file must be provided for TLS" in done.stderr
    done = _run("-version", cwd=tmp_path)
    assert done.returncode == 0 and done.stdout.startswith("llamaswap-es ")


def _options(*argv: str) -> ServeOptions:
    return serve_options(build_parser().parse_args(_normalise_go_flags(list(argv))))


def test_flags_in_both_spellings() -> None:
    a = _options("-config", "c.yaml", "-listen", ":9000", "-watch-config=true", "--db", "e.db")
    b = _options("--config=c.yaml", "--listen=:9000", "--watch-config", "--db=e.db")
    assert a == b
    assert (a.listen_host, a.listen_port, a.watch_config, a.db_path) == ("", 9000, True, "e.db")
    default = _options()
    assert (default.listen_host, default.listen_port, default.db_path) == ("127.0.0.1", 8080, None)
    assert _options("-tls-cert-file", "c", "-tls-key-file", "k").listen_port == 8443
    assert not _options("-watch-config=false").watch_config
    assert _options("--listen", "[::1]:81").listen_host == "::1"
    with pytest.raises(ValueError, match="--listen"):
        _options("--listen", "nonsense")


def test_default_db_path_honours_xdg() -> None:
    assert default_db_path({"XDG_DATA_HOME": "/x"}) == "/x/llamaswap-es/events.db"
    assert default_db_path({}).endswith(".local/share/llamaswap-es/events.db")


def test_listen_warning(tmp_path: Path) -> None:
    (tmp_path / "open.yaml").write_text("")
    (tmp_path / "keyed.yaml").write_text("apiKeys: [k]\n")
    open_config = load_config(str(tmp_path / "open.yaml"), None, {})
    assert listen_warning("127.0.0.1", open_config) is None
    assert listen_warning("localhost", open_config) is None
    assert "apiKeys" in (listen_warning("0.0.0.0", open_config) or "")
    assert listen_warning("", load_config(str(tmp_path / "keyed.yaml"), None, {})) is None


def test_every_command_that_reads_the_log_defaults_to_the_servers_log(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    expected = str(tmp_path / "llamaswap-es" / "events.db")
    parser = build_parser()
    for argv in (
        ["rebuild-projections"],
        ["replay", "verify"],
        ["replay", "timeline"],
        ["replay", "explain", "--seq", "1"],
        ["replay", "export", "-o", "x.cbor.zst"],
        ["replay", "whatif"],
    ):
        assert parser.parse_args(argv).db == expected, argv
    missing = _run("replay", "timeline", cwd=tmp_path)  # no log there yet: a clear error
    assert missing.returncode == 2
    assert expected in missing.stderr
