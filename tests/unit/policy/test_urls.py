"""base_url checks: each problem in words, the value named with its secrets masked."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from gateway.policy.model import Backend
from gateway.policy.urls import masked, url_problems


@pytest.mark.parametrize(
    "url",
    [
        "https://api.groq.com/openai/v1",
        "http://127.0.0.1:9101/v1",
        "http://[::1]:8000/v1",
        "http://localhost",
        "https://h:65535/",
    ],
)
def test_usable_urls(url: str) -> None:
    assert url_problems(url) == []


@pytest.mark.parametrize(
    ("url", "fragments"),
    [
        ("https://user:pw@host/v1", ["credentials", "api_key_env", "headers"]),
        ("https://token@host/v1", ["credentials"]),
        ("http://h:1 /v1?x", ["whitespace", "query string"]),
        ("http://h/v1\x07", ["control character"]),
        ("ftp://h", ["scheme must be http or https, not 'ftp'"]),
        ("groq.com", ["scheme", "has no host"]),
        ("http:///v1", ["has no host"]),
        ("http://h:99999", ["port", "'99999'"]),
        ("http://h:0/v1", ["port", "'0'"]),
        ("http://h:abc/v1", ["port", "'abc'"]),
        ("http://h/v1#top", ["fragment"]),
        ("http://[::1/v1", ["not a URL"]),
    ],
)
def test_each_problem_is_named(url: str, fragments: list[str]) -> None:
    text = "; ".join(url_problems(url))
    for fragment in fragments:
        assert fragment in text, text


def test_masked_hides_password_and_query_only() -> None:
    assert masked("https://user:pw@host:8/v1") == "https://user:***@host:8/v1"
    assert masked("https://a:b@c@h/v?key=s") == "https://a:***@h/v?***"
    assert masked("http://h:1/v1/@x") == "http://h:1/v1/@x"
    assert masked("ftp://h") == "ftp://h"


def test_backend_error_names_the_masked_value_never_the_password() -> None:
    with pytest.raises(ValidationError) as info:
        Backend(provider="openai", base_url="https://user:s3cr3t@host/v1", models={"m": {"id": "x"}})
    (error,) = info.value.errors()
    assert error["loc"] == ("base_url",)
    assert error["msg"].startswith("'https://user:***@host/v1': must not carry credentials")
    assert "s3cr3t" not in error["msg"]
