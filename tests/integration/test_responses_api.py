"""POST /v1/responses through the real gateway (uvicorn, real sockets) with the official openai SDK, upstreams
played by the simulator: text, streams, a function_call_output round trip, previous_response_id across two
backends, the stored responses' routes and their owner rule; every object and event against OpenAI's spec."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from gateway.sim import SimThread
from tests.integration.conftest import CLIENT_KEY, GatewayThread, default_policy
from tests.spec import SpecValidator, spec_validator
from tests.unit.frontdoors.sse import named_events, validate_responses_events

OTHER_KEY = "rw-second-client-key"
WEATHER = {
    "type": "function",
    "name": "get_weather",
    "description": "The weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}
ONLY_FAST = {"provider": {"only": ["fast"]}}
ONLY_CHEAP = {"provider": {"only": ["cheap"]}}


@pytest.fixture(scope="module")
def spec() -> SpecValidator:
    return spec_validator()


@pytest.fixture(scope="module")
def gw(sims: SimThread, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayThread]:
    keys = f"{CLIENT_KEY},{OTHER_KEY}"
    with GatewayThread(
        default_policy(sims), tmp_path_factory.mktemp("gw"), reload_policies=False, api_keys=keys
    ) as gateway:
        yield gateway


@pytest.fixture
def client(gw: GatewayThread) -> openai.OpenAI:
    return gw.client()


def raw_post(gw: GatewayThread, body: dict[str, Any], key: str = CLIENT_KEY) -> httpx.Response:
    return httpx.post(
        gw.base_url + "/responses", json=body, headers={"authorization": f"Bearer {key}"}, timeout=20
    )


def test_text_response(gw: GatewayThread, client: openai.OpenAI, spec: SpecValidator) -> None:
    resp = client.responses.create(model="chat", input="Say hello", instructions="Be brief")
    assert resp.status == "completed" and resp.output_text
    assert resp.id.startswith("resp_") and resp.usage is not None and resp.usage.output_tokens > 0
    raw = raw_post(gw, {"model": "chat", "input": "Say hello", "metadata": {"k": "v"}})
    assert raw.status_code == 200 and raw.headers["x-routeway-backend"] == "cheap"
    spec.validate("Response", raw.json())
    assert raw.json()["metadata"] == {"k": "v"}


def test_cut_by_max_output_tokens_is_incomplete(client: openai.OpenAI) -> None:
    resp = client.responses.create(model="chat", input="Tell me a long story", max_output_tokens=16)
    assert resp.status == "incomplete" and resp.incomplete_details is not None
    assert resp.incomplete_details.reason == "max_output_tokens"


def test_stream_events_validate_and_the_sdk_reassembles(
    gw: GatewayThread, client: openai.OpenAI, spec: SpecValidator
) -> None:
    with client.responses.stream(model="chat", input="Say hello") as stream:
        deltas = [e.delta for e in stream if e.type == "response.output_text.delta"]
        final = stream.get_final_response()
    assert deltas and "".join(deltas) == final.output_text and final.status == "completed"
    with httpx.stream(
        "POST",
        gw.base_url + "/responses",
        json={"model": "chat", "input": "Say hello", "stream": True, "tools": [WEATHER]},
        headers={"authorization": f"Bearer {CLIENT_KEY}"},
        timeout=20,
    ) as r:
        assert r.headers["content-type"].startswith("text/event-stream")
        events = named_events(r.read())
    validate_responses_events(spec, events)
    kinds = [name for name, _ in events]
    assert kinds[0] == "response.created" and kinds[-1] == "response.completed"
    assert (
        "response.function_call_arguments.delta" in kinds and "response.function_call_arguments.done" in kinds
    )


def test_function_call_output_round_trip(client: openai.OpenAI, spec: SpecValidator) -> None:
    first = client.responses.create(model="chat", input="Weather in Oslo?", tools=[WEATHER])  # type: ignore[list-item]
    (call,) = [item for item in first.output if item.type == "function_call"]
    assert call.name == "get_weather" and json.loads(call.arguments)["city"]
    # Without stored state: the client sends the whole conversation back, the earlier output included.
    second = client.responses.create(
        model="chat",
        input=[
            {"role": "user", "content": "Weather in Oslo?"},
            *[item.model_dump(exclude_none=True) for item in first.output],
            {"type": "function_call_output", "call_id": call.call_id, "output": '{"sky": "clear"}'},
        ],
        tools=[WEATHER],  # type: ignore[list-item]
        store=False,
    )
    assert second.status == "completed" and second.output_text
    # With stored state: only the function's result, the rest comes from previous_response_id.
    third = client.responses.create(
        model="chat",
        previous_response_id=first.id,
        input=[{"type": "function_call_output", "call_id": call.call_id, "output": '{"sky": "clear"}'}],
        tools=[WEATHER],  # type: ignore[list-item]
    )
    assert third.output_text and third.previous_response_id == first.id
    assert third.usage is not None and second.usage is not None
    assert third.usage.input_tokens == second.usage.input_tokens  # the same conversation reached the backend


def test_previous_response_id_across_two_backends(gw: GatewayThread, client: openai.OpenAI) -> None:
    first = client.responses.with_raw_response.create(
        model="chat", input="My name is Ada.", extra_body=ONLY_FAST
    )
    second = client.responses.with_raw_response.create(
        model="chat", input="What is my name?", previous_response_id=first.parse().id, extra_body=ONLY_CHEAP
    )
    assert first.headers["x-routeway-backend"] == "fast" and second.headers["x-routeway-backend"] == "cheap"
    one, two = first.parse(), second.parse()
    alone = client.responses.create(model="chat", input="What is my name?", extra_body=ONLY_CHEAP)
    assert one.usage is not None and two.usage is not None and alone.usage is not None
    # The second backend got the first turn's input and output ahead of the question.
    assert two.usage.input_tokens > alone.usage.input_tokens + one.usage.output_tokens // 2
    # A third turn continues the second, and streams.
    with client.responses.stream(model="chat", input="And again?", previous_response_id=two.id) as stream:
        final = stream.get_final_response()
    assert final.previous_response_id == two.id and final.status == "completed"
    assert client.responses.retrieve(final.id).output_text == final.output_text  # stored before its end


def test_stored_routes_and_the_owner_rule(
    gw: GatewayThread, client: openai.OpenAI, spec: SpecValidator
) -> None:
    resp = client.responses.create(
        model="chat", input=[{"role": "user", "content": [{"type": "input_text", "text": "hi"}]}]
    )
    got = httpx.get(f"{gw.base_url}/responses/{resp.id}", headers={"authorization": f"Bearer {CLIENT_KEY}"})
    spec.validate("Response", got.json())
    assert got.json()["output"][0]["id"] == resp.output[0].id
    assert got.json()["output"][0]["content"][0]["text"] == resp.output_text
    items = client.responses.input_items.list(resp.id)
    assert [i.type for i in items.data] == ["message"]
    listed = httpx.get(
        f"{gw.base_url}/responses/{resp.id}/input_items", headers={"authorization": f"Bearer {CLIENT_KEY}"}
    )
    spec.validate("ResponseItemList", listed.json())
    stranger = gw.client(api_key=OTHER_KEY)
    for action in (
        lambda: stranger.responses.retrieve(resp.id),
        lambda: stranger.responses.input_items.list(resp.id),
        lambda: stranger.responses.delete(resp.id),
        lambda: stranger.responses.create(model="chat", input="x", previous_response_id=resp.id),
    ):
        with pytest.raises(openai.NotFoundError):
            action()
    client.responses.delete(resp.id)
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(resp.id)


def test_store_false_keeps_nothing(client: openai.OpenAI) -> None:
    resp = client.responses.create(model="chat", input="hi", store=False)
    assert resp.store is False
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(resp.id)


def test_built_in_tools_are_refused_by_name(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        client.responses.create(model="chat", input="news?", tools=[{"type": "web_search"}])
    assert "web_search" in info.value.message and info.value.code == "unsupported_parameter"


def test_mid_stream_failure_ends_with_response_failed(
    sims: SimThread, gw: GatewayThread, spec: SpecValidator
) -> None:
    sims.control("cheap", cut_after_tokens=3)
    with httpx.stream(
        "POST",
        gw.base_url + "/responses",
        json={"model": "chat", "input": "Tell me a story", "stream": True, **ONLY_CHEAP},
        headers={"authorization": f"Bearer {CLIENT_KEY}"},
        timeout=20,
    ) as r:
        events = named_events(r.read())
    validate_responses_events(spec, events)
    assert [name for name, _ in events[-2:]] == ["error", "response.failed"]
    failed = events[-1][1]["response"]
    assert failed["status"] == "failed" and failed["error"]["code"] == "server_error"
    assert failed["output"] and failed["output"][0]["status"] == "incomplete"


def chat_requests(gw: GatewayThread) -> float:
    """routeway_requests_total for answered chat-operation requests on the cheap backend."""
    total = 0.0
    for line in httpx.get(gw.root + "/metrics").text.splitlines():
        if line.startswith("routeway_requests_total{") and 'op="chat"' in line and 'backend="cheap"' in line:
            if 'status="200"' in line:
                total += float(line.rsplit(" ", 1)[1])
    return total


def test_metered_as_chat_requests(gw: GatewayThread, client: openai.OpenAI) -> None:
    before = chat_requests(gw)
    client.responses.create(model="chat", input="count me")
    assert chat_requests(gw) == before + 1


def test_unknown_previous_response_is_a_404(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError):
        client.responses.create(model="chat", input="x", previous_response_id="resp_nope")


@pytest.mark.parametrize(
    ("body", "chars"),
    [
        ({"endpoint": "/v1/responses", "model": "chat", "input": "x" * 400, "max_output_tokens": 50}, 400),
        (
            {
                "endpoint": "/v1/messages",
                "model": "chat",
                "max_tokens": 50,
                "messages": [{"role": "user", "content": "x" * 400}],
            },
            400,
        ),
    ],
)
def test_explained_like_chat(gw: GatewayThread, body: dict[str, Any], chars: int) -> None:
    """`endpoint` names the API the body is in; the plan is the one the call would get (as chat)."""
    got = httpx.post(
        gw.base_url + "/route/explain", json=body, headers={"authorization": f"Bearer {CLIENT_KEY}"}
    )
    assert got.status_code == 200, got.text
    plan = got.json()
    assert [c["backend"] for c in plan["candidates"]] == ["cheap", "fast"]
    assert plan["estimate"]["output_tokens"] == 50 and plan["estimate"]["input_tokens"] >= chars // 4
    bad = httpx.post(
        gw.base_url + "/route/explain",
        json={**body, "endpoint": "/v1/nope"},
        headers={"authorization": f"Bearer {CLIENT_KEY}"},
    )
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "endpoint"
