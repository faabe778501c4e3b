"""What an idle server holds: SQLAlchemy (~21 MB resident, the largest single part) is loaded
only by a node whose history goes to a database elsewhere. By default the history is the node's
own event-log file, kept as a projection on the standard library's sqlite3. Seen from outside, on
real servers: SQLAlchemy's compiled modules appear in the process's memory map exactly when the
history is written through the sink to another database. Pure-Python modules leave no mark in the
map, so what a server imported is read from Python's own import report
(`PYTHONPROFILEIMPORTTIME`, one stderr line per module): the replay tooling behind
`/api/log/explain` loads at the first explanation asked for, not at start, and the NVML binding
(~0.9 MiB) loads only where the NVIDIA driver's library does."""

from __future__ import annotations

import ctypes
from pathlib import Path

import aiohttp
import pytest
import sqlalchemy

from tests.fixtures.server import RunningServer, config_text, fake_model, wait_json

SQLALCHEMY_DIR = Path(sqlalchemy.__file__).parent


def nvidia_driver_loads() -> bool:
    try:
        ctypes.CDLL("libnvidia-ml.so.1")
    except OSError:
        return False
    return True


def maps_sqlalchemy(pid: int) -> bool:
    """Whether the process has one of SQLAlchemy's compiled modules mapped (it imported it)."""
    return str(SQLALCHEMY_DIR) in Path(f"/proc/{pid}/maps").read_text()


@pytest.mark.skipif(
    not any(SQLALCHEMY_DIR.rglob("*.so")), reason="SQLAlchemy installed without compiled modules"
)
async def test_only_a_node_writing_its_history_elsewhere_loads_sqlalchemy(
    server_factory, tmp_path: Path
) -> None:
    off = server_factory(
        config_text([fake_model("a", "--quiet")], header="llamaswap-es:\n  historySink: false")
    )
    default = server_factory(config_text([fake_model("b", "--quiet")]), db_path=tmp_path / "on.db")
    other = tmp_path / "other.db"
    elsewhere = server_factory(
        config_text(
            [fake_model("c", "--quiet")],
            header=f"llamaswap-es:\n  historyDatabase: sqlite:///{other}",
        ),
        db_path=tmp_path / "own.db",
    )
    servers = {"a": off, "b": default, "c": elsewhere}
    async with aiohttp.ClientSession() as http:
        for model, server in servers.items():
            body = {"model": model, "messages": [{"role": "user", "content": "hi"}]}
            async with http.post(server.url + "/v1/chat/completions", json=body) as r:
                assert r.status == 200
            if server is off:
                async with http.get(server.url + "/api/history/activity") as r:
                    assert r.status == 404
                continue
            doc = await wait_json(
                http, server.url + "/api/history/activity", lambda d: d.get("total") == 1
            )
            assert doc["data"][0]["model"] == model
            async with http.get(server.url + "/api/history") as r:
                status = await r.json()
            assert status["enabled"] is True and status["shared"] is (server is elsewhere)
    assert not maps_sqlalchemy(off.process.pid), "a node with the history off loaded SQLAlchemy"
    assert not maps_sqlalchemy(default.process.pid), "the default (own-file) history loaded it"
    assert maps_sqlalchemy(elsewhere.process.pid)


def imported_modules(server: RunningServer) -> set[str]:
    """The modules the server has imported so far, from its `-X importtime` lines on stderr."""
    return {
        line.split("|")[-1].strip()
        for line in server.output().splitlines()
        if line.startswith("import time:") and "imported package" not in line
    }


async def test_the_replay_tooling_loads_at_the_first_explanation_not_at_start(
    server_factory,
) -> None:
    server = server_factory(
        config_text([fake_model("a", "--quiet")]), env={"PYTHONPROFILEIMPORTTIME": "1"}
    )
    at_start = imported_modules(server)
    assert "llamaswap_es.web.log_api" in at_start  # the report works: the route's module is there
    assert "llamaswap_es.replay.explain" not in at_start
    async with aiohttp.ClientSession() as http:
        body = {"model": "a", "messages": [{"role": "user", "content": "hi"}]}
        async with http.post(server.url + "/v1/chat/completions", json=body) as r:
            assert r.status == 200
        assert "llamaswap_es.replay.explain" not in imported_modules(server)
        async with http.get(server.url + "/api/log/events", params={"type": "SwapPlanned"}) as r:
            swap = (await r.json())["events"][0]
        async with http.get(server.url + "/api/log/explain", params={"seq": swap["seq"]}) as r:
            assert r.status == 200
            explained = await r.json()
    assert explained["decision"]["type"] == "SwapPlanned"
    assert explained["cause"]["type"] == "RequestReceived"
    assert "llamaswap_es.replay.explain" in imported_modules(server)


@pytest.mark.skipif(nvidia_driver_loads(), reason="this host has the NVIDIA driver: NVML is used")
async def test_without_the_nvidia_driver_the_nvml_binding_is_not_loaded(server_factory) -> None:
    server = server_factory(
        config_text([fake_model("a", "--quiet")]), env={"PYTHONPROFILEIMPORTTIME": "1"}
    )
    async with aiohttp.ClientSession() as http:
        # the sampler looked for GPUs before its first sample
        doc = await wait_json(http, server.url + "/api/performance", lambda d: d.get("sys_stats"))
    assert not doc.get("gpu_stats"), doc
    imported = imported_modules(server)
    assert "llamaswap_es.perf.nvml" in imported  # the report works: the looking was done
    assert "pynvml" not in imported
