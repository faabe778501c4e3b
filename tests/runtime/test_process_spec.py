"""llama-swap's `cmd` tokenisation and the spec's derived values."""

from __future__ import annotations

import pytest

from llamaswap_es.errors import ProcessError
from llamaswap_es.runtime.process_spec import ProcessSpec


def spec(cmd: str, **kwargs: object) -> ProcessSpec:
    return ProcessSpec(model_id="llama", cmd=cmd, proxy="http://127.0.0.1:9123", **kwargs)  # type: ignore[arg-type]


def test_cmd_is_split_like_llama_swap_with_comments_and_continuations() -> None:
    cmd = (
        "python model1.py \\\n"
        '  -a "double quotes" \\\n'
        "  --arg2 'single quotes'\n"
        "  -s\n"
        "  # comment\n"
        "  --arg4 '\"string in string\"'\n"
    )
    assert spec(cmd).argv() == [
        "python",
        "model1.py",
        "-a",
        "double quotes",
        "--arg2",
        "single quotes",
        "-s",
        "--arg4",
        '"string in string"',
    ]


@pytest.mark.parametrize("cmd", ["", "   ", "# only a comment\n  # another"])
def test_empty_command_is_an_error_naming_the_model(cmd: str) -> None:
    with pytest.raises(ProcessError, match=r"model 'llama': empty command"):
        spec(cmd).argv()


def test_unterminated_quote_is_an_error_naming_the_model() -> None:
    with pytest.raises(ProcessError, match=r"model 'llama': cannot parse cmd"):
        spec("server --name 'unterminated").argv()


def test_cmd_stop_gets_the_pid_and_is_none_when_unset() -> None:
    assert spec("x", cmd_stop="docker stop ${PID}").stop_argv(4242) == ["docker", "stop", "4242"]
    assert spec("x").stop_argv(4242) is None


def test_health_url_joins_with_one_slash_and_port_comes_from_proxy() -> None:
    assert spec("x", check_endpoint="health").health_url == "http://127.0.0.1:9123/health"
    assert spec("x").health_url == "http://127.0.0.1:9123/health"
    assert spec("x").port == 9123
    assert spec("x", check_endpoint=" none ").skips_health_check
    assert ProcessSpec(model_id="m", cmd="x", proxy="http://example").port == 80


def test_spec_env_cannot_be_changed_after_creation() -> None:
    env = {"A": "1"}
    frozen = spec("x", env=env)
    env["A"] = "2"
    assert frozen.env["A"] == "1"
    with pytest.raises(TypeError):
        frozen.env["B"] = "3"  # type: ignore[index]


# ---------------------------------------------------------------------------- placement devices


@pytest.mark.parametrize(
    ("kwargs", "devices", "uuids", "expected"),
    [
        ({}, (0, 2), ("GPU-a", "GPU-c"), {"CUDA_VISIBLE_DEVICES": "GPU-a,GPU-c"}),
        (
            {},
            (1,),
            (),
            {"CUDA_VISIBLE_DEVICES": "1", "CUDA_DEVICE_ORDER": "PCI_BUS_ID"},
        ),
        (
            {"devices_env": "HIP_VISIBLE_DEVICES"},
            (0, 1),
            ("u0", "u1"),
            {"HIP_VISIBLE_DEVICES": "0,1"},
        ),
        ({"devices_env": ""}, (0,), ("u0",), {}),
        ({"env": {"CUDA_VISIBLE_DEVICES": "3"}}, (0,), ("u0",), {"CUDA_VISIBLE_DEVICES": "3"}),
        ({}, (), (), {}),
    ],
    ids=["uuids", "indexes-in-pci-order", "other-runtime", "turned-off", "pinned-by-env", "none"],
)
def test_chosen_devices_go_into_the_environment_unless_the_model_pins_them(
    kwargs: dict, devices: tuple[int, ...], uuids: tuple[str, ...], expected: dict[str, str]
) -> None:
    placed = spec("llama-server", **kwargs).on_devices(devices, uuids)
    assert dict(placed.env) == expected
