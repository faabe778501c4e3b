"""`llamaswap-es wol-proxy`'s flags: every bad value is refused before anything listens, naming
the flag and saying what it expects."""

from __future__ import annotations

import pytest

from llamaswap_es.cli import main

GOOD = ["--mac", "0a:1b:2c:3d:4e:5f", "--upstream", "http://192.168.1.13:8080"]


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--mac", "0a:1b:2c"], "--mac '0a:1b:2c': not a MAC address"),
        (["--upstream", "192.168.1.13:8080"], "--upstream '192.168.1.13:8080': expected the "),
        (["--upstream", "http://h:8080/v1"], "--upstream 'http://h:8080/v1': give the server's "),
        (["--broadcast", "lan.example"], "--broadcast 'lan.example': expected an IPv4 address"),
        (["--timeout", "0"], "--timeout '0': expected a number of seconds above 0"),
        (["--timeout", "soon"], "--timeout 'soon': expected a number of seconds above 0"),
        (["--skip-path", "metrics"], "--skip-path 'metrics': a path starts with /"),
        (["--listen", "8080"], "--listen '8080': expected HOST:PORT"),
    ],
)
def test_a_bad_flag_is_refused_with_its_name(
    flags: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["wol-proxy", *GOOD, *flags]) == 2
    assert capsys.readouterr().err.startswith(f"llamaswap-es wol-proxy: {message}")


def test_the_mac_and_the_upstream_are_required(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["wol-proxy", "-upstream", "http://192.168.1.13:8080"])
    assert exited.value.code == 2
    assert "the following arguments are required: -mac/--mac" in capsys.readouterr().err
