"""Bad input a real client sends gets a clear 4xx, and the server keeps serving (issue 13).

Every request goes over a raw socket to a real server on the demo models, so bytes no HTTP
library would send (a `\\xff` in a header, a non-ASCII multipart name) reach it as sent. After
each one the scheduler must still dispatch: `loop_alive` asks `/health` and a demo model.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from llamaswap_es.events.open_log import open_log
from tests.conftest import REPO_ROOT
from tests.fixtures.input_fuzz import (
    CHAT_PATH,
    RawResponse,
    chat_body,
    exchange,
    loop_alive,
    request_bytes,
)
from tests.fixtures.server import RunningServer, config_text, demo_server, fake_model

JSON = [(b"Content-Type", b"application/json")]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    with demo_server(tmp_path_factory.mktemp("bad-input"), "bad-input") as running:
        yield running


def _send(server: RunningServer, raw: bytes) -> RawResponse:
    answer = exchange(server.port, raw)
    assert loop_alive(server.port) is None, "the scheduler stopped serving"
    return answer


def _message(answer: RawResponse) -> str:
    return json.loads(answer.body)["error"]["message"]


def _chat(server: RunningServer, headers: list[tuple[bytes, bytes]], body: bytes) -> RawResponse:
    return _send(server, request_bytes(b"POST", CHAT_PATH, JSON + headers, body))


# -- the boundary: what enters an event -----------------------------------------------------------


def test_a_session_id_that_is_not_utf8_is_recorded_as_llama_swap_records_it(server) -> None:
    answer = _chat(server, [(b"X-Session-ID", b"ab\xff\xfe")], chat_body())
    assert answer.status == 200, answer.body
    with open_log(server.db_path) as reader:
        received = [e.body for e in reader.iter_envelopes() if e.type == "RequestReceived"]
    sessions = [r.metadata.get("session_id") for r in received]
    assert "ab\ufffd\ufffd" in sessions  # each byte that is not UTF-8 is U+FFFD, as in Go


def test_a_session_id_too_long_to_record_is_refused_naming_the_header(server) -> None:
    answer = _chat(server, [(b"X-Litellm-Session-Id", b"s" * 300)], chat_body())
    assert answer.status == 400
    assert _message(answer) == (
        "the X-Litellm-Session-Id header is 300 characters long; at most 256 are accepted as a "
        "session id"
    )


def test_a_model_path_too_long_to_record_is_refused_naming_it(server) -> None:
    path = b"/upstream/demo-fast/" + b"p" * 3000
    answer = _send(server, request_bytes(b"GET", path, []))
    assert answer.status == 400
    assert "the request path is 3020 characters long; at most 2048" in _message(answer)


def test_a_lone_surrogate_escape_in_a_rewritten_body_is_forwarded(server_factory) -> None:
    # useModelName rewrites the body, which must then encode again: "\ud800" is valid JSON.
    server = server_factory(config_text([fake_model("m", extra="useModelName: upstream-m")]))
    body = json.dumps({"model": "m", "messages": [{"role": "user", "content": "\ud800"}]})
    assert "\\ud800" in body
    answer = exchange(server.port, request_bytes(b"POST", CHAT_PATH, JSON, body.encode()))
    assert answer.status == 200, answer.body


def test_an_error_quoting_a_lone_surrogate_is_still_answered(server) -> None:
    answer = _chat(server, [], chat_body(keep_alive="\ud800"))
    assert answer.status == 400
    assert _message(answer).startswith("invalid keep_alive")


# -- issue 13, list 5: 4xx with a clear message ---------------------------------------------------


@pytest.mark.parametrize("depth", [1_000, 100_000])
def test_json_nested_too_deeply_is_a_400(server, depth: int) -> None:
    body = b'{"model":"demo-fast","messages":' + b"[" * depth + b"]" * depth + b"}"
    answer = _chat(server, [], body)
    assert answer.status == 400
    assert _message(answer).startswith("JSON in the request body is nested too deeply")


def test_a_capture_id_past_64_bits_is_not_found(server) -> None:
    answer = _send(server, request_bytes(b"GET", b"/api/captures/" + b"9" * 400, []))
    assert answer.status == 404
    assert _message(answer) == "capture not found"


@pytest.mark.parametrize(
    ("target", "name"),
    [
        (b"/api/log/events?since_seq=" + b"9" * 30, "since_seq"),
        (b"/api/log/events?limit=-" + b"9" * 30, "limit"),
        (b"/api/log/explain?seq=" + b"9" * 30, "seq"),
        (b"/api/metrics/activity?page=" + b"9" * 30, "page"),
        (b"/api/metrics/activity?min_id=" + b"9" * 30, "min_id"),
    ],
)
def test_a_number_past_64_bits_in_a_query_is_a_400_naming_it(server, target, name) -> None:
    answer = _send(server, request_bytes(b"GET", target, []))
    assert answer.status == 400
    assert _message(answer).startswith(f"{name} must be")


def test_a_huge_page_number_within_64_bits_is_an_empty_page(server) -> None:
    answer = _send(server, request_bytes(b"GET", b"/api/metrics/activity?page=" + b"9" * 18, []))
    assert answer.status == 200
    assert json.loads(answer.body)["data"] == []


def test_a_nul_byte_in_a_ui_path_is_a_400(server) -> None:
    answer = _send(server, request_bytes(b"GET", b"/ui/index.html%00.js", []))
    assert answer.status == 400
    assert _message(answer) == "the UI path contains a NUL byte (%00)"


def test_a_ui_file_name_too_long_for_the_file_system_is_not_found(server) -> None:
    answer = _send(server, request_bytes(b"GET", b"/ui/" + b"a" * 300 + b".js", []))
    assert answer.status == 404
    assert _message(answer) == "no such UI file: File name too long"


def test_an_upload_whose_file_name_is_not_ascii_is_served(server) -> None:
    body = (
        b'--XX\r\nContent-Disposition: form-data; name="file"; filename="\xc3\xa9t\xc3\xa9.wav"\r\n'
        b"Content-Type: audio/wav\r\n\r\nRIFF\r\n"
        b'--XX\r\nContent-Disposition: form-data; name="model"\r\n\r\ndemo-fast\r\n--XX--\r\n'
    )
    headers = [(b"Content-Type", b"multipart/form-data; boundary=XX")]
    answer = _send(server, request_bytes(b"POST", b"/v1/audio/transcriptions", headers, body))
    assert answer.status == 200, answer.body
    assert json.loads(answer.body)["model"] == "demo-fast"


def test_a_multipart_boundary_that_is_not_latin1_is_read_as_sent(server) -> None:
    boundary = "€".encode()  # once encoded as Latin-1 to split the body: a 500
    body = (
        b"--" + boundary + b'\r\nContent-Disposition: form-data; name="model"\r\n\r\n'
        b"demo-fast\r\n--" + boundary + b'\r\nContent-Disposition: form-data; name="file"; '
        b'filename="a.wav"\r\n\r\nRIFF\r\n--' + boundary + b"--\r\n"
    )
    headers = [(b"Content-Type", b"multipart/form-data; boundary=" + boundary)]
    answer = _send(server, request_bytes(b"POST", b"/v1/audio/transcriptions", headers, body))
    assert answer.status == 200, answer.body
    assert json.loads(answer.body)["model"] == "demo-fast"


# -- configuration: self-reference and alias bombs, at start and at reload -------------------------

SELF_REFERENCE = "a: &a [*a]\nmodels: {}\n"


def _run_server(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run the server command until it exits (it must, with these arguments)."""
    command = [sys.executable, "-m", "llamaswap_es", "--listen", "127.0.0.1:1", *args]
    env = {"PYTHONPATH": str(REPO_ROOT), "XDG_DATA_HOME": str(tmp_path / "xdg")}
    return subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True,
                          timeout=60)  # fmt: skip


def test_a_server_started_on_a_self_referencing_config_exits_naming_file_and_line(
    tmp_path: Path,
) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(SELF_REFERENCE)
    started = time.monotonic()
    done = _run_server(tmp_path, "--config", str(config), "--db", str(tmp_path / "e.db"))
    assert time.monotonic() - started < 30
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    assert done.stderr.strip() == (
        f"llamaswap-es: {config}: failed to parse config {config}: yaml: line 1: anchor 'a' "
        "value contains itself"
    )


def test_a_reload_to_an_alias_bomb_is_refused_and_the_old_config_serves(server_factory) -> None:
    server = server_factory(config_text([fake_model("m")]))
    assert server.config_path is not None
    lines = ["models: {}", 'l0: &l0 ["x", "x", "x", "x", "x", "x", "x", "x", "x"]']
    lines += [f"l{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * 9) + "]" for i in range(1, 10)]
    server.config_path.write_text("\n".join(lines) + "\n")
    started = time.monotonic()
    answer = exchange(server.port, request_bytes(b"POST", b"/api/config/reload", []))
    assert time.monotonic() - started < 10
    assert answer.status == 400
    message = _message(answer)
    assert "configuration reload failed, keeping the old one" in message
    assert f"failed to parse config {server.config_path}: yaml: line " in message
    assert "document contains excessive aliasing" in message
    chat = exchange(server.port, request_bytes(b"POST", CHAT_PATH, JSON, chat_body(model="m")))
    assert chat.status == 200, chat.body


# -- demo mode with an event log directory that cannot be written ---------------------------------


def test_demo_mode_with_an_unwritable_db_directory_is_one_clear_line(tmp_path: Path) -> None:
    not_a_directory = tmp_path / "file"
    not_a_directory.write_text("")
    db = not_a_directory / "events.db"
    done = _run_server(tmp_path, "--db", str(db))
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith(
        f"llamaswap-es: {db}: cannot write the demo configuration demo-config.yaml beside the "
        "event log: "
    )
    assert lines[0].endswith("; pass --db a path in a writable directory")
