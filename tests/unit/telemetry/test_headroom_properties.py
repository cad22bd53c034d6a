"""Hypothesis properties of the rate-limit header parsers: every unit a dialect table may name."""

from __future__ import annotations

import math
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.providers.dialects import DIALECTS
from gateway.telemetry.headroom import UNITS, HeaderTable, Headroom, parse_duration

PROPS = settings(max_examples=200, deadline=None)
NOW = 1_733_000_000.0
_TIMES = ("requests_reset_s", "tokens_reset_s", "retry_after_s")
_COUNTS = ("requests_remaining", "requests_limit", "tokens_remaining", "tokens_limit")

parts = st.lists(
    st.tuples(st.integers(0, 500), st.sampled_from(["h", "m", "s", "ms", "us", "ns"])), min_size=1, max_size=4
)
_SCALE = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 1e-3, "us": 1e-6, "ns": 1e-9}


@PROPS
@given(parts)
def test_go_durations_add_up(pieces: list[tuple[int, str]]) -> None:
    text = "".join(f"{n}{unit}" for n, unit in pieces)
    assert parse_duration(text) == pytest.approx(sum(n * _SCALE[u] for n, u in pieces))


@PROPS
@given(st.floats(min_value=0, max_value=1e6, allow_nan=False), st.sampled_from(["s", "ms", ""]))
def test_fractional_seconds_and_plain_numbers(x: float, unit: str) -> None:
    text = f"{x:.3f}{unit}"
    want = round(x, 3) / (1000 if unit == "ms" else 1)
    got = parse_duration(text)
    assert got is not None and math.isclose(got, want, rel_tol=1e-9, abs_tol=1e-9)


@PROPS
@given(st.text(max_size=80))
def test_any_text_is_a_finite_non_negative_duration_or_none(text: str) -> None:
    got = parse_duration(text)
    assert got is None or (math.isfinite(got) and got >= 0)


FIELDS = (
    "requests_limit", "requests_remaining", "requests_reset", "tokens_limit", "tokens_remaining",
    "tokens_reset", "retry_after", "retry_after_ms", "output_tokens_remaining", "output_tokens_limit",
)  # fmt: skip
hostile = st.one_of(
    st.text(max_size=40),
    st.sampled_from(
        ["nan", "inf", "-inf", "1e400", "-5", "9" * 400, "1h1h", "Tue, 99 Foo", "2024-13-45T00:00"]
    ),
    st.integers(-(10**20), 10**20).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
)


@PROPS
@given(st.lists(st.tuples(st.sampled_from(FIELDS), st.sampled_from(UNITS), hostile), min_size=1, max_size=8))
def test_a_table_of_any_units_reads_any_values_without_raising(rows: list[tuple[str, str, str]]) -> None:
    spec = {f"x-h-{i}": (field, unit) for i, (field, unit, _) in enumerate(rows)}
    headers = {f"X-H-{i}": value for i, (_, _, value) in enumerate(rows)}
    got = HeaderTable(spec).parse(headers, lambda: NOW)
    if got is None:
        return
    for name in _TIMES:
        value = getattr(got, name)
        assert value is None or (math.isfinite(value) and value >= 0), name
    for name in _COUNTS:
        assert getattr(got, name) is None or isinstance(getattr(got, name), int)


@PROPS
@given(st.floats(min_value=0, max_value=1e7, allow_nan=False))
def test_epoch_and_millisecond_resets(seconds: float) -> None:
    table = HeaderTable({"a": ("requests_reset", "epoch_s"), "b": ("tokens_reset", "ms")})
    got = table.parse({"a": repr(NOW + seconds), "b": repr(seconds * 1000)}, lambda: NOW)
    assert got is not None and got.requests_reset_s is not None and got.tokens_reset_s is not None
    assert math.isclose(got.requests_reset_s, seconds, abs_tol=1e-6)
    assert math.isclose(got.tokens_reset_s, seconds, rel_tol=1e-9, abs_tol=1e-9)
    past = table.parse({"a": repr(NOW - 1 - seconds)}, lambda: NOW)
    assert past == Headroom(requests_reset_s=0.0)  # a reset already passed is no wait


@PROPS
@given(st.sampled_from(sorted(DIALECTS)), st.integers(0, 10**9), st.randoms(use_true_random=False))
def test_every_dialect_matches_header_names_in_any_case(name: str, n: int, rnd: random.Random) -> None:
    table = DIALECTS[name].rate_limits
    headers = {
        "retry-after": str(n),
        "x-ratelimit-remaining-requests": str(n),
        "x-ratelimit-remaining": str(n),
    }
    shuffled = {"".join(c.upper() if rnd.random() < 0.5 else c for c in k): v for k, v in headers.items()}
    assert table.parse(shuffled, lambda: NOW) == table.parse(headers, lambda: NOW)
