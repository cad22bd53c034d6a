"""Every JSON body the gateway returns validates against OpenAI's published schemas, even when the upstream
leaves out fields the spec requires (the `quirky` simulator omits refusal, logprobs, system_fingerprint)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from gateway.sim import SimThread
from tests.integration.conftest import GatewayThread, default_policy
from tests.spec import SpecValidator, spec_validator

MSG = [{"role": "user", "content": "Say hello"}]


@pytest.fixture(scope="module")
def spec() -> SpecValidator:
    return spec_validator()


def post(gw: GatewayThread, path: str, body: dict[str, Any], **kw: Any) -> httpx.Response:
    return httpx.post(gw.base_url + path, json=body, timeout=10, **kw)


def sse_payloads(data: bytes) -> list[Any]:
    out = []
    for event in data.split(b"\n\n"):
        if event.startswith(b"data: ") and event != b"data: [DONE]":
            out.append(orjson.loads(event[6:]))
    return out


def test_quirky_upstream_really_omits_required_fields(sims: SimThread, spec: SpecValidator) -> None:
    # Proves the next tests can fail: the raw upstream body does not validate.
    raw = httpx.post(sims.urls["quirky"] + "/chat/completions", json={"model": "up-quirky", "messages": MSG})
    assert spec.errors("CreateChatCompletionResponse", raw.json())


@pytest.mark.parametrize("model", ["chat", "quirky"])
@pytest.mark.parametrize(
    "extra",
    [
        {},
        {"n": 2, "logprobs": True, "top_logprobs": 2},
        {"tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]},
        {"response_format": {"type": "json_object"}},
    ],
)
def test_chat_completion_validates(
    gateway: GatewayThread, spec: SpecValidator, model: str, extra: dict[str, Any]
) -> None:
    r = post(gateway, "/chat/completions", {"model": model, "messages": MSG, "max_tokens": 4, **extra})
    assert r.status_code == 200
    spec.validate("CreateChatCompletionResponse", r.json())


@pytest.mark.parametrize("model", ["chat", "quirky"])
@pytest.mark.parametrize("usage", [True, False])
def test_every_stream_chunk_validates(
    gateway: GatewayThread, spec: SpecValidator, model: str, usage: bool
) -> None:
    body = {"model": model, "messages": MSG, "max_tokens": 4, "stream": True, "logprobs": True}
    if usage:
        body["stream_options"] = {"include_usage": True}
    r = post(gateway, "/chat/completions", body)
    chunks = sse_payloads(r.content)
    assert len(chunks) >= 5
    for chunk in chunks:
        spec.validate("CreateChatCompletionStreamResponse", chunk)
    assert (chunks[-1].get("usage") is not None) is usage


def test_stream_tool_call_chunks_validate(gateway: GatewayThread, spec: SpecValidator) -> None:
    tools = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]
    r = post(
        gateway, "/chat/completions", {"model": "quirky", "messages": MSG, "stream": True, "tools": tools}
    )
    for chunk in sse_payloads(r.content):
        spec.validate("CreateChatCompletionStreamResponse", chunk)


@pytest.mark.parametrize("model", ["chat", "quirky"])
def test_legacy_completion_validates(gateway: GatewayThread, spec: SpecValidator, model: str) -> None:
    r = post(gateway, "/completions", {"model": model, "prompt": "Once", "max_tokens": 3})
    spec.validate("CreateCompletionResponse", r.json())


def test_embeddings_and_models_validate(gateway: GatewayThread, spec: SpecValidator) -> None:
    r = post(gateway, "/embeddings", {"model": "embed", "input": ["a", "b"]})
    spec.validate("CreateEmbeddingResponse", r.json())
    spec.validate("ListModelsResponse", httpx.get(gateway.base_url + "/models").json())
    spec.validate("Model", httpx.get(gateway.base_url + "/models/chat").json())


def test_error_bodies_validate(fresh_gateway: GatewayThread, sims: SimThread, spec: SpecValidator) -> None:
    gateway = fresh_gateway
    bodies = [
        post(gateway, "/chat/completions", {"model": "nope", "messages": MSG}),
        post(gateway, "/chat/completions", {"model": "chat"}),
        httpx.post(gateway.base_url + "/chat/completions", content=b"[", timeout=5),
        httpx.get(gateway.root + "/v1/unknown", timeout=5),
    ]
    sims.control("cheap", error_rate=1.0)
    sims.control("fast", rate_limit_rate=1.0)
    bodies.append(post(gateway, "/chat/completions", {"model": "chat", "messages": MSG}))
    sims.control("cheap", error_rate=0.0, rate_limit_rate=1.0)
    bodies.append(post(gateway, "/chat/completions", {"model": "chat", "messages": MSG}))
    assert [b.status_code for b in bodies] == [404, 400, 400, 404, 502, 429]
    for b in bodies:
        spec.validate("ErrorResponse", b.json())


def test_stream_error_event_validates(
    fresh_gateway: GatewayThread, sims: SimThread, spec: SpecValidator
) -> None:
    gateway = fresh_gateway
    sims.control("cheap", cut_after_tokens=2)
    r = post(
        gateway, "/chat/completions", {"model": "chat", "messages": MSG, "max_tokens": 9, "stream": True}
    )
    payloads = sse_payloads(r.content)
    spec.validate("ErrorResponse", payloads[-1])


def test_auth_error_validates(sims: SimThread, spec: SpecValidator, tmp_path: Path) -> None:
    with GatewayThread(default_policy(sims), tmp_path, api_keys="k", reload_policies=False) as gw:
        r = post(gw, "/chat/completions", {"model": "chat", "messages": MSG})
        assert r.status_code == 401
        spec.validate("ErrorResponse", r.json())
