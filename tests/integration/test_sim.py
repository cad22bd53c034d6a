"""The provider simulator over real sockets, driven with httpx and the official openai SDK."""

from __future__ import annotations

import asyncio
import base64
import json
import re
import struct
import time
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from gateway.sim import DEMO_FLEET, Profile, SimThread, format_duration, profile_with, start_fleet
from gateway.sim.fleet import serve_fleet_forever, stop_fleet

CHAT = "m-chat"
EMBED = "m-embed"
FAST = Profile(
    name="fast",
    hardware="nvidia-h100",
    models=[CHAT, EMBED],
    ttft_ms=5,
    tokens_per_s=2000,
    context_window=4096,
)
QUIRKY = Profile(
    name="quirky", hardware="groq-lpu", models=["q"], ttft_ms=5, tokens_per_s=2000, omit_optional=True
)
LIMITED = Profile(
    name="limited",
    hardware="groq-lpu",
    models=["l"],
    ttft_ms=1,
    tokens_per_s=5000,
    rpm_limit=3,
    tpm_limit=5000,
)
LOCKED = Profile(name="locked", hardware="x", models=["k"], ttft_ms=1, tokens_per_s=5000, api_key="sekret")
PROFILES = [FAST, QUIRKY, LIMITED, LOCKED]
HI = [{"role": "user", "content": "Say something, please."}]


@pytest.fixture(scope="module")
def sim() -> Iterator[SimThread]:
    with SimThread(PROFILES) as running:
        yield running


@pytest.fixture(autouse=True)
def _fresh(sim: SimThread) -> Iterator[None]:
    yield
    sim.reset()


@pytest.fixture
def http() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=5.0, trust_env=False) as client:
        yield client


def sdk(url: str, api_key: str = "x") -> openai.OpenAI:
    return openai.OpenAI(base_url=url, api_key=api_key, max_retries=0, timeout=5.0)


def chat(http: httpx.Client, url: str, **body: Any) -> httpx.Response:
    return http.post(f"{url}/chat/completions", json={"model": CHAT, "messages": HI, **body})


def sse_events(lines: Iterator[str]) -> Iterator[str]:
    for line in lines:
        if line.startswith("data: "):
            yield line[len("data: ") :]


# --- fleet and helpers ---------------------------------------------------------------------------


def test_demo_fleet_is_the_four_documented_profiles() -> None:
    assert {name: p.port for name, p in DEMO_FLEET.items()} == {
        "h100-nim": 9101,
        "groq-lpu": 9102,
        "tpu-v5e": 9103,
        "inferentia2": 9104,
    }
    assert DEMO_FLEET["groq-lpu"].omit_optional and DEMO_FLEET["groq-lpu"].rpm_limit == 600
    assert "text-embedding-gecko" in DEMO_FLEET["tpu-v5e"].models
    assert profile_with(DEMO_FLEET["h100-nim"], port=0).port == 0


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "0s"),
        (0.012, "12ms"),
        (0.999, "999ms"),
        (1, "1s"),
        (1.5, "1.5s"),
        (59.56, "59.56s"),
        (179.56, "2m59.56s"),
        (360, "6m0s"),
        (3600, "1h0m0s"),
        (3723.25, "1h2m3.25s"),
    ],
)
def test_format_duration(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


def test_start_fleet_and_serve_forever_on_ephemeral_ports() -> None:
    async def scenario() -> None:
        servers = await start_fleet([FAST, QUIRKY], ports=[0, 0])
        try:
            assert all(s.port > 0 for s in servers) and servers[0].port != servers[1].port
            async with httpx.AsyncClient(trust_env=False) as client:
                listing = (await client.get(f"{servers[1].url}/models")).json()
            assert [m["id"] for m in listing["data"]] == ["q"]
        finally:
            await stop_fleet(servers)
        task = asyncio.create_task(serve_fleet_forever([FAST], ports=[0]))
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(scenario())


# --- chat ----------------------------------------------------------------------------------------


def test_models_list(sim: SimThread) -> None:
    models = sdk(sim.urls["fast"]).models.list()
    assert [m.id for m in models.data] == [CHAT, EMBED]


def test_chat_non_stream_full_shape(sim: SimThread, http: httpx.Client) -> None:
    response = chat(http, sim.urls["fast"], max_tokens=5)
    body = response.json()
    assert response.status_code == 200 and body["object"] == "chat.completion"
    assert body["id"].startswith("chatcmpl-") and body["model"] == CHAT and body["system_fingerprint"]
    choice = body["choices"][0]
    assert choice["message"] == {
        "role": "assistant",
        "content": " the quick brown fox jumps",
        "refusal": None,
        "annotations": [],
    }
    assert choice["logprobs"] is None and choice["finish_reason"] == "length"
    assert body["usage"]["completion_tokens"] == 5
    assert body["usage"]["prompt_tokens"] == len(HI[0]["content"]) // 4
    assert "x-ratelimit-limit-requests" not in response.headers  # unlimited profile


def test_chat_via_sdk_defaults_to_16_tokens_and_stop(sim: SimThread) -> None:
    client = sdk(sim.urls["fast"])
    done = client.chat.completions.create(model=CHAT, messages=HI, seed=1, temperature=0.2)
    assert done.usage is not None and done.usage.completion_tokens == 16
    assert done.choices[0].finish_reason == "stop"
    stopped = client.chat.completions.create(model=CHAT, messages=HI, stop=[" fox", "zzz"])
    assert stopped.choices[0].message.content == " the quick brown"
    assert stopped.choices[0].finish_reason == "stop"


def test_chat_n_choices(sim: SimThread) -> None:
    done = sdk(sim.urls["fast"]).chat.completions.create(model=CHAT, messages=HI, n=2, max_tokens=3)
    assert [c.index for c in done.choices] == [0, 1]
    assert done.choices[0].message.content != done.choices[1].message.content
    assert done.usage is not None and done.usage.completion_tokens == 6


def test_chat_stream_with_usage(sim: SimThread) -> None:
    client = sdk(sim.urls["fast"])
    chunks = list(
        client.chat.completions.create(
            model=CHAT,
            messages=HI,
            max_tokens=4,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert chunks[0].choices[0].delta.role == "assistant" and chunks[0].choices[0].delta.content == ""
    assert len({c.id for c in chunks}) == 1 and all(c.object == "chat.completion.chunk" for c in chunks)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == " the quick brown fox"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "length"
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == 4
    assert all(c.usage is None for c in chunks[:-1])


def test_chat_stream_raw_ends_with_done(sim: SimThread, http: httpx.Client) -> None:
    with http.stream(
        "POST", f"{sim.urls['fast']}/chat/completions", json={"model": CHAT, "messages": HI, "stream": True}
    ) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        events = list(sse_events(response.iter_lines()))
    assert events[-1] == "[DONE]"
    assert "usage" not in json.loads(events[1])


def test_omit_optional_quirk(sim: SimThread, http: httpx.Client) -> None:
    url = sim.urls["quirky"]
    body = http.post(f"{url}/chat/completions", json={"model": "q", "messages": HI}).json()
    assert "system_fingerprint" not in body
    assert "logprobs" not in body["choices"][0] and "refusal" not in body["choices"][0]["message"]
    payload = {"model": "q", "messages": HI, "stream": True}
    with http.stream("POST", f"{url}/chat/completions", json=payload) as response:
        chunks = [json.loads(e) for e in sse_events(response.iter_lines()) if e != "[DONE]"]
    assert all(c["system_fingerprint"] is None and "logprobs" not in c["choices"][0] for c in chunks)
    # The SDK still parses what such servers send.
    done = sdk(url).chat.completions.create(model="q", messages=HI)
    assert done.choices[0].message.content


WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
            "required": ["city"],
        },
    },
}
TIME_TOOL = {"type": "function", "function": {"name": "get_time", "parameters": {"type": "object"}}}


def test_tools_produce_tool_calls(sim: SimThread) -> None:
    client = sdk(sim.urls["fast"])
    done = client.chat.completions.create(model=CHAT, messages=HI, tools=[WEATHER_TOOL, TIME_TOOL])
    choice = done.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.content is None
    calls = choice.message.tool_calls or []
    assert len(calls) == 1 and calls[0].id.startswith("call_")
    assert calls[0].function.name == "get_weather"
    assert set(json.loads(calls[0].function.arguments)) == {"city", "days"}
    named = {"type": "function", "function": {"name": "get_time"}}
    picked = client.chat.completions.create(
        model=CHAT,
        messages=HI,
        tools=[WEATHER_TOOL, TIME_TOOL],
        tool_choice=named,
    )
    assert picked.choices[0].message.tool_calls[0].function.name == "get_time"
    plain = client.chat.completions.create(
        model=CHAT,
        messages=HI,
        tools=[WEATHER_TOOL],
        tool_choice="none",
    )
    assert plain.choices[0].finish_reason == "stop" and plain.choices[0].message.content


def test_a_tool_result_is_answered_in_words(sim: SimThread) -> None:
    """After the tool's result the model answers (a client's tool loop ends); a forced call still calls."""
    client = sdk(sim.urls["fast"])
    call = {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{}"}}
    turns = [*HI, {"role": "assistant", "content": None, "tool_calls": [call]}]
    turns.append({"role": "tool", "tool_call_id": "call_1", "content": "sunny"})
    done = client.chat.completions.create(model=CHAT, messages=turns, tools=[WEATHER_TOOL])
    assert done.choices[0].finish_reason == "stop" and done.choices[0].message.content
    forced = client.chat.completions.create(
        model=CHAT, messages=turns, tools=[WEATHER_TOOL], tool_choice="required"
    )
    assert forced.choices[0].finish_reason == "tool_calls"


def test_streamed_tool_call_reassembles(sim: SimThread) -> None:
    stream = sdk(sim.urls["fast"]).chat.completions.create(
        model=CHAT,
        messages=HI,
        tools=[WEATHER_TOOL],
        stream=True,
    )
    name, arguments, finish = "", "", None
    for chunk in stream:
        for call in chunk.choices[0].delta.tool_calls or []:
            assert call.index == 0
            name += (call.function and call.function.name) or ""
            arguments += (call.function and call.function.arguments) or ""
        finish = chunk.choices[0].finish_reason or finish
    assert name == "get_weather" and finish == "tool_calls"
    assert json.loads(arguments)["city"]


def test_logprobs(sim: SimThread) -> None:
    done = sdk(sim.urls["fast"]).chat.completions.create(
        model=CHAT,
        messages=HI,
        max_tokens=3,
        logprobs=True,
        top_logprobs=2,
    )
    content = done.choices[0].logprobs.content
    assert content is not None and [e.token for e in content] == [" the", " quick", " brown"]
    for entry in content:
        assert entry.logprob < 0 and entry.bytes == list(entry.token.encode())
        assert len(entry.top_logprobs) == 2 and entry.top_logprobs[0].token == entry.token
        assert entry.top_logprobs[1].logprob < entry.top_logprobs[0].logprob


def test_response_format_json(sim: SimThread) -> None:
    client = sdk(sim.urls["fast"])
    obj = client.chat.completions.create(
        model=CHAT,
        messages=HI,
        response_format={"type": "json_object"},
    )
    assert isinstance(json.loads(obj.choices[0].message.content or ""), dict)
    schema = {
        "type": "object",
        "properties": {"name": {"type": "string"}, "age": {"type": "integer"}, "tags": {"type": "array"}},
    }
    shaped = client.chat.completions.create(
        model=CHAT,
        messages=HI,
        response_format={"type": "json_schema", "json_schema": {"name": "person", "schema": schema}},
    )
    value = json.loads(shaped.choices[0].message.content or "")
    assert isinstance(value["name"], str) and isinstance(value["age"], int) and value["tags"] == []


# --- legacy completions, embeddings --------------------------------------------------------------


def test_legacy_completions(sim: SimThread) -> None:
    client = sdk(sim.urls["fast"])
    done = client.completions.create(model=CHAT, prompt=["one", "two"], max_tokens=2)
    assert done.object == "text_completion" and [c.index for c in done.choices] == [0, 1]
    assert done.choices[0].text == " the quick" and done.choices[0].finish_reason == "length"
    assert done.choices[0].logprobs is None
    chunks = list(client.completions.create(model=CHAT, prompt="hello", max_tokens=3, stream=True))
    assert "".join(c.choices[0].text for c in chunks) == " the quick brown"
    assert chunks[-1].choices[0].finish_reason == "length"


def test_embeddings_float_and_base64(sim: SimThread, http: httpx.Client) -> None:
    client = sdk(sim.urls["fast"])
    as_float = client.embeddings.create(model=EMBED, input=["a", "b"], encoding_format="float")
    as_b64 = client.embeddings.create(model=EMBED, input=["a", "b"])  # the SDK asks for base64 itself
    assert [d.index for d in as_float.data] == [0, 1] and len(as_float.data[0].embedding) == 8
    assert as_float.data[0].embedding != as_float.data[1].embedding
    for f, b in zip(as_float.data, as_b64.data, strict=True):
        assert b.embedding == pytest.approx(f.embedding, rel=1e-6)
    raw = http.post(
        f"{sim.urls['fast']}/embeddings",
        json={"model": EMBED, "input": [[1, 2, 3]], "encoding_format": "base64"},
    ).json()
    vector = struct.unpack("<8f", base64.b64decode(raw["data"][0]["embedding"]))
    assert sum(x * x for x in vector) == pytest.approx(1.0, rel=1e-5)
    assert raw["usage"] == {"prompt_tokens": 3, "total_tokens": 3} and raw["object"] == "list"


# --- errors --------------------------------------------------------------------------------------


def test_unknown_model_is_404(sim: SimThread) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        sdk(sim.urls["fast"]).chat.completions.create(model="nope", messages=HI)
    assert caught.value.code == "model_not_found"
    assert caught.value.body == {
        "message": "The model `nope` does not exist or you do not have access to it.",
        "type": "invalid_request_error",
        "param": "model",
        "code": "model_not_found",
    }


def test_malformed_requests_are_400(sim: SimThread, http: httpx.Client) -> None:
    url = sim.urls["fast"]
    bad_json = http.post(f"{url}/chat/completions", content=b"{not json")
    assert bad_json.status_code == 400 and bad_json.json()["error"]["type"] == "invalid_request_error"
    no_messages = http.post(f"{url}/chat/completions", json={"model": CHAT})
    assert no_messages.status_code == 400 and no_messages.json()["error"]["param"] == "messages"


def test_context_length_exceeded(sim: SimThread, http: httpx.Client) -> None:
    long = [{"role": "user", "content": "x" * 16_000}]  # 4000 tokens; 4000 + 200 > 4096
    response = http.post(
        f"{sim.urls['fast']}/chat/completions", json={"model": CHAT, "messages": long, "max_tokens": 200}
    )
    error = response.json()["error"]
    assert response.status_code == 400 and error["code"] == "context_length_exceeded"
    assert error["message"] == (
        "This model's maximum context length is 4096 tokens. However, your messages resulted in 4200 tokens. "
        "Please reduce the length of the messages."
    )


def test_api_key_required(sim: SimThread, http: httpx.Client) -> None:
    url = sim.urls["locked"]
    denied = http.post(f"{url}/chat/completions", json={"model": "k", "messages": HI})
    assert denied.status_code == 401 and denied.json()["error"]["code"] == "invalid_api_key"
    with pytest.raises(openai.AuthenticationError):
        sdk(url, api_key="wrong").models.list()
    assert sdk(url, api_key="sekret").chat.completions.create(model="k", messages=HI).choices


# --- rate limits ---------------------------------------------------------------------------------

RESET = re.compile(r"^(\d+h)?(\d+m)?(\d+(\.\d+)?s|\d+ms)$")


def test_rate_limit_headers_and_429(sim: SimThread, http: httpx.Client) -> None:
    url = sim.urls["limited"]
    remaining = []
    for _ in range(3):
        ok = http.post(f"{url}/chat/completions", json={"model": "l", "messages": HI, "max_tokens": 10})
        assert ok.status_code == 200
        assert (
            ok.headers["x-ratelimit-limit-requests"] == "3"
            and ok.headers["x-ratelimit-limit-tokens"] == "5000"
        )
        assert RESET.match(ok.headers["x-ratelimit-reset-requests"])
        assert RESET.match(ok.headers["x-ratelimit-reset-tokens"])
        remaining.append(int(ok.headers["x-ratelimit-remaining-requests"]))
    assert remaining == [2, 1, 0]
    assert int(ok.headers["x-ratelimit-remaining-tokens"]) == 5000 - 3 * (len(HI[0]["content"]) // 4 + 10)
    limited = http.post(f"{url}/chat/completions", json={"model": "l", "messages": HI})
    assert limited.status_code == 429 and limited.json()["error"]["code"] == "rate_limit_exceeded"
    assert int(limited.headers["retry-after"]) >= 1 and int(limited.headers["retry-after-ms"]) > 0
    assert limited.headers["x-ratelimit-remaining-requests"] == "0"
    statuses = [a["status"] for a in sim.stats("limited")["arrivals"]]
    assert statuses == [200, 200, 200, 429]


# --- injected faults -----------------------------------------------------------------------------


def test_error_rate_and_rate_limit_rate(sim: SimThread, http: httpx.Client) -> None:
    sim.control("fast", error_rate=1.0)
    failed = chat(http, sim.urls["fast"])
    assert failed.status_code == 503 and failed.json()["error"]["type"] == "server_error"
    sim.control("fast", error_rate=0.0, rate_limit_rate=1.0, retry_after_s=2.5)
    limited = chat(http, sim.urls["fast"])
    assert limited.status_code == 429 and limited.json()["error"]["code"] == "rate_limit_exceeded"
    assert limited.headers["retry-after"] == "3" and limited.headers["retry-after-ms"] == "2500"


def test_bad_status_body(sim: SimThread, http: httpx.Client) -> None:
    error = {"error": {"message": "bad", "type": "invalid_request_error", "param": None, "code": None}}
    sim.control("fast", bad_status_body={"status": 400, "body": error})
    response = chat(http, sim.urls["fast"])
    assert response.status_code == 400 and response.json() == error


def test_reset_drops_the_connection(sim: SimThread, http: httpx.Client) -> None:
    sim.control("fast", reset=True)
    with pytest.raises((httpx.ReadError, httpx.RemoteProtocolError)):
        chat(http, sim.urls["fast"])
    assert sim.stats("fast")["cancelled"] == 0  # the server hung up, not the client


def test_hang_times_out_and_counts_the_cancel(sim: SimThread, http: httpx.Client) -> None:
    sim.control("fast", hang=True)
    with pytest.raises(httpx.ReadTimeout):
        http.post(f"{sim.urls['fast']}/chat/completions", json={"model": CHAT, "messages": HI}, timeout=0.3)
    stats = wait_for_stats(sim, "fast", lambda s: s["cancelled"] == 1 and s["in_flight"] == 0)
    assert stats["arrivals"][-1]["status"] is None


def wait_for_stats(sim: SimThread, name: str, check: Any, within_s: float = 2.0) -> dict[str, Any]:
    deadline = time.monotonic() + within_s
    while True:
        stats = sim.stats(name)
        if check(stats) or time.monotonic() > deadline:
            assert check(stats), stats
            return stats
        time.sleep(0.02)


def stream_contents(
    http: httpx.Client, url: str, timeout: float = 5.0
) -> tuple[list[str], BaseException | None]:
    """Content deltas received before the stream ended, and the error that ended it, if any."""
    got: list[str] = []
    payload = {"model": CHAT, "messages": HI, "stream": True, "max_tokens": 10}
    try:
        with http.stream("POST", f"{url}/chat/completions", json=payload, timeout=timeout) as response:
            for event in sse_events(response.iter_lines()):
                got.append(event)
    except httpx.HTTPError as exc:
        return _contents(got), exc
    return _contents(got), None


def _contents(events: list[str]) -> list[str]:
    out = []
    for event in events:
        if event == "[DONE]":
            out.append(event)
            continue
        content = json.loads(event)["choices"][0]["delta"].get("content")
        if content:
            out.append(content)
    return out


def test_cut_after_tokens(sim: SimThread, http: httpx.Client) -> None:
    sim.control("fast", cut_after_tokens=3)
    contents, error = stream_contents(http, sim.urls["fast"])
    assert contents == [" the", " quick", " brown"] and isinstance(error, httpx.RemoteProtocolError)
    sim.control("fast", cut_after_tokens=0)
    contents, error = stream_contents(http, sim.urls["fast"])
    assert contents == [] and isinstance(error, httpx.RemoteProtocolError)


def test_stall_after_tokens(sim: SimThread, http: httpx.Client) -> None:
    sim.control("fast", stall_after_tokens=2)
    contents, error = stream_contents(http, sim.urls["fast"], timeout=0.3)
    assert contents == [" the", " quick"] and isinstance(error, httpx.ReadTimeout)
    wait_for_stats(sim, "fast", lambda s: s["cancelled"] == 1)


def test_client_closing_a_stream_is_counted(sim: SimThread, http: httpx.Client) -> None:
    sim.control("fast", ttft_ms=0, tokens_per_s=50)
    before = time.monotonic()
    payload = {"model": CHAT, "messages": HI, "stream": True, "max_tokens": 100}
    with http.stream("POST", f"{sim.urls['fast']}/chat/completions", json=payload) as response:
        for _, _event in zip(range(2), sse_events(response.iter_lines()), strict=False):
            pass
    stats = wait_for_stats(sim, "fast", lambda s: s["cancelled"] == 1 and s["in_flight"] == 0)
    assert stats["last_cancelled_at"] > before


def test_pacing_follows_the_knobs(sim: SimThread, http: httpx.Client) -> None:
    sim.control("fast", ttft_ms=60, tokens_per_s=200)
    start = time.monotonic()
    chat(http, sim.urls["fast"], max_tokens=10)  # 60 ms + 10 / 200 s
    assert 0.1 <= time.monotonic() - start < 1.0


# --- control and stats ---------------------------------------------------------------------------


def test_control_validation_and_reset(sim: SimThread, http: httpx.Client) -> None:
    root = sim.urls["fast"].removesuffix("/v1")
    assert http.post(f"{root}/sim/control", json={"nonsense": 1}).status_code == 400
    assert http.post(f"{root}/sim/control", json={"error_rate": 2}).status_code == 400
    knobs = sim.control("fast", ttft_ms=7, cut_after_tokens=None)
    assert knobs["ttft_ms"] == 7 and knobs["error_status"] == 503 and knobs["retry_after_s"] == 1
    sim.reset("fast")
    assert sim.knobs("fast")["ttft_ms"] == FAST.ttft_ms


def test_stats_record_requests(sim: SimThread, http: httpx.Client) -> None:
    chat(http, sim.urls["fast"], max_tokens=1)
    http.post(
        f"{sim.urls['fast']}/chat/completions",
        json={"model": CHAT, "messages": HI, "max_tokens": 2},
        headers={"X-Trace": "abc"},
    )
    stats = sim.stats("fast")
    assert stats["total_requests"] == 2 and stats["requests_by_model"] == {CHAT: 2}
    assert stats["in_flight"] == 0 and stats["last_body"]["max_tokens"] == 2
    assert stats["last_headers"]["x-trace"] == "abc"  # keys lower-cased
    arrivals = stats["arrivals"]
    assert [a["status"] for a in arrivals] == [200, 200]
    assert arrivals[0]["t"] <= arrivals[1]["t"] <= stats["now"]
