"""What an idle server holds: SQLAlchemy (~23 MB resident, the largest single part) is loaded
only by a node whose history sink is on. Seen from outside, on real servers: SQLAlchemy's
compiled modules appear in the process's memory map exactly when the sink runs."""

from __future__ import annotations

from pathlib import Path

import aiohttp
import pytest
import sqlalchemy

from tests.fixtures.server import config_text, fake_model

SQLALCHEMY_DIR = Path(sqlalchemy.__file__).parent


def maps_sqlalchemy(pid: int) -> bool:
    """Whether the process has one of SQLAlchemy's compiled modules mapped (it imported it)."""
    return str(SQLALCHEMY_DIR) in Path(f"/proc/{pid}/maps").read_text()


@pytest.mark.skipif(
    not any(SQLALCHEMY_DIR.rglob("*.so")), reason="SQLAlchemy installed without compiled modules"
)
async def test_only_a_node_with_the_history_sink_on_loads_sqlalchemy(
    server_factory, tmp_path: Path
) -> None:
    model = fake_model("a", "--quiet")
    off = server_factory(config_text([model], header="llamaswap-es:\n  historySink: false"))
    on = server_factory(config_text([fake_model("b", "--quiet")]), db_path=tmp_path / "on.db")
    async with aiohttp.ClientSession() as http:
        for server, state in ((off, "off"), (on, None)):
            body = {
                "model": "a" if server is off else "b",
                "messages": [{"role": "user", "content": "hi"}],
            }
            async with http.post(server.url + "/v1/chat/completions", json=body) as r:
                assert r.status == 200
            async with http.get(server.url + "/api/history") as r:
                status = await r.json()
            if state is not None:
                assert status["state"] == state
            async with http.get(server.url + "/api/history/activity") as r:
                assert r.status == (404 if server is off else 200)
    assert not maps_sqlalchemy(off.process.pid), "a node with the sink off loaded SQLAlchemy"
    assert maps_sqlalchemy(on.process.pid)
