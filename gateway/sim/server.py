"""The aiohttp application of one simulated provider: OpenAI endpoints plus `/sim/*` control routes."""

from __future__ import annotations

import asyncio
import dataclasses
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from aiohttp import web

from gateway.sim import aws, vertex
from gateway.sim import generate as gen
from gateway.sim import responses as out
from gateway.sim.faults import (
    ABORTED,
    ApiError,
    abort_connection,
    admit,
    injected_fault,
    json_response,
    wait_forever,
)
from gateway.sim.metrics_page import metrics_page
from gateway.sim.profiles import Profile
from gateway.sim.state import Arrival, KnobError, SimState
from gateway.sim.streaming import CLIENT_GONE, FRAMING, non_stream_delay, stream_events

STATE: web.AppKey[SimState] = web.AppKey("sim_state", SimState)
_MALFORMED = object()  # parsed-body marker for a request whose body is not JSON
_MAX_N = 128

Handler = Callable[[web.Request, SimState, Arrival, Any], Awaitable[web.StreamResponse]]
Authorise = Callable[[web.Request, Profile], Awaitable[None]]
Wire = Callable[[web.StreamResponse], web.StreamResponse]


def create_app(profile: Profile) -> web.Application:
    """One server playing `profile`; run it with `AppRunner(app, handler_cancellation=True)`.

    Handler cancellation lets hung and stalled requests notice a client that gave up.
    """
    app = web.Application(client_max_size=64 * 1024 * 1024)
    app[STATE] = SimState(profile)
    app.router.add_post("/v1/chat/completions", _tracked(_chat, inference=True))
    app.router.add_post("/v1/completions", _tracked(_completions, inference=True))
    app.router.add_post("/v1/embeddings", _tracked(_embeddings, inference=True))
    app.router.add_get("/v1/models", _tracked(_models, inference=False))
    # AWS: Bedrock Runtime's Converse (the model id in the path) and SageMaker Runtime's invoke routes.
    for action in ("converse", "converse-stream"):
        converse = _tracked(aws.converse, True, aws.signed_by("bedrock"), aws.bedrock_errors)
        app.router.add_post(f"/model/{{model_id}}/{action}", converse)
    for action in ("invocations", "invocations-response-stream"):
        invoke = _tracked(_sagemaker, True, aws.signed_by("sagemaker"), aws.sagemaker_errors)
        app.router.add_post(f"/endpoints/{{endpoint}}/{action}", invoke)
    app.router.add_get("/sim/control", _get_control)
    app.router.add_post("/sim/control", _post_control)
    app.router.add_post("/sim/reset", _post_reset)
    app.router.add_get("/sim/stats", _get_stats)
    app.router.add_get("/sim/profile", _get_profile)
    app.router.add_get("/metrics", _get_metrics)  # vLLM's load gauges, from the real in-flight count
    if profile.vertex is not None:  # Vertex AI's layout, OAuth and google.rpc.Status errors
        chat = _tracked(_chat, True, vertex.authorise, vertex.google_errors(profile))
        app.router.add_post(vertex.CHAT_PATH, chat)
        vertex.add_routes(app, profile)
    return app


def _tracked(
    handler: Handler, inference: bool, authorise: Authorise | None = None, wire: Wire | None = None
) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """Wrap an API handler with statistics, authentication, injected faults and error rendering
    (`authorise`: the route's check, a Bearer key by default; `wire`: errors in the route's own shape).

    Only hang and reset reach `/v1/models`: a dead server is dead for probes too, while error and
    rate-limit dice stay on the inference routes whose retries they are meant to exercise.
    """

    async def run(request: web.Request) -> web.StreamResponse:
        state = request.app[STATE]
        stats = state.stats  # kept so a `/sim/reset` mid-request cannot unbalance the new counters
        arrival = stats.record_arrival(request.path, request.headers)
        stats.in_flight += 1
        try:
            body = await _read_body(request) if request.can_read_body else None
            stats.record_body(arrival, None if body is _MALFORMED else body)
            response = await _respond(request, state, handler, arrival, body, inference, authorise or _bearer)
            if wire is not None:
                response = wire(response)
        except (asyncio.CancelledError, ConnectionResetError):
            if not request.get(ABORTED):
                stats.record_cancel()
            raise
        finally:
            stats.in_flight -= 1
        if request.get(CLIENT_GONE):
            stats.record_cancel()
        elif not request.get(ABORTED) and arrival.status is None:
            arrival.status = response.status
        return response

    return run


async def _respond(
    request: web.Request,
    state: SimState,
    handler: Handler,
    arrival: Arrival,
    body: Any,
    inference: bool,
    authorise: Authorise,
) -> web.StreamResponse:
    try:
        await authorise(request, state.profile)
        if inference:
            fault = await injected_fault(request, state)
            if fault is not None:
                return fault
        elif state.knobs.hang:
            await wait_forever()
        elif state.knobs.reset:
            abort_connection(request)
            return web.Response(status=500)
        return await handler(request, state, arrival, body)
    except ApiError as error:
        return error.response()


async def _read_body(request: web.Request) -> Any:
    raw = await request.read()
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return _MALFORMED


async def _bearer(request: web.Request, profile: Profile) -> None:
    _authorise(request, profile)


def _authorise(request: web.Request, profile: Profile) -> None:
    if profile.api_key is None:
        return
    given = request.headers.get("Authorization", "")
    if given == f"Bearer {profile.api_key}":
        return
    if not given:
        message = (
            "You didn't provide an API key. You need to provide your API key in an Authorization header."
        )
    else:
        message = "Incorrect API key provided. You can find your API key in your provider's console."
    raise ApiError(401, message, "invalid_request_error", None, "invalid_api_key")


def _require_object(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise ApiError(400, "We could not parse the JSON body of your request: expected a JSON object.")
    return body


def _require_model(state: SimState, body: dict[str, Any]) -> str:
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise ApiError(400, "You must provide a model parameter.", param="model")
    if model not in state.profile.models:
        message = f"The model `{model}` does not exist or you do not have access to it."
        raise ApiError(404, message, param="model", code="model_not_found")
    return model


def _int_param(body: dict[str, Any], key: str, default: int | None, minimum: int) -> int | None:
    value = body.get(key)
    if value is None:
        return default
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ApiError(400, f"Invalid '{key}': expected an integer >= {minimum}.", param=key)
    return value


def _max_tokens(body: dict[str, Any]) -> int | None:
    explicit = _int_param(body, "max_completion_tokens", None, 1)
    return explicit if explicit is not None else _int_param(body, "max_tokens", None, 1)


def _check_context(profile: Profile, prompt: int, requested: int) -> None:
    total = prompt + requested
    if total > profile.context_window:
        message = (
            f"This model's maximum context length is {profile.context_window} tokens. However, your messages "
            f"resulted in {total} tokens. Please reduce the length of the messages."
        )
        raise ApiError(400, message, param="messages", code="context_length_exceeded")


def _reply(state: SimState, prefix: str, model: str, body: dict[str, Any]) -> out.Reply:
    logprobs = body.get("logprobs")
    wants_logprobs, top = False, 0
    if logprobs is True:
        wants_logprobs, top = True, _int_param(body, "top_logprobs", 0, 0) or 0
    elif isinstance(logprobs, int) and not isinstance(logprobs, bool):
        wants_logprobs, top = True, max(0, logprobs)  # legacy completions: the count is the switch
    stream_options = body.get("stream_options")
    include_usage = isinstance(stream_options, dict) and stream_options.get("include_usage") is True
    return out.Reply(
        id=f"{prefix}-{uuid.uuid4().hex[:24]}",
        created=int(time.time()),
        model=model,
        fingerprint="fp_" + state.profile.name.replace("-", "")[:10],
        omit_optional=state.profile.omit_optional,
        logprobs=wants_logprobs,
        top_logprobs=top,
        include_usage=include_usage and body.get("stream") is True,
    )


def _headers(state: SimState, rate_headers: dict[str, str], reply_id: str) -> dict[str, str]:
    return {**rate_headers, "x-request-id": f"req_{reply_id[-24:]}", "x-sim-profile": state.profile.name}


async def _chat(request: web.Request, state: SimState, arrival: Arrival, raw: Any) -> web.StreamResponse:
    body = _require_object(raw)
    model = _require_model(state, body)
    messages = body.get("messages")
    if not isinstance(messages, list):
        raise ApiError(
            400,
            "Missing required parameter: 'messages'.",
            param="messages",
            code="missing_required_parameter",
        )
    if not messages:
        raise ApiError(400, "[] is too short - 'messages'", param="messages", code="empty_array")
    n = _int_param(body, "n", 1, 1) or 1
    cap = _max_tokens(body)
    prompt = gen.messages_tokens(messages)
    _check_context(state.profile, prompt, cap or 0)
    rate_headers = admit(state, model, prompt + (cap or gen.DEFAULT_MAX_TOKENS) * min(n, _MAX_N))
    if request.get(vertex.GOOGLE):
        rate_headers = {}  # Vertex sends no x-ratelimit-* headers
    reply = _reply(state, "chatcmpl", model, body)
    answers = [_chat_answer(body, index, cap, reply.id) for index in range(min(n, _MAX_N))]
    headers = _headers(state, rate_headers, reply.id)
    if body.get("stream") is True:
        steps, roles = out.chat_stream_steps(reply, answers)
        steps = [roles + steps[0], *steps[1:]] if steps else [roles]
        tail = out.chat_stream_tail(reply, answers, prompt)
        return await stream_events(request, state.knobs, arrival, headers, steps, tail)
    await asyncio.sleep(non_stream_delay(state.knobs, max(a.tokens for a in answers)))
    return json_response(out.chat_completion(reply, answers, prompt), headers=headers)


async def _sagemaker(request: web.Request, state: SimState, arrival: Arrival, raw: Any) -> web.StreamResponse:
    """InvokeEndpoint(WithResponseStream) on an LMI/vLLM-style container: OpenAI's chat body and answer;
    the stream's SSE bytes go out inside PayloadPart messages."""
    body = aws.sagemaker_model(request, state, raw)
    arrival.model = body["model"]
    if request.path.endswith("-response-stream"):
        request[FRAMING] = aws.PAYLOAD_PART_FRAMING
    return await _chat(request, state, arrival, body)


def _seed(body: dict[str, Any]) -> int:
    seed = body.get("seed")
    return seed if isinstance(seed, int) and not isinstance(seed, bool) else 0


def _chat_answer(body: dict[str, Any], index: int, cap: int | None, reply_id: str) -> gen.Answer:
    count = cap if cap is not None else gen.DEFAULT_MAX_TOKENS
    seed = _seed(body)
    tool = gen.chosen_tool(body.get("tools"), body.get("tool_choice"), body.get("messages"))
    if tool is not None:
        return gen.tool_answer(index, tool, seed, reply_id)
    response_format = body.get("response_format")
    if isinstance(response_format, dict) and response_format.get("type") in ("json_object", "json_schema"):
        return gen.json_answer(index, count, seed, response_format)
    return gen.text_answer(index, count, seed, gen.parse_stops(body.get("stop")), cap is not None)


async def _completions(
    request: web.Request, state: SimState, arrival: Arrival, raw: Any
) -> web.StreamResponse:
    body = _require_object(raw)
    model = _require_model(state, body)
    prompts = _prompt_list(body.get("prompt"))
    n = min(_int_param(body, "n", 1, 1) or 1, _MAX_N)
    cap = _int_param(body, "max_tokens", None, 1)
    count = cap if cap is not None else gen.DEFAULT_MAX_TOKENS
    prompt = gen.prompt_tokens(prompts)
    _check_context(state.profile, prompt, cap or 0)
    rate_headers = admit(state, model, prompt + count * n * len(prompts))
    reply = _reply(state, "cmpl", model, body)
    stops = gen.parse_stops(body.get("stop"))
    seed = _seed(body)
    answers = [
        gen.text_answer(p * n + i, count, seed, stops, cap is not None)
        for p in range(len(prompts))
        for i in range(n)
    ]
    headers = _headers(state, rate_headers, reply.id)
    if body.get("stream") is True:
        steps, tail = _completion_stream(reply, answers, prompt)
        return await stream_events(request, state.knobs, arrival, headers, steps, tail)
    await asyncio.sleep(non_stream_delay(state.knobs, max(a.tokens for a in answers)))
    return json_response(out.text_completion(reply, answers, prompt), headers=headers)


def _prompt_list(prompt: Any) -> list[Any]:
    """Legacy prompts: a string or token array is one prompt; a list of those is several."""
    if isinstance(prompt, str) or (isinstance(prompt, list) and prompt and isinstance(prompt[0], int)):
        return [prompt]
    if isinstance(prompt, list) and prompt and all(isinstance(p, str | list) for p in prompt):
        return prompt
    raise ApiError(
        400, "Missing required parameter: 'prompt'.", param="prompt", code="missing_required_parameter"
    )


def _completion_stream(
    reply: out.Reply, answers: list[gen.Answer], prompt: int
) -> tuple[list[list[out.Event]], list[out.Event]]:
    depth = max((len(a.pieces) for a in answers), default=0)
    steps = [
        [out.text_chunk(reply, a.index, a.pieces[i], None) for a in answers if i < len(a.pieces)]
        for i in range(depth)
    ]
    tail = [out.text_chunk(reply, a.index, "", a.finish_reason) for a in answers]
    if reply.include_usage:
        last = reply.header("text_completion", stream=True)
        last["choices"] = []
        last["usage"] = out.usage(prompt, sum(a.tokens for a in answers), reply.omit_optional)
        tail.append(last)
    return steps or [[]], tail


async def _embeddings(
    request: web.Request, state: SimState, arrival: Arrival, raw: Any
) -> web.StreamResponse:
    body = _require_object(raw)
    model = _require_model(state, body)
    items = _embedding_inputs(body.get("input"))
    encoding = body.get("encoding_format", "float")
    if encoding not in ("float", "base64"):
        raise ApiError(
            400, "Invalid 'encoding_format': expected 'float' or 'base64'.", param="encoding_format"
        )
    dim = _int_param(body, "dimensions", state.profile.embedding_dim, 1) or state.profile.embedding_dim
    prompt = gen.prompt_tokens(items)
    rate_headers = admit(state, model, prompt)
    await asyncio.sleep(state.knobs.ttft_ms / 1000.0)
    payload = out.embeddings(model, items, dim, encoding == "base64", prompt)
    return json_response(payload, headers=_headers(state, rate_headers, uuid.uuid4().hex))


def _embedding_inputs(value: Any) -> list[Any]:
    if isinstance(value, str) and value:
        return [value]
    if isinstance(value, list) and value and all(isinstance(v, int) for v in value):
        return [value]
    if isinstance(value, list) and value and all(isinstance(v, str | list) and v for v in value):
        return value
    raise ApiError(400, "'input' must be a non-empty string, token array, or list of them.", param="input")


async def _models(request: web.Request, state: SimState, arrival: Arrival, raw: Any) -> web.StreamResponse:
    owner = state.profile.hardware
    data = [
        {"id": m, "object": "model", "created": 1_700_000_000, "owned_by": owner}
        for m in state.profile.models
    ]
    return json_response({"object": "list", "data": data})


async def _get_control(request: web.Request) -> web.Response:
    return json_response(request.app[STATE].knobs.to_json())


async def _post_control(request: web.Request) -> web.Response:
    state = request.app[STATE]
    try:
        changes = orjson.loads(await request.read())
        if not isinstance(changes, dict):
            raise KnobError("the body must be a JSON object of knob values")
        state.update_knobs(changes)
    except (orjson.JSONDecodeError, KnobError) as exc:
        return ApiError(400, str(exc), code="invalid_knob").response()
    return json_response(state.knobs.to_json())


async def _post_reset(request: web.Request) -> web.Response:
    state = request.app[STATE]
    state.reset()
    return json_response(state.knobs.to_json())


async def _get_stats(request: web.Request) -> web.Response:
    return json_response(request.app[STATE].stats.to_json())


async def _get_metrics(request: web.Request) -> web.Response:
    body = metrics_page(request.app[STATE]).encode()
    return web.Response(body=body, headers={"content-type": "text/plain; version=0.0.4; charset=utf-8"})


async def _get_profile(request: web.Request) -> web.Response:
    return json_response(dataclasses.asdict(request.app[STATE].profile))
