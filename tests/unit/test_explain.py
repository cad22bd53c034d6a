"""gateway.explain's pure parts: the body explained and the gateway URL a user may give."""

from __future__ import annotations

import pytest

from gateway.explain import gateway_root, request_body


def test_the_body_is_a_chat_unless_an_input_is_given() -> None:
    assert request_body("m", "Hi", 8, None) == {
        "model": "m",
        "messages": [{"role": "user", "content": "Hi"}],
        "max_tokens": 8,
    }
    assert "max_tokens" not in request_body("m", "Hi", None, None)
    assert request_body("e", "Hi", 8, "text") == {"model": "e", "input": "text"}


@pytest.mark.parametrize(
    "url", ["http://gw:8080", "http://gw:8080/", "http://gw:8080/v1", "http://gw:8080/v1/"]
)
def test_the_root_or_the_openai_base_url_is_accepted(url: str) -> None:
    assert gateway_root(url) == "http://gw:8080"
