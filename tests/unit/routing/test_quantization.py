"""Serving precision as data: the vocabulary, the candidate filter, the route's limits and OpenRouter's
`provider.quantizations` per request (parsed, bounded, validated), and what explain and errors say."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from gateway.api.admin import explain_plan
from gateway.endpoints import CHAT
from gateway.errors import BadRequest, ServiceUnavailable
from gateway.policy.model import ModelEntry, Policy, QuantizationFilter
from gateway.policy.quantization import (
    BITS,
    OPENROUTER,
    QUANTIZATIONS,
    openrouter_name,
    quantization_violation,
)
from gateway.routing.candidates import build_catalog
from gateway.routing.preferences import Preferences, take_preferences
from gateway.routing.router import Router
from tests.mock_transport import MockTransport

ALL = frozenset(OPENROUTER)

# (case, backend's quantization, route allow, route min_precision, request's quantizations, dropped because)
FILTER_CASES: list[tuple[str, str | None, list[str] | None, str | None, list[str] | None, str | None]] = [
    ("no limits", "int4", None, None, None, None),
    ("undeclared, no limits", None, None, None, None, None),
    ("request allows it", "fp8", None, None, ["fp8", "bf16"], None),
    ("request refuses it", "fp4", None, None, ["fp8", "bf16"], "not in the request's provider.quantizations"),
    ("awq is OpenRouter's int4", "awq", None, None, ["int4"], None),
    ("gptq is not int8", "gptq", None, None, ["int8"], "not in the request's provider.quantizations"),
    ("undeclared is OpenRouter's unknown", None, None, None, ["unknown"], None),
    (
        "undeclared refused by a list",
        None,
        None,
        None,
        ["bf16"],
        "quantization undeclared not in the request",
    ),
    ("route allows it", "bf16", ["bf16", "fp8"], None, None, None),
    ("route refuses it", "int8", ["bf16", "fp8"], None, None, "not in the route's quantization.allow"),
    ("route admits undeclared", None, ["bf16", "unknown"], None, None, None),
    ("route's minimum met", "int8", None, "fp8", None, None),
    ("route's minimum met above", "fp16", None, "fp8", None, None),
    (
        "route's minimum missed",
        "nvfp4",
        None,
        "fp8",
        None,
        "below the route's quantization.min_precision fp8",
    ),
    ("minimum needs a declaration", None, None, "fp8", None, "quantization undeclared; the route's"),
    ("request checked before route", "fp4", ["bf16"], None, ["bf16"], "the request's provider.quantizations"),
]


@pytest.mark.parametrize(
    ("quantization", "allow", "minimum", "requested", "reason"),
    [case[1:] for case in FILTER_CASES],
    ids=[case[0] for case in FILTER_CASES],
)
def test_quantization_filter(
    quantization: str | None,
    allow: list[str] | None,
    minimum: str | None,
    requested: list[str] | None,
    reason: str | None,
) -> None:
    got = quantization_violation(
        quantization,
        frozenset(allow) if allow is not None else None,
        minimum,
        frozenset(requested) if requested is not None else None,
    )
    if reason is None:
        assert got is None
    else:
        assert got is not None and reason in got, got


def test_every_precision_has_bits_and_an_openrouter_name() -> None:
    assert set(BITS) == set(QUANTIZATIONS)
    assert {openrouter_name(q) for q in QUANTIZATIONS} <= ALL - {"unknown"}
    assert openrouter_name(None) == "unknown"


def test_policy_accepts_the_vocabulary_in_any_case_and_refuses_the_rest() -> None:
    assert ModelEntry(id="m", quantization="FP8").quantization == "fp8"  # type: ignore[arg-type]
    assert QuantizationFilter(allow=["BF16", "Unknown"], min_precision="Int8").allow == ["bf16", "unknown"]  # type: ignore[list-item, arg-type]
    for bad in ("fp12", "q4_k_m", 8):
        with pytest.raises(ValidationError):
            ModelEntry(id="m", quantization=bad)  # type: ignore[arg-type]
    with pytest.raises(ValidationError):
        QuantizationFilter(allow=[])


# --- OpenRouter's provider.quantizations ----------------------------------------------------------------


def prefs(quantizations: Any) -> Preferences:
    return take_preferences({"model": "m", "provider": {"quantizations": quantizations}}, {})


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        (["fp8"], {"fp8"}),
        (["BF16", "fp8", "bf16"], {"bf16", "fp8"}),
        (["unknown"], {"unknown"}),
        ([], None),  # OpenRouter's default: no filter
        (None, None),
    ],
)
def test_provider_quantizations_parsed(given: Any, expected: set[str] | None) -> None:
    assert prefs(given).quantizations == (frozenset(expected) if expected is not None else None)


@pytest.mark.parametrize(
    "bad", ["fp8", {"fp8": True}, [8], ["fp12"], ["fp8", None], ["x" * 10_000], ["fp8"] * 13], ids=repr
)
def test_provider_quantizations_refused_with_a_400(bad: Any) -> None:
    with pytest.raises(BadRequest) as info:
        prefs(bad)
    assert info.value.param == "provider.quantizations" and info.value.status == 400
    assert len(info.value.message) < 300  # a long value is not echoed whole


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=12,
)
NAMES = st.sampled_from([*OPENROUTER, *(n.upper() for n in OPENROUTER)])


@given(JSON | st.lists(NAMES | st.text(max_size=8), max_size=20))
def test_any_value_is_a_filter_or_a_400(value: Any) -> None:
    try:
        got = prefs(value).quantizations
    except BadRequest as err:
        assert err.param == "provider.quantizations"
        return
    assert got is None or (got <= ALL and got)
    if got is not None:
        assert isinstance(value, list) and {v.lower() for v in value} == got


@given(st.lists(NAMES, max_size=12))
def test_valid_lists_round_trip(names: list[str]) -> None:
    assert prefs(names).quantizations == (frozenset(n.lower() for n in names) or None)


# --- through the router: explain and the eligible-set error ----------------------------------------------


def catalog(route: dict[str, Any] | None = None) -> Any:
    """`m` on three backends: cheap int4, mid fp8, dear bf16; objective cheapest."""
    entries = {"cheap": ("int4", 0.1), "mid": ("fp8", 0.5), "dear": ("bf16", 1.0)}
    policy = Policy.model_validate(
        {
            "backends": {
                name: {
                    "provider": "openai",
                    "base_url": f"http://{name}",
                    "models": {
                        "m": {"id": f"up-{name}", "input_price": p, "output_price": p, "quantization": q}
                    },
                }
                for name, (q, p) in entries.items()
            },
            "routes": [{"name": "r", "objective": "cheapest", "probe_interval_s": 0, **(route or {})}],
        }
    )
    return build_catalog(policy, {})


def plan(route: dict[str, Any] | None = None, provider: dict[str, Any] | None = None) -> Any:
    body: dict[str, Any] = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
    if provider is not None:
        body["provider"] = provider
    p = take_preferences(body, {})
    return Router(MockTransport(lambda _r: None)).plan(catalog(route), CHAT, body, p, probe=False)  # type: ignore[arg-type, return-value]


def test_the_request_filter_changes_the_pick_and_explain_says_why() -> None:
    assert [s.target.backend for s in plan().ranked] == ["cheap", "mid", "dear"]
    doc = explain_plan(plan(provider={"quantizations": ["fp8", "bf16"]}))
    assert [(c["backend"], c["quantization"]) for c in doc["candidates"]] == [
        ("mid", "fp8"),
        ("dear", "bf16"),
    ]
    assert doc["dropped"] == [
        {
            "backend": "cheap",
            "reason": "quantization int4 not in the request's provider.quantizations (bf16, fp8)",
        }
    ]


def test_the_route_minimum_drops_what_is_below_it() -> None:
    doc = explain_plan(plan(route={"quantization": {"min_precision": "fp8"}}))
    assert [c["backend"] for c in doc["candidates"]] == ["mid", "dear"]
    assert "below the route's quantization.min_precision fp8" in doc["dropped"][0]["reason"]


def test_nothing_at_the_requested_precision_is_a_400_naming_each_backend() -> None:
    with pytest.raises(BadRequest) as info:
        plan(provider={"quantizations": ["fp32"]})
    err = info.value
    assert err.status == 400 and err.param == "provider.quantizations"
    assert all(f"quantization {q} not in" in err.message for q in ("int4", "fp8", "bf16"))


def test_nothing_within_the_routes_limit_is_a_503_that_says_so() -> None:
    with pytest.raises(ServiceUnavailable) as info:
        plan(route={"quantization": {"allow": ["fp32"]}})
    assert "not in the route's quantization.allow (fp32)" in info.value.message
