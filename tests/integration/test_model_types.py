"""Model `type` over real sockets: untyped models serve chat, completions and embeddings (the upstream
decides); a declared type refuses the other endpoint with an OpenAI-shaped 400."""

from __future__ import annotations

from collections.abc import Iterator

import openai
import pytest

from gateway.sim import SimThread
from tests.integration.conftest import BACKEND_KEY_ENV, GatewayThread, backend

MSG = [{"role": "user", "content": "Say hello"}]


@pytest.fixture(scope="module")
def gw(sims: SimThread, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayThread]:
    policy = {
        "backends": {
            "fast": backend(
                sims.urls["fast"],
                {
                    "untyped": {"id": "up-fast"},
                    "untyped-embed": {"id": "up-embed"},
                    "only-chat": {"id": "up-fast", "type": "chat"},
                    "only-embed": {"id": "up-embed", "type": "embedding"},
                },
                api_key_env=BACKEND_KEY_ENV,
            )
        },
        "routes": [{"name": "default", "objective": "cheapest", "probe_interval_s": 0}],
    }
    with GatewayThread(policy, tmp_path_factory.mktemp("types"), reload_policies=False) as gw:
        yield gw


@pytest.mark.parametrize("model", ["untyped", "untyped-embed"])
def test_an_untyped_model_serves_chat_completions_and_embeddings(gw: GatewayThread, model: str) -> None:
    client = gw.client()
    chat = client.chat.completions.create(model=model, messages=MSG, max_tokens=2)
    assert chat.choices[0].message.content
    text = client.completions.create(model=model, prompt="Once", max_tokens=2)
    assert text.choices[0].text
    emb = client.embeddings.create(model=model, input=["hello", "world"])
    assert [d.index for d in emb.data] == [0, 1] and len(emb.data[0].embedding) == 8
    assert model in [m.id for m in client.models.list()]


def test_a_chat_model_refuses_embeddings(gw: GatewayThread, sims: SimThread) -> None:
    client = gw.client()
    assert client.chat.completions.create(model="only-chat", messages=MSG, max_tokens=1).choices
    before = sims.stats("fast")["total_requests"]
    with pytest.raises(openai.BadRequestError) as info:
        client.embeddings.create(model="only-chat", input="hello")
    assert info.value.status_code == 400
    assert info.value.body == {
        "message": "'only-chat' is a chat model: use /v1/chat/completions or /v1/completions or "
        "/v1/responses or /v1/messages",
        "type": "invalid_request_error",
        "param": "model",
        "code": None,
    }
    assert sims.stats("fast")["total_requests"] == before  # refused at the gateway, never forwarded


def test_an_embedding_model_refuses_chat_and_completions(gw: GatewayThread) -> None:
    client = gw.client()
    assert client.embeddings.create(model="only-embed", input="hello").data
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model="only-embed", messages=MSG, max_tokens=1)
    assert "embedding model" in info.value.message and "/v1/embeddings" in info.value.message
    with pytest.raises(openai.BadRequestError):
        client.completions.create(model="only-embed", prompt="Once", max_tokens=1)
