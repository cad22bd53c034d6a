"""Headroom parsing on real header values from OpenAI, Groq and Anthropic responses."""

from __future__ import annotations

from datetime import UTC, datetime
from email.utils import format_datetime

import pytest
from multidict import CIMultiDict, CIMultiDictProxy

from gateway.telemetry.headroom import Headroom, parse_duration, parse_headroom

NOW = datetime(2024, 6, 1, 12, 0, 0, tzinfo=UTC).timestamp()


def clock() -> float:
    return NOW


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("6m0s", 360.0),
        ("2m59.56s", 179.56),
        ("12ms", 0.012),
        ("1h2m3s", 3723.0),
        ("0s", 0.0),
        ("7.66s", 7.66),
        ("1s", 1.0),
        ("500us", 0.0005),
        ("1", 1.0),
        ("0.5", 0.5),
        (" 20ms ", 0.02),
        ("", None),
        ("soon", None),
        ("1x", None),
        ("s", None),
    ],
)
def test_parse_duration(text: str, seconds: float | None) -> None:
    got = parse_duration(text)
    if seconds is None:
        assert got is None
    else:
        assert got == pytest.approx(seconds)


CASES: list[tuple[str, dict[str, str], Headroom | None]] = [
    ("no headers", {}, None),
    ("unrelated headers", {"content-type": "application/json", "x-request-id": "req_1", "date": "x"}, None),
    (
        "groq",
        {
            "x-ratelimit-limit-requests": "14400",
            "x-ratelimit-limit-tokens": "18000",
            "x-ratelimit-remaining-requests": "14370",
            "x-ratelimit-remaining-tokens": "17997",
            "x-ratelimit-reset-requests": "2m59.56s",
            "x-ratelimit-reset-tokens": "7.66s",
        },
        Headroom(14370, 14400, 179.56, 17997, 18000, 7.66, None),
    ),
    (
        "openai",
        {
            "x-ratelimit-limit-requests": "60",
            "x-ratelimit-limit-tokens": "150000",
            "x-ratelimit-remaining-requests": "59",
            "x-ratelimit-remaining-tokens": "149984",
            "x-ratelimit-reset-requests": "1s",
            "x-ratelimit-reset-tokens": "6m0s",
        },
        Headroom(59, 60, 1.0, 149984, 150000, 360.0, None),
    ),
    (
        "openai 429, mixed case, retry-after-ms wins over retry-after",
        {
            "X-RateLimit-Limit-Requests": "500",
            "X-RateLimit-Remaining-Requests": "0",
            "X-RateLimit-Reset-Requests": "12ms",
            "Retry-After": "1",
            "Retry-After-Ms": "20",
        },
        Headroom(0, 500, 0.012, None, None, None, 0.02),
    ),
    ("retry-after seconds only", {"retry-after": "30"}, Headroom(retry_after_s=30.0)),
    (
        "retry-after as an HTTP date",
        {"retry-after": format_datetime(datetime(2024, 6, 1, 12, 0, 45, tzinfo=UTC), usegmt=True)},
        Headroom(retry_after_s=45.0),
    ),
    (
        "retry-after date in the past",
        {"retry-after": "Sat, 01 Jun 2024 11:00:00 GMT"},
        Headroom(retry_after_s=0.0),
    ),
    (
        "anthropic",
        {
            "anthropic-ratelimit-requests-limit": "50",
            "anthropic-ratelimit-requests-remaining": "49",
            "anthropic-ratelimit-requests-reset": "2024-06-01T12:00:01Z",
            "anthropic-ratelimit-tokens-limit": "80000",
            "anthropic-ratelimit-tokens-remaining": "79000",
            "anthropic-ratelimit-tokens-reset": "2024-06-01T12:00:30.500Z",
            "anthropic-ratelimit-input-tokens-limit": "40000",
            "anthropic-ratelimit-input-tokens-remaining": "1000",
            "anthropic-ratelimit-input-tokens-reset": "2024-06-01T12:00:59Z",
            "request-id": "req_018",
        },
        Headroom(49, 50, 1.0, 79000, 80000, 30.5, None),
    ),
    (
        "anthropic without the combined tokens window: the tighter of input and output",
        {
            "anthropic-ratelimit-input-tokens-limit": "40000",
            "anthropic-ratelimit-input-tokens-remaining": "39000",
            "anthropic-ratelimit-input-tokens-reset": "2024-06-01T12:00:10Z",
            "anthropic-ratelimit-output-tokens-limit": "8000",
            "anthropic-ratelimit-output-tokens-remaining": "400",
            "anthropic-ratelimit-output-tokens-reset": "2024-06-01T12:00:20+00:00",
        },
        Headroom(None, None, None, 400, 8000, 20.0, None),
    ),
    (
        "anthropic 429",
        {
            "anthropic-ratelimit-requests-limit": "50",
            "anthropic-ratelimit-requests-remaining": "0",
            "anthropic-ratelimit-requests-reset": "2024-06-01T11:59:59Z",
            "retry-after": "7",
        },
        Headroom(0, 50, 0.0, None, None, None, 7.0),
    ),
    ("garbage values", {"x-ratelimit-remaining-requests": "lots", "retry-after": "later"}, None),
    (
        "a float where an int is expected",
        {"x-ratelimit-remaining-tokens": "1234.0", "x-ratelimit-reset-tokens": "bogus"},
        Headroom(tokens_remaining=1234),
    ),
]


@pytest.mark.parametrize(("name", "headers", "expected"), CASES, ids=[c[0] for c in CASES])
def test_parse_headroom(name: str, headers: dict[str, str], expected: Headroom | None) -> None:
    got = parse_headroom(headers, clock)
    if expected is None:
        assert got is None
        return
    assert got is not None
    for field in Headroom.__dataclass_fields__:
        want, have = getattr(expected, field), getattr(got, field)
        assert have == (pytest.approx(want) if isinstance(want, float) else want), field


def test_case_insensitive_mapping_from_aiohttp() -> None:
    headers = CIMultiDictProxy(
        CIMultiDict({"X-Ratelimit-Remaining-Requests": "3", "X-Ratelimit-Limit-Requests": "10"})
    )
    assert parse_headroom(headers, clock) == Headroom(requests_remaining=3, requests_limit=10)


def test_none_and_clock_untouched_without_absolute_times() -> None:
    def exploding() -> float:
        raise AssertionError("the clock is only read for absolute timestamps")

    assert parse_headroom(None, exploding) is None
    assert parse_headroom({"x-ratelimit-remaining-requests": "1"}, exploding) == Headroom(
        requests_remaining=1
    )


def test_projection_refills_at_reset() -> None:
    hr = Headroom(requests_remaining=0, requests_limit=60, requests_reset_s=2.0, tokens_remaining=10)
    assert hr.requests_after(1.9) == 0
    assert hr.requests_after(2.0) == 60
    assert hr.tokens_after(100.0) == 10  # no reset known: stays as observed
