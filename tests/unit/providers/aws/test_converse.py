"""OpenAI chat -> Converse, table-driven on fixtures written from AWS's Converse examples, and what is
refused in words rather than sent."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.providers.aws.bedrock import BedrockAdapter
from gateway.providers.aws.converse import converse_request
from gateway.providers.base import ProviderError
from tests.unit.providers.aws.fixtures import load
from tests.unit.targets import target

CASES = load("bedrock", "requests.json")
T = target(provider="bedrock", base_url="http://bedrock", model_id="us.meta.llama3-3-70b-instruct-v1:0")


@pytest.mark.parametrize("case", CASES, ids=[c["name"][:60] for c in CASES])
def test_requests_translate_as_the_docs_show(case: dict[str, Any]) -> None:
    assert converse_request(case["openai"]) == case["converse"]


def test_the_adapter_puts_the_model_in_the_path_and_picks_the_action() -> None:
    body = CASES[0]["openai"]
    req = BedrockAdapter().build_request("chat", body, T)
    assert req.url == "http://bedrock/model/us.meta.llama3-3-70b-instruct-v1:0/converse"
    assert req.headers["accept"] == "application/json" and "authorization" not in req.headers
    assert orjson.loads(req.body) == CASES[0]["converse"]
    stream = BedrockAdapter().build_request("chat", {**body, "stream": True}, T)
    assert stream.url.endswith("/converse-stream")
    assert stream.headers["accept"] == "application/vnd.amazon.eventstream"


def test_an_arn_model_id_is_one_path_segment_and_survives_the_transport_url_library() -> None:
    import yarl

    arn = "arn:aws:bedrock:us-east-1:111122223333:inference-profile/us.meta.llama3-3-70b-instruct-v1:0"
    req = BedrockAdapter().build_request(
        "chat", CASES[0]["openai"], target(model_id=arn, base_url="https://b")
    )
    path = req.url.removeprefix("https://b")
    assert path.count("/") == 3 and "inference-profile%2Fus.meta" in path
    assert yarl.URL(req.url).raw_path == path  # what is signed is what aiohttp sends


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"n": 2}, "'n'"),
        ({"logprobs": True}, "logprobs"),
        (
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [{"type": "image_url", "image_url": {"url": "https://x/a.png"}}],
                    }
                ]
            },
            "data: URLs",
        ),
        (
            {"messages": [{"role": "user", "content": [{"type": "input_audio", "input_audio": {}}]}]},
            "input_audio",
        ),
        ({"messages": [{"role": "tool", "content": "x"}]}, "tool_call_id"),
        ({"messages": [{"role": "wizard", "content": "x"}]}, "wizard"),
        (
            {
                "messages": [
                    {
                        "role": "assistant",
                        "tool_calls": [
                            {"id": "a", "type": "function", "function": {"name": "f", "arguments": "{oops"}}
                        ],
                    }
                ]
            },
            "not valid JSON",
        ),
        ({"tools": [{"type": "web_search"}]}, "only function tools"),
        (
            {"tools": [{"type": "function", "function": {"name": "f"}}], "tool_choice": "sometimes"},
            "tool_choice",
        ),
    ],
)
def test_what_converse_cannot_express_is_a_400_in_words(change: dict[str, Any], words: str) -> None:
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}], **change}
    with pytest.raises(ProviderError) as err:
        BedrockAdapter().build_request("chat", body, T)
    assert err.value.kind == "client" and err.value.status == 400 and words in err.value.message
    assert err.value.backend == "b"


def test_embeddings_are_refused_by_name() -> None:
    with pytest.raises(ProviderError, match="chat only"):
        BedrockAdapter().build_request("embeddings", {"model": "m", "input": "x"}, T)


def test_the_callers_body_is_not_changed() -> None:
    body = CASES[2]["openai"]
    before = orjson.dumps(body)
    converse_request(body)
    assert orjson.dumps(body) == before


TEXT = st.text(min_size=1, max_size=20)
MESSAGE = st.one_of(
    st.fixed_dictionaries({"role": st.sampled_from(["user", "system", "developer"]), "content": TEXT}),
    st.fixed_dictionaries({"role": st.just("assistant"), "content": TEXT}),
    st.fixed_dictionaries(
        {
            "role": st.just("user"),
            "content": st.lists(
                st.fixed_dictionaries({"type": st.just("text"), "text": TEXT}), min_size=1, max_size=3
            ),
        }
    ),
)


@settings(max_examples=200, deadline=None)
@given(messages=st.lists(MESSAGE, min_size=1, max_size=8))
def test_turns_alternate_and_keep_every_text_in_order(messages: list[dict[str, Any]]) -> None:
    out = converse_request({"model": "m", "messages": messages})
    turns = out["messages"]
    assert all(a["role"] != b["role"] for a, b in zip(turns, turns[1:], strict=False))
    assert all(t["content"] for t in turns)
    system = [m for m in messages if m["role"] in ("system", "developer")]
    said = [b["text"] for t in turns for b in t["content"]]

    def texts(ms: list[dict[str, Any]]) -> list[str]:
        return [
            p["text"]
            for m in ms
            for p in (m["content"] if isinstance(m["content"], list) else [{"text": m["content"]}])
        ]

    assert said == texts([m for m in messages if m not in system])
    assert [b["text"] for b in out.get("system", [])] == texts(system)
