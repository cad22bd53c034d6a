"""AWS error answers as failure kinds, on the error types Bedrock Runtime and SageMaker Runtime document."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from gateway.providers.aws.bedrock import BedrockAdapter
from gateway.providers.aws.sagemaker import SageMakerAdapter
from tests.unit.providers.aws.fixtures import load
from tests.unit.targets import target

T = target(provider="bedrock", api_key="AWSSECRETKEYabcdefgh1234567890")


def body_of(case: dict[str, Any]) -> bytes:
    return orjson.dumps(case["body"]) if isinstance(case["body"], dict) else case["body"].encode()


@pytest.mark.parametrize("case", load("bedrock", "errors.json"), ids=lambda c: f"{c['status']}-{c['type']}")
def test_bedrock_errors_map_to_kinds(case: dict[str, Any]) -> None:
    headers = {"x-amzn-errortype": case["type"]} if case["type"] else {}
    err = BedrockAdapter().parse_error(case["status"], headers, body_of(case), T)
    assert err.kind == case["kind"] and err.status == case["status"] and err.backend == "b"
    if case["type"]:
        name = case["type"].partition(":")[0]
        assert err.message.startswith(name) and err.body == {"error": {"code": name}}


@pytest.mark.parametrize("case", load("sagemaker", "errors.json"), ids=lambda c: f"{c['status']}-{c['type']}")
def test_sagemaker_errors_map_to_kinds(case: dict[str, Any]) -> None:
    err = SageMakerAdapter().parse_error(case["status"], {"x-amzn-errortype": case["type"]}, body_of(case), T)
    assert err.kind == case["kind"]


def test_the_type_may_come_from_the_body() -> None:
    body = b'{"__type":"com.amazon.coral.service#ThrottlingException","message":"Rate exceeded"}'
    assert BedrockAdapter().parse_error(400, {}, body, T).kind == "rate_limited"


def test_credentials_echoed_by_an_upstream_are_scrubbed() -> None:
    body = b'{"message":"bad request signed with AWSSECRETKEYabcdefgh1234567890"}'
    err = BedrockAdapter().parse_error(400, {"x-amzn-errortype": "ValidationException"}, body, T)
    assert "AWSSECRETKEY" not in err.message


def test_retry_after_is_read_when_sent() -> None:
    err = BedrockAdapter().parse_error(
        429, {"x-amzn-errortype": "ThrottlingException", "retry-after": "3"}, b"{}", T
    )
    assert err.kind == "rate_limited" and err.retry_after == 3
