"""The OpenAI surface through the gateway, with the official SDK as client and simulated upstreams."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import orjson
import pytest

from gateway.sim import SimThread
from tests.integration.conftest import BACKEND_KEY, CLIENT_KEY, GatewayThread, default_policy

MSG = [{"role": "user", "content": "Say hello"}]
CHAT = {"model": "chat", "messages": MSG}


def test_chat_routes_to_cheapest_and_rewrites_model(client: openai.OpenAI, sims: SimThread) -> None:
    raw = client.chat.completions.with_raw_response.create(model="chat", messages=MSG, max_tokens=5)
    resp = raw.parse()
    assert raw.headers["x-routeway-backend"] == "cheap"
    assert raw.headers["x-routeway-model"] == "up-cheap"
    assert raw.headers["x-routeway-attempts"] == "1"
    assert float(raw.headers["x-routeway-cost-usd"]) > 0
    assert resp.choices[0].message.content
    assert resp.usage is not None and resp.usage.completion_tokens == 5
    seen = sims.stats("cheap")
    assert seen["last_body"]["model"] == "up-cheap"


def test_backend_key_injected_and_client_key_never_forwarded(client: openai.OpenAI, sims: SimThread) -> None:
    client.chat.completions.create(model="fast-only", messages=MSG, max_tokens=2)
    headers = sims.stats("fast")["last_headers"]
    assert headers["authorization"] == f"Bearer {BACKEND_KEY}"
    client.chat.completions.create(model="chat", messages=MSG, max_tokens=2)
    headers = sims.stats("cheap")["last_headers"]
    assert "authorization" not in headers
    assert CLIENT_KEY not in json.dumps(sims.stats("fast")) + json.dumps(headers)


def test_every_field_passes_through_untouched(client: openai.OpenAI, sims: SimThread) -> None:
    tools = [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
            },
        }
    ]
    resp = client.chat.completions.create(
        model="chat",
        messages=MSG,
        tools=tools,  # type: ignore[arg-type]
        tool_choice="auto",
        seed=7,
        stop=["zzz"],
        temperature=0.3,
        n=1,
        logprobs=True,
        top_logprobs=2,
        extra_body={"top_k": 40, "repetition_penalty": 1.1, "vendor_extension": {"a": [1, 2]}},
    )
    call = resp.choices[0].message.tool_calls
    assert call and call[0].function.name == "get_weather"  # type: ignore[union-attr]
    assert resp.choices[0].finish_reason == "tool_calls"
    body = sims.stats("cheap")["last_body"]
    for key, value in {
        "seed": 7,
        "stop": ["zzz"],
        "temperature": 0.3,
        "top_k": 40,
        "top_logprobs": 2,
    }.items():
        assert body[key] == value
    assert body["vendor_extension"] == {"a": [1, 2]}
    assert body["tools"] == tools


def test_n_logprobs_and_json_response_format(client: openai.OpenAI) -> None:
    resp = client.chat.completions.create(
        model="chat", messages=MSG, n=2, logprobs=True, max_tokens=3, response_format={"type": "json_object"}
    )
    assert [c.index for c in resp.choices] == [0, 1]
    assert all(c.logprobs and c.logprobs.content for c in resp.choices)
    json.loads(resp.choices[0].message.content or "")


def test_stream_with_usage(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model="chat", messages=MSG, max_tokens=6, stream=True, stream_options={"include_usage": True}
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert len(text.split()) == 6
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == 6
    assert any(c.choices and c.choices[0].finish_reason == "length" for c in chunks)


def test_stream_raw_ends_with_done(gateway: GatewayThread) -> None:
    body = {"model": "chat", "messages": MSG, "max_tokens": 3, "stream": True}
    with httpx.stream("POST", gateway.base_url + "/chat/completions", json=body, timeout=10) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        assert r.headers["x-routeway-backend"] == "cheap"
        data = b"".join(r.iter_bytes())
    assert data.endswith(b"data: [DONE]\n\n")
    assert data.count(b"data: [DONE]") == 1


def test_legacy_completions(client: openai.OpenAI) -> None:
    resp = client.completions.create(model="chat", prompt="Once upon a time", max_tokens=4)
    assert resp.object == "text_completion"
    assert resp.choices[0].text
    streamed = list(client.completions.create(model="chat", prompt="Once", max_tokens=3, stream=True))
    assert "".join(c.choices[0].text for c in streamed if c.choices)


def test_embeddings_float_and_base64(client: openai.OpenAI, sims: SimThread) -> None:
    resp = client.embeddings.create(model="embed", input=["a", "b"])
    assert [d.index for d in resp.data] == [0, 1]
    assert len(resp.data[0].embedding) > 0
    assert sims.stats("fast")["last_body"]["model"] == "up-embed"
    raw = client.embeddings.with_raw_response.create(
        model="embed", input="a", encoding_format="base64"
    ).parse()
    assert isinstance(raw.data[0].embedding, str) and base64.b64decode(raw.data[0].embedding)


def test_models_lists_logical_names(client: openai.OpenAI) -> None:
    ids = sorted(m.id for m in client.models.list())
    assert ids == ["chat", "embed", "fast-only", "quirky"]
    assert client.models.retrieve("chat").id == "chat"
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("up-cheap")


def test_unknown_model_is_404(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as info:
        client.chat.completions.create(model="no-such-model", messages=MSG)
    assert info.value.code == "model_not_found"


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"messages": MSG}, "model"),
        ({"model": "chat"}, "messages"),
        ({"model": "chat", "messages": []}, "messages"),
        ({"model": "chat", "messages": [{"role": "robot", "content": "x"}]}, "messages[0].role"),
        ({"model": "chat", "messages": MSG, "max_tokens": "ten"}, "max_tokens"),
        ({"model": "chat", "messages": MSG, "temperature": 9}, "temperature"),
        ({"model": "chat", "messages": MSG, "stream": "yes"}, "stream"),
    ],
)
def test_malformed_body_is_400_naming_the_field(
    gateway: GatewayThread, body: dict[str, object], param: str
) -> None:
    client = gateway.client()
    with pytest.raises(openai.BadRequestError) as info:
        client.post("/chat/completions", body=body, cast_to=httpx.Response)
    err = info.value.body
    assert isinstance(err, dict) and err["param"] == param
    assert param.split("[")[0] in err["message"]


def test_invalid_json_is_400(gateway: GatewayThread) -> None:
    r = httpx.post(gateway.base_url + "/chat/completions", content=b"{nope", timeout=5)
    assert r.status_code == 400
    assert r.json()["error"]["type"] == "invalid_request_error"


def test_unknown_path_is_openai_shaped_404(gateway: GatewayThread) -> None:
    r = httpx.get(gateway.root + "/v1/nothing-here", timeout=5)
    assert r.status_code == 404
    assert set(r.json()["error"]) == {"message", "type", "param", "code"}


def test_health_and_ready(gateway: GatewayThread) -> None:
    assert httpx.get(gateway.root + "/healthz").json() == {"status": "ok"}
    ready = httpx.get(gateway.root + "/readyz").json()
    assert ready["status"] == "ready" and ready["backends"] == 3


def test_explain_ranks_without_calling_upstream(gateway: GatewayThread, sims: SimThread) -> None:
    before = sims.stats("cheap")["total_requests"] + sims.stats("fast")["total_requests"]
    body = {"model": "chat", "messages": MSG, "max_tokens": 100}
    r = httpx.post(
        gateway.base_url + "/route/explain", json=body, headers={"x-routeway-objective": "fastest"}
    )
    assert r.status_code == 200
    doc = r.json()
    assert doc["objective"] == "fastest"
    assert [c["backend"] for c in doc["candidates"]] == ["fast", "cheap"]
    assert doc["candidates"][0]["predicted_latency_ms"] < doc["candidates"][1]["predicted_latency_ms"]
    after = sims.stats("cheap")["total_requests"] + sims.stats("fast")["total_requests"]
    assert after == before


def test_objective_header_changes_the_choice(client: openai.OpenAI, sims: SimThread) -> None:
    # Both simulated backends answer in ~2 ms: earlier tests in this module measured them alike, so give
    # `fastest` a real difference to act on, and let the gateway measure it (a stream: a TTFT sample).
    sims.control("cheap", ttft_ms=60)
    for _ in client.chat.completions.create(model="chat", messages=MSG, max_tokens=2, stream=True):
        pass
    raw = client.chat.completions.with_raw_response.create(
        model="chat", messages=MSG, max_tokens=2, extra_headers={"x-routeway-objective": "fastest"}
    )
    assert raw.headers["x-routeway-backend"] == "fast"
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(
            model="chat", messages=MSG, extra_headers={"x-routeway-objective": "random"}
        )


def test_context_window_guard_skips_small_backend(client: openai.OpenAI) -> None:
    long_prompt = [{"role": "user", "content": "word " * 5000}]  # ~6,250 tokens > cheap's 4,096 window
    raw = client.chat.completions.with_raw_response.create(model="chat", messages=long_prompt, max_tokens=2)
    assert raw.headers["x-routeway-backend"] == "fast"


def test_client_auth_when_keys_configured(sims: SimThread, tmp_path: object) -> None:
    from pathlib import Path

    from tests.integration.conftest import default_policy

    with GatewayThread(
        default_policy(sims), Path(str(tmp_path)), api_keys="k1,k2", reload_policies=False
    ) as gw:
        with pytest.raises(openai.AuthenticationError):
            gw.client(api_key="wrong").chat.completions.create(model="chat", messages=MSG)
        ok = gw.client(api_key="k2").chat.completions.create(model="chat", messages=MSG, max_tokens=1)
        assert ok.choices


def test_wrong_method_on_a_post_route_is_openai_shaped_405(gateway: GatewayThread) -> None:
    r = httpx.get(gateway.base_url + "/chat/completions", timeout=5)
    assert r.status_code == 405
    assert r.headers["allow"] == "POST"
    assert r.json()["error"]["code"] == "method_not_allowed"


def test_body_over_the_limit_is_413_before_it_is_read(sims: SimThread, tmp_path: Path) -> None:
    with GatewayThread(default_policy(sims), tmp_path, reload_policies=False, max_body_bytes=2048) as gw:
        small = httpx.post(gw.base_url + "/chat/completions", json={**CHAT, "max_tokens": 1}, timeout=5)
        assert small.status_code == 200
        big = {**CHAT, "messages": [{"role": "user", "content": "x" * 4096}]}
        r = httpx.post(gw.base_url + "/chat/completions", json=big, timeout=5)
        assert r.status_code == 413
        assert r.json()["error"]["code"] == "request_too_large"
        assert r.headers["x-request-id"]

        def chunked() -> Iterator[bytes]:  # no content-length: the limit applies while reading
            yield b'{"model": "chat", "messages": [{"role": "user", "content": "'
            for _ in range(8):
                yield b"y" * 512
            yield b'"}]}'

        r = httpx.post(gw.base_url + "/chat/completions", content=chunked(), timeout=5)
        assert r.status_code == 413


def test_body_sent_in_many_chunks_is_read_whole(gateway: GatewayThread) -> None:
    raw = orjson.dumps({**CHAT, "max_tokens": 1})

    def pieces() -> Iterator[bytes]:
        for i in range(0, len(raw), 7):
            yield raw[i : i + 7]

    r = httpx.post(gateway.base_url + "/chat/completions", content=pieces(), timeout=5)
    assert r.status_code == 200
    assert r.json()["object"] == "chat.completion"


def test_chat_on_an_embedding_model_and_embeddings_on_a_chat_model_are_400(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model="embed", messages=MSG, max_tokens=1)
    assert "embedding model" in str(info.value) and "/v1/embeddings" in str(info.value)
    with pytest.raises(openai.BadRequestError) as info:
        client.embeddings.create(model="chat", input="hello")
    assert "chat model" in str(info.value)
