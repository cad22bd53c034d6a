"""The OpenAI-compatible adapter: request building, error classification, retry-after parsing."""

from __future__ import annotations

from email.utils import formatdate
from time import time

import orjson
import pytest

from gateway.providers.openai_compat import OpenAICompatAdapter, retry_after
from tests.unit.targets import target

T = target(
    base_url="http://up/v1",
    model="logical",
    model_id="prov-id",
    api_key="sk-secret",
    headers={"x-extra": "1"},
    output_price=2,
)
A = OpenAICompatAdapter()


def test_build_request_rewrites_model_without_mutating_body_and_leaves_the_key_to_credentials() -> None:
    body = {"model": "logical", "messages": [], "custom": {"x": 1}}
    req = A.build_request("chat", body, T)
    assert req.url == "http://up/v1/chat/completions"
    assert "authorization" not in req.headers and req.headers["x-extra"] == "1"
    assert "sk-secret" not in repr(req) and b"sk-secret" not in req.body
    assert orjson.loads(req.body) == {"model": "prov-id", "messages": [], "custom": {"x": 1}}
    assert body["model"] == "logical"
    assert "sk-secret" not in repr(T)


@pytest.mark.parametrize(
    ("status", "body", "kind"),
    [
        (429, b'{"error":{"message":"slow down"}}', "rate_limited"),
        (401, b'{"error":{"message":"bad key"}}', "auth"),
        (403, b"forbidden", "auth"),
        (408, b"", "timeout"),
        (500, b"oops", "server"),
        (503, b'{"detail":"overloaded"}', "server"),
        (400, b'{"error":{"message":"bad param"}}', "client"),
        (404, b'{"error":{"message":"no model"}}', "client"),
        (
            400,
            b'{"error":{"message":"This model\'s maximum context length is 8192 tokens."}}',
            "context_length",
        ),
        (
            400,
            b'{"error":{"message":"Please reduce the length of the messages or completion."}}',
            "context_length",
        ),
        (400, b'{"message":"Input is too long for requested model."}', "context_length"),
        (
            400,
            b'{"error":{"message":"The input token count (40000) exceeds the maximum number of tokens"}}',
            "context_length",
        ),
    ],
)
def test_error_classification(status: int, body: bytes, kind: str) -> None:
    err = A.parse_error(status, {}, body, T)
    assert err.kind == kind and err.status == status and err.backend == "b"


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"retry-after-ms": "1500", "retry-after": "9"}, 1.5),
        ({"retry-after": "3"}, 3.0),
        ({"retry-after": "0.25"}, 0.25),
        ({"retry-after": "soon"}, None),
        ({}, None),
    ],
)
def test_retry_after(headers: dict[str, str], expected: float | None) -> None:
    assert retry_after(headers) == expected


def test_retry_after_http_date() -> None:
    value = retry_after({"retry-after": formatdate(time() + 30, usegmt=True)})
    assert value is not None and 28 <= value <= 31


def test_parse_response_passes_complete_bodies_byte_for_byte() -> None:
    body = orjson.dumps(
        {
            "id": "x",
            "object": "chat.completion",
            "created": 1,
            "model": "m",
            "choices": [],
            "usage": {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7},
        }
    )
    parsed = A.parse_response("chat", body, T)
    assert parsed.body is body
    assert parsed.usage is not None and (parsed.usage.input_tokens, parsed.usage.output_tokens) == (3, 4)
