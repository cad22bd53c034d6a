"""The simulator's AWS wire formats: Bedrock's Converse and ConverseStream (binary event-stream messages with
real CRCs) and SageMaker's InvokeEndpoint(WithResponseStream) (the container's SSE inside `PayloadPart`
messages), each SigV4-checked when the profile has AWS keys, with AWS's error shapes. The model is read
from Converse's own body, not translated back to OpenAI's, so the gateway's translator is tested against
an independent reading of the format."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from aiohttp import web

from gateway.providers.aws.eventstream import encode_message, event, exception
from gateway.sim import generate as gen
from gateway.sim.faults import ApiError, admit, error_of
from gateway.sim.profiles import Profile
from gateway.sim.sigv4 import SignatureError, verify
from gateway.sim.state import Arrival, SimState
from gateway.sim.streaming import Framing, non_stream_delay, paced_write

EVENT_STREAM = "application/vnd.amazon.eventstream"
_STOP_REASONS = {"stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use"}
_BEDROCK_TYPES = {
    400: "ValidationException",
    403: "AccessDeniedException",
    404: "ResourceNotFoundException",
    408: "ModelTimeoutException",
    424: "ModelErrorException",
    429: "ThrottlingException",
    503: "ServiceUnavailableException",
}
_SAGEMAKER_TYPES = {400: "ValidationError", 429: "ThrottlingException", 503: "ServiceUnavailable"}
_PAD = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0"  # Bedrock's `p` field: length padding


def signed_by(service: str) -> Callable[[web.Request, Profile], Awaitable[None]]:
    """The authorisation step of an AWS route: a valid SigV4 signature by the profile's key, if it has one."""

    async def check(request: web.Request, profile: Profile) -> None:
        if profile.aws_keys is None:
            return
        body = await request.read()  # aiohttp keeps it: the handler reads the same bytes
        url = f"{request.scheme}://{request.host}{request.raw_path}"
        try:
            verify(request.method, url, request.headers, body, dict([profile.aws_keys]), service=service)
        except SignatureError as err:
            raise ApiError(403, str(err), code=err.error_type) from None

    return check


def bedrock_errors(response: web.StreamResponse) -> web.StreamResponse:
    """An OpenAI-shaped error (the simulator's faults, limits and checks) in Bedrock's shape."""
    found = _openai_error(response)
    if found is None:
        return response
    status, message, code, headers = found
    kind = code if code and code[0].isupper() else _BEDROCK_TYPES.get(status)
    kind = kind or ("InternalServerException" if status >= 500 else "ValidationException")
    return _aws_error(status, kind, {"message": message}, headers)


def sagemaker_errors(response: web.StreamResponse) -> web.StreamResponse:
    """SageMaker's shapes: a container's 4xx is a 424 ModelError carrying the container's status and body."""
    found = _openai_error(response)
    if found is None:
        return response
    status, message, code, headers = found
    if code and code[0].isupper():
        return _aws_error(status, code, {"message": message}, headers)
    if 400 <= status < 500 and status != 429:
        original = response.body if isinstance(response, web.Response) else None
        body = {
            "ErrorCode": "CLIENT_ERROR_FROM_MODEL",
            "Message": f'Received client error ({status}) from primary with message "{message}".',
            "OriginalStatusCode": status,
            "OriginalMessage": original.decode("utf-8", "replace")
            if isinstance(original, bytes)
            else message,
        }
        return _aws_error(424, "ModelError", body, headers)
    kind = _SAGEMAKER_TYPES.get(status) or "InternalFailure"
    return _aws_error(status, kind, {"message": message}, headers)


def _openai_error(response: web.StreamResponse) -> tuple[int, str, str | None, dict[str, str]] | None:
    found = error_of(response) if "x-amzn-errortype" not in response.headers else None
    if found is None:
        return None
    error, kept = found
    message = error.get("message") if error is not None else None
    code = error.get("code") if error is not None else None
    body = response.text if isinstance(response, web.Response) else None  # error_of saw a Response
    text = message if isinstance(message, str) else (body or f"Simulated error {response.status}.")
    return response.status, text, code if isinstance(code, str) else None, kept


def _aws_error(status: int, kind: str, body: dict[str, Any], headers: dict[str, str]) -> web.Response:
    headers = {**headers, "x-amzn-errortype": kind, "x-amzn-requestid": str(uuid.uuid4())}
    return web.Response(
        body=orjson.dumps(body), status=status, headers=headers, content_type="application/json"
    )


def _invalid(message: str) -> ApiError:
    return ApiError(400, message, code="ValidationException")


# Converse


async def converse(request: web.Request, state: SimState, arrival: Arrival, raw: Any) -> web.StreamResponse:
    model = request.match_info["model_id"]  # percent-decoded by aiohttp, as Bedrock reads it
    if model not in state.profile.models:
        raise _invalid("The provided model identifier is invalid.")
    arrival.model = model
    state.stats.requests_by_model[model] = state.stats.requests_by_model.get(model, 0) + 1
    if not isinstance(raw, dict):
        raise ApiError(400, "Could not parse the request body as JSON.", code="SerializationException")
    turns = _turns(raw.get("messages"))
    config = raw.get("inferenceConfig") or {}
    cap = config.get("maxTokens") if isinstance(config, dict) else None
    if cap is not None and (not isinstance(cap, int) or isinstance(cap, bool) or cap < 1):
        raise _invalid("inferenceConfig.maxTokens must be a positive integer.")
    prompt = gen.estimate_tokens(_chars(raw.get("system")) + sum(_chars(t["content"]) for t in turns))
    if prompt + (cap or 0) > state.profile.context_window:
        raise _invalid("Input is too long for requested model.")
    rate_headers = admit(state, model, prompt + (cap or gen.DEFAULT_MAX_TOKENS))
    answer = _answer(raw, turns, cap, config)
    headers = {**rate_headers, "x-amzn-requestid": str(uuid.uuid4())}
    if request.path.endswith("/converse-stream"):
        return await _converse_stream(request, state, arrival, headers, answer, prompt)
    await asyncio.sleep(non_stream_delay(state.knobs, answer.tokens))
    content: list[dict[str, Any]] = (
        [{"text": answer.text}] if answer.tool_call is None else [_tool_use(answer)]
    )
    body = {
        "output": {"message": {"role": "assistant", "content": content}},
        "stopReason": _STOP_REASONS[answer.finish_reason],
        "usage": _usage(prompt, answer.tokens),
        "metrics": {"latencyMs": int(non_stream_delay(state.knobs, answer.tokens) * 1000)},
    }
    return web.Response(body=orjson.dumps(body), headers=headers, content_type="application/json")


def _turns(messages: Any) -> list[dict[str, Any]]:
    if not isinstance(messages, list) or not messages:
        raise _invalid("The messages field is required and must not be empty.")
    for turn in messages:
        if not isinstance(turn, dict) or turn.get("role") not in ("user", "assistant"):
            raise _invalid("Each message must have role user or assistant.")
        if not isinstance(turn.get("content"), list) or not turn["content"]:
            raise _invalid("Each message must have a non-empty content list.")
    if messages[0]["role"] != "user":
        raise _invalid("A conversation must start with a user message.")
    if any(a["role"] == b["role"] for a, b in zip(messages, messages[1:], strict=False)):
        raise _invalid("A conversation must alternate between user and assistant roles.")
    return messages


def _chars(blocks: Any) -> int:
    return (
        sum(len(b["text"]) for b in blocks if isinstance(b, dict) and isinstance(b.get("text"), str))
        if isinstance(blocks, list)
        else 0
    )


def _answer(raw: dict[str, Any], turns: list[dict[str, Any]], cap: int | None, config: Any) -> gen.Answer:
    count = cap if cap is not None else gen.DEFAULT_MAX_TOKENS
    tool = _chosen_tool(raw.get("toolConfig"), turns)
    if tool is not None:
        return gen.tool_answer(0, tool, 0, str(uuid.uuid4()))
    stops = config.get("stopSequences") if isinstance(config, dict) else None
    return gen.text_answer(0, count, 0, gen.parse_stops(stops), cap is not None)


def _chosen_tool(tool_config: Any, turns: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The function called: the forced one, else the first unless the last turn returns tool results."""
    if not isinstance(tool_config, dict) or not isinstance(tool_config.get("tools"), list):
        return None
    specs = [
        t["toolSpec"]
        for t in tool_config["tools"]
        if isinstance(t, dict) and isinstance(t.get("toolSpec"), dict)
    ]
    if not specs:
        raise _invalid("toolConfig.tools must hold toolSpec entries.")
    functions = [
        {"name": s.get("name"), "parameters": (s.get("inputSchema") or {}).get("json")} for s in specs
    ]
    choice = tool_config.get("toolChoice") or {"auto": {}}
    if isinstance(choice.get("tool"), dict):
        return next((f for f in functions if f["name"] == choice["tool"].get("name")), functions[0])
    answered = any("toolResult" in b for b in turns[-1]["content"] if isinstance(b, dict))
    return None if answered and "auto" in choice else functions[0]


def _tool_use(answer: gen.Answer) -> dict[str, Any]:
    call = answer.tool_call
    assert call is not None
    return {
        "toolUse": {
            "toolUseId": "tooluse_" + call.id[5:],
            "name": call.name,
            "input": orjson.loads(call.arguments),
        }
    }


def _usage(prompt: int, output: int) -> dict[str, int]:
    return {"inputTokens": prompt, "outputTokens": output, "totalTokens": prompt + output}


def _event(name: str, doc: dict[str, Any]) -> bytes:
    return event(name, orjson.dumps({**doc, "p": _PAD[: 1 + len(name) % 20]}))


async def _converse_stream(
    request: web.Request,
    state: SimState,
    arrival: Arrival,
    headers: dict[str, str],
    answer: gen.Answer,
    prompt: int,
) -> web.StreamResponse:
    steps = _stream_steps(answer)
    steps[0] = _event("messageStart", {"role": "assistant"}) + steps[0]
    tail = (
        _event("contentBlockStop", {"contentBlockIndex": 0})
        + _event("messageStop", {"stopReason": _STOP_REASONS[answer.finish_reason]})
        + _event("metadata", {"usage": _usage(prompt, answer.tokens), "metrics": {"latencyMs": 1}})
    )
    knobs = state.knobs
    if knobs.stream_exception_after_tokens is not None:
        steps = steps[: knobs.stream_exception_after_tokens]
        message = f"Simulated {knobs.stream_exception}."
        tail = exception(knobs.stream_exception, orjson.dumps({"message": message}))
    headers = {**headers, "content-type": EVENT_STREAM}
    return await paced_write(request, knobs, arrival, headers, steps or [b""], tail)


def _stream_steps(answer: gen.Answer) -> list[bytes]:
    call = answer.tool_call
    if call is None:
        return [
            _event("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": piece}})
            for piece in answer.pieces
        ] or [b""]
    start = {"toolUse": {"toolUseId": "tooluse_" + call.id[5:], "name": call.name}}
    deltas = [
        _event("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"toolUse": {"input": piece}}})
        for piece in gen.split_pieces(call.arguments)
    ]
    deltas[0] = _event("contentBlockStart", {"contentBlockIndex": 0, "start": start}) + deltas[0]
    return deltas


# SageMaker


def payload_parts(sse: bytes) -> bytes:
    """The container's SSE bytes as SageMaker streams them: PayloadPart messages whose cuts fall anywhere
    (here in the middle of each write, so a client must join them)."""
    if not sse:
        return b""
    cut = max(1, len(sse) // 2)
    return b"".join(encode_message(_PAYLOAD_HEADERS, part) for part in (sse[:cut], sse[cut:]) if part)


_PAYLOAD_HEADERS = {
    ":event-type": "PayloadPart",
    ":content-type": "application/octet-stream",
    ":message-type": "event",
}


def model_stream_error(name: str) -> bytes:
    """SageMaker's stream exception message (ModelStreamError, InternalStreamFailure)."""
    return exception(name, orjson.dumps({"Message": f"Simulated {name}.", "ErrorCode": "StreamBroken"}))


PAYLOAD_PART_FRAMING = Framing(EVENT_STREAM, payload_parts, model_stream_error)


def sagemaker_model(request: web.Request, state: SimState, raw: Any) -> dict[str, Any]:
    """The container's body with the endpoint name as its model (the OpenAI handler then serves it)."""
    name = request.match_info["endpoint"]
    if name not in state.profile.models:
        raise ApiError(400, f"Endpoint {name} of account 000000000000 not found.", code="ValidationError")
    if not isinstance(raw, dict):
        raise ApiError(400, "We could not parse the JSON body of your request.")
    return {**raw, "model": name}
