"""Request-body filters (config.md §9, §17 items 33-34; api.md §6.6, §25 item 43)."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from llamaswap_es.web.context import AppContext
from llamaswap_es.web.errors import RequestError
from llamaswap_es.web.filters import (
    RequestFilters,
    apply_filters,
    sanitize_set_params,
    sanitize_strip_params,
)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (
            "model, top_k, top_k, temperature, temperature, top_p, , ,",
            ("temperature", "top_k", "top_p"),
        ),
        ("", ()),
        ("model", ()),
        ("  temperature  ,  top_p  ", ("temperature", "top_p")),
    ],
)
def test_strip_params_sanitiser(raw, expected):
    assert sanitize_strip_params(raw) == expected


def test_set_params_sorted_without_model():
    params = {"temperature": 0.7, "top_p": 0.9, "stop": ["<|im_end|>"], "model": "x"}
    assert [k for k, _ in sanitize_set_params(params)] == ["stop", "temperature", "top_p"]


def _apply(body: dict, requested: str, **filters) -> dict:
    out = apply_filters(json.dumps(body).encode(), requested, RequestFilters.from_plain(**filters))
    return json.loads(out)


def test_use_model_name_rewrites_model():
    got = _apply({"model": "alias", "messages": []}, "alias", use_model_name="real-name")
    assert got == {"model": "real-name", "messages": []}


def test_strip_then_set():
    got = _apply(
        {"model": "m", "temperature": 1.5, "top_k": 5},
        "m",
        strip_params="temperature",
        set_params={"top_p": 0.9},
    )
    assert got == {"model": "m", "top_k": 5, "top_p": 0.9}


def test_set_params_by_id_overrides_set_params():
    filters = {"set_params": {"top_p": 0.5}, "set_params_by_id": {"alias": {"top_p": 0.1}}}
    assert _apply({"model": "alias"}, "alias", **filters)["top_p"] == 0.1
    assert _apply({"model": "m"}, "m", **filters)["top_p"] == 0.5  # missing ID: nothing extra


def test_set_params_by_id_by_requested_name():
    by_id = {
        "model1:high": {"chat_template_kwargs": {"reasoning_effort": "high"}},
        "model1:low": {"chat_template_kwargs": {"reasoning_effort": "low"}},
    }
    got = _apply({"model": "model1:high"}, "model1:high", set_params_by_id=by_id)
    assert got["chat_template_kwargs"] == {"reasoning_effort": "high"}


def test_model_is_protected():
    got = _apply(
        {"model": "m"},
        "m",
        strip_params="model",
        set_params={"model": "hijack"},
        set_params_by_id={"m": {"model": "hijack2"}},
    )
    assert got == {"model": "m"}


def test_dotted_paths_address_nested_fields():
    got = _apply(
        {"model": "m", "a": {"b": 1, "c": 2}, "list": [1, 2]},
        "m",
        strip_params="a.c",
        set_params={"x.y.z": True, "list.1": 9, "list.-1": 3, "lit\\.dot": "v"},
    )
    assert got == {
        "model": "m",
        "a": {"b": 1},
        "list": [1, 9, 3],
        "x": {"y": {"z": True}},
        "lit.dot": "v",
    }


def test_stripping_a_missing_path_is_harmless():
    assert _apply({"model": "m"}, "m", strip_params="a.b, c") == {"model": "m"}


def test_values_of_any_json_type():
    params = {"stop": ["a", "b"], "n": None, "obj": {"k": 1}, "flag": False}
    got = _apply({"model": "m"}, "m", set_params=params)
    assert got == {"model": "m", "flag": False, "n": None, "obj": {"k": 1}, "stop": ["a", "b"]}


def test_no_filters_leaves_the_bytes_untouched():
    body = b'{ "model" : "m",  "x": 1.50 }'
    assert apply_filters(body, "m", RequestFilters()) is body
    only_other_id = RequestFilters.from_plain(set_params_by_id={"other": {"a": 1}})
    assert apply_filters(body, "m", only_other_id) is body


def test_filters_on_a_non_object_body_are_400():
    with pytest.raises(RequestError) as err:
        apply_filters(b"[1,2]", "m", RequestFilters.from_plain(set_params={"a": 1}))
    assert err.value.status == 400


def test_scalar_on_the_path_is_replaced_by_an_object():
    assert _apply({"model": "m", "a": "text"}, "m", set_params={"a.b": 1}) == {
        "model": "m",
        "a": {"b": 1},
    }


def test_a_name_used_as_array_index_is_500_naming_the_key():
    filters = RequestFilters.from_plain(set_params={"messages.role": "x"})
    with pytest.raises(RequestError) as err:
        apply_filters(b'{"model":"m","messages":[{"role":"user"}]}', "m", filters)
    assert err.value.status == 500
    assert "messages.role" in err.value.message


def _context(config: object) -> AppContext:
    """An AppContext whose service holds `config` (only `config` is read by `filters`)."""
    service = SimpleNamespace(config=config)
    return AppContext(service, None, None, None, None, None)  # type: ignore[arg-type]


def test_filters_are_built_once_per_loaded_config_and_anew_after_a_reload():
    builds: list[str] = []

    def build(value: float) -> RequestFilters:
        builds.append("built")
        return RequestFilters.from_plain(set_params={"temperature": value})

    ctx = _context(object())
    body = b'{"model":"m"}'
    for _ in range(3):
        filters = ctx.filters("model:m", lambda: build(0.1))
        assert json.loads(apply_filters(body, "m", filters))["temperature"] == 0.1
    assert builds == ["built"]

    ctx.service.config = object()  # type: ignore[misc]  # a reload: a new config object
    filters = ctx.filters("model:m", lambda: build(0.9))
    assert json.loads(apply_filters(body, "m", filters))["temperature"] == 0.9
    assert ctx.filters("peer:m", lambda: RequestFilters()) is not filters
    assert builds == ["built", "built"]
