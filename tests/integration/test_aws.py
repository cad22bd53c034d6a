"""Bedrock and SageMaker end to end: the official openai SDK -> the gateway under uvicorn -> the simulator
speaking Converse / ConverseStream (binary event-stream frames with real CRCs) and SageMaker's invoke
routes (PayloadPart frames), each checking the SigV4 signature with botocore from what it received."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import openai
import pytest

from gateway.sim import Profile, SimThread
from tests.integration.conftest import CLIENT_KEY, GatewayThread

KEY_ID, SECRET = "AKIDINTEGRATION00001", "integration-secret-access-key-0123456789"
BEDROCK_MODEL = "meta.llama3-3-70b-instruct-v1:0"
FAST = {"ttft_ms": 2, "tokens_per_s": 20000}
PROFILES = [
    Profile(
        name="bedrock", hardware="aws-inferentia2", models=[BEDROCK_MODEL], aws_keys=(KEY_ID, SECRET), **FAST
    ),
    Profile(
        name="other-account",
        hardware="aws-inferentia2",
        models=[BEDROCK_MODEL],
        aws_keys=("AKIDSOMEONEELSE00001", "x" * 40),
        **FAST,
    ),
    Profile(
        name="sagemaker",
        hardware="aws-trainium2",
        models=["llama-8b-inf2"],
        aws_keys=(KEY_ID, SECRET),
        **FAST,
    ),
    Profile(name="backup", hardware="nvidia-h100", models=["up-backup"], **FAST),
]
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "top_song",
            "description": "Get the most popular song played on a radio station.",
            "parameters": {
                "type": "object",
                "properties": {"sign": {"type": "string"}},
                "required": ["sign"],
            },
        },
    }
]
HI = [{"role": "user", "content": "Say hello"}]


@pytest.fixture(scope="module")
def aws_sims() -> Iterator[SimThread]:
    with SimThread(PROFILES) as fleet:
        yield fleet


@pytest.fixture(autouse=True)
def _reset(aws_sims: SimThread) -> Iterator[None]:
    yield
    aws_sims.reset()


def policy(sims: SimThread) -> dict[str, Any]:
    def root(name: str) -> str:
        return sims.urls[name].removesuffix("/v1")

    backup = {"id": "up-backup", "input_price": 5.0, "output_price": 5.0}
    return {
        "backends": {
            "bedrock-inf2": {
                "provider": "bedrock",
                "region": "us-east-1",
                "base_url": root("bedrock"),
                "hardware": "aws-inferentia2",
                "models": {"llama": {"id": BEDROCK_MODEL, "input_price": 0.7, "output_price": 0.7}},
            },
            "bedrock-denied": {
                "provider": "bedrock",
                "region": "us-east-1",
                "base_url": root("other-account"),
                "models": {"llama-denied": {"id": BEDROCK_MODEL, "input_price": 0.1, "output_price": 0.1}},
            },
            "sagemaker-trn2": {
                "provider": "sagemaker",
                "region": "us-west-2",
                "base_url": root("sagemaker"),
                "hardware": "aws-trainium2",
                "models": {"llama-sm": {"id": "llama-8b-inf2", "input_price": 0.1, "output_price": 0.1}},
            },
            "backup": {
                "provider": "openai",
                "base_url": sims.urls["backup"],
                "hardware": "nvidia-h100",
                "models": {"llama": backup, "llama-denied": backup, "llama-sm": backup},
            },
        },
        "routes": [
            {
                "name": "default",
                "objective": "cheapest",
                "probe_interval_s": 0,
                "timeouts": {"first_token_s": 5, "idle_s": 5, "total_s": 20, "connect_s": 2},
            }
        ],
    }


@pytest.fixture(scope="module")
def aws_env() -> Iterator[None]:
    """The standard chain finds these keys first; nothing asks a metadata service or reads ~/.aws."""
    mp = pytest.MonkeyPatch()
    for name, value in {
        "AWS_ACCESS_KEY_ID": KEY_ID,
        "AWS_SECRET_ACCESS_KEY": SECRET,
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_CONFIG_FILE": "/nonexistent/config",
        "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent/credentials",
    }.items():
        mp.setenv(name, value)
    mp.delenv("AWS_SESSION_TOKEN", raising=False)
    mp.delenv("AWS_PROFILE", raising=False)
    yield
    mp.undo()


@pytest.fixture
def gw(aws_sims: SimThread, aws_env: None, tmp_path: Any) -> Iterator[GatewayThread]:
    with GatewayThread(policy(aws_sims), tmp_path, reload_policies=False) as gateway:
        yield gateway


def client(gw: GatewayThread) -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.base_url, api_key=CLIENT_KEY, max_retries=0, timeout=20)


def test_chat_goes_over_converse_signed(gw: GatewayThread, aws_sims: SimThread) -> None:
    raw = client(gw).chat.completions.with_raw_response.create(
        model="llama", messages=[{"role": "system", "content": "Be brief."}, *HI], max_tokens=5
    )
    answer = raw.parse()
    assert raw.headers["x-routeway-backend"] == "bedrock-inf2"
    assert answer.choices[0].message.content and answer.choices[0].finish_reason == "length"
    assert answer.usage is not None and answer.usage.completion_tokens == 5
    stats = aws_sims.stats("bedrock")
    assert stats["arrivals"][-1]["path"] == f"/model/{BEDROCK_MODEL}/converse"
    assert stats["arrivals"][-1]["status"] == 200
    assert stats["last_headers"]["authorization"].startswith(f"AWS4-HMAC-SHA256 Credential={KEY_ID}/")
    assert stats["last_body"]["system"] == [{"text": "Be brief."}]
    assert stats["last_body"]["inferenceConfig"] == {"maxTokens": 5}


def test_stream_over_converse_stream(gw: GatewayThread, aws_sims: SimThread) -> None:
    chunks = list(
        client(gw).chat.completions.create(
            model="llama", messages=HI, max_tokens=6, stream=True, stream_options={"include_usage": True}
        )
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert len(text.split()) == 6
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == [
        "length"
    ]
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 6
    assert aws_sims.stats("bedrock")["arrivals"][-1]["path"].endswith("/converse-stream")


def test_tools_round_trip(gw: GatewayThread) -> None:
    c = client(gw)
    first = c.chat.completions.create(model="llama", messages=HI, tools=TOOLS, tool_choice="required")
    (call,) = first.choices[0].message.tool_calls or []
    assert first.choices[0].finish_reason == "tool_calls" and call.function.name == "top_song"
    assert isinstance(json.loads(call.function.arguments), dict)
    messages: list[Any] = [
        *HI,
        first.choices[0].message,
        {"role": "tool", "tool_call_id": call.id, "content": "Elemental Hotel"},
    ]
    second = c.chat.completions.create(model="llama", messages=messages, tools=TOOLS)
    assert second.choices[0].message.content and not second.choices[0].message.tool_calls
    streamed = list(
        c.chat.completions.create(
            model="llama", messages=HI, tools=TOOLS, tool_choice="required", stream=True
        )
    )
    args = "".join(
        tc.function.arguments or ""
        for ch in streamed
        if ch.choices
        for tc in ch.choices[0].delta.tool_calls or []
        if tc.function
    )
    assert args.startswith("{") and args.endswith("}")


def test_an_exception_mid_stream_reaches_the_client_as_an_error(
    gw: GatewayThread, aws_sims: SimThread
) -> None:
    # Paced, so the first token reaches the client before the exception (in one read, it would fail over).
    aws_sims.control("bedrock", stream_exception_after_tokens=2, tokens_per_s=40)
    stream = client(gw).chat.completions.create(model="llama", messages=HI, max_tokens=8, stream=True)
    got: list[str] = []
    with pytest.raises(openai.APIError) as err:
        for chunk in stream:
            got += [chunk.choices[0].delta.content or ""] if chunk.choices else []
    assert "".join(got).strip() and "modelStreamErrorException" in str(err.value)


def test_an_exception_before_the_first_token_fails_over(gw: GatewayThread, aws_sims: SimThread) -> None:
    aws_sims.control("bedrock", stream_exception_after_tokens=0, stream_exception="throttlingException")
    raw = client(gw).chat.completions.with_raw_response.create(model="llama", messages=HI, stream=True)
    assert raw.headers["x-routeway-backend"] == "backup"
    assert "".join(c.choices[0].delta.content or "" for c in raw.parse() if c.choices)


@pytest.mark.parametrize("stream", [False, True])
def test_throttling_fails_over(gw: GatewayThread, aws_sims: SimThread, stream: bool) -> None:
    aws_sims.control("bedrock", rate_limit_rate=1.0)
    raw = client(gw).chat.completions.with_raw_response.create(model="llama", messages=HI, stream=stream)
    assert raw.headers["x-routeway-backend"] == "backup"
    assert raw.headers["x-routeway-attempts"] == "2"
    assert aws_sims.stats("bedrock")["status_counts"] == {"429": 1}


def test_a_signature_by_another_account_is_refused_and_fails_over(
    gw: GatewayThread, aws_sims: SimThread
) -> None:
    raw = client(gw).chat.completions.with_raw_response.create(model="llama-denied", messages=HI)
    assert raw.headers["x-routeway-backend"] == "backup"
    assert aws_sims.stats("other-account")["status_counts"] == {"403": 1}


def test_sagemaker_chat_and_stream(gw: GatewayThread, aws_sims: SimThread) -> None:
    c = client(gw)
    raw = c.chat.completions.with_raw_response.create(model="llama-sm", messages=HI, max_tokens=4)
    assert raw.headers["x-routeway-backend"] == "sagemaker-trn2"
    assert len((raw.parse().choices[0].message.content or "").split()) == 4
    stats = aws_sims.stats("sagemaker")
    assert stats["arrivals"][-1]["path"] == "/endpoints/llama-8b-inf2/invocations"
    assert stats["last_headers"]["authorization"].split("/")[3] == "sagemaker"
    chunks = list(
        c.chat.completions.create(
            model="llama-sm", messages=HI, max_tokens=5, stream=True, stream_options={"include_usage": True}
        )
    )
    assert len("".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices).split()) == 5
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 5
    assert aws_sims.stats("sagemaker")["arrivals"][-1]["path"].endswith("/invocations-response-stream")


def test_a_sagemaker_context_length_error_is_the_clients(gw: GatewayThread, aws_sims: SimThread) -> None:
    with pytest.raises(openai.BadRequestError) as err:
        client(gw).chat.completions.create(model="llama-sm", messages=HI, max_tokens=10_000_000)
    assert "context" in str(err.value).lower()


def test_the_responses_api_door_routes_over_converse_too(gw: GatewayThread, aws_sims: SimThread) -> None:
    response = client(gw).responses.create(model="llama", input="Say hello")
    assert response.status == "completed" and response.output_text
    assert aws_sims.stats("bedrock")["arrivals"][-1]["path"] == f"/model/{BEDROCK_MODEL}/converse"


def test_what_converse_cannot_express_is_a_400_in_words(gw: GatewayThread) -> None:
    with pytest.raises(openai.BadRequestError) as err:
        client(gw).chat.completions.create(model="llama", messages=HI, n=2)
    assert "'n' other than 1" in str(err.value)


def test_a_sagemaker_stream_error_mid_stream_reaches_the_client(
    gw: GatewayThread, aws_sims: SimThread
) -> None:
    aws_sims.control(
        "sagemaker", stream_exception_after_tokens=3, stream_exception="ModelStreamError", tokens_per_s=40
    )
    stream = client(gw).chat.completions.create(model="llama-sm", messages=HI, max_tokens=8, stream=True)
    got: list[str] = []
    with pytest.raises(openai.APIError) as err:
        for chunk in stream:
            got += [chunk.choices[0].delta.content or ""] if chunk.choices else []
    assert "".join(got).strip() and "ModelStreamError" in str(err.value)
