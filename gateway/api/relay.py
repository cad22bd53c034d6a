"""The shared path of every proxied call: authenticate, parse once, plan, attempt, respond, log once."""

from __future__ import annotations

import hmac
import os
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from gateway.errors import AuthenticationFailed, BadRequest, GatewayError
from gateway.providers.base import Operation, ProviderError
from gateway.routing.router import Completed, OpenStream, Plan, cost_usd
from gateway.runtime import Runtime
from gateway.streaming import DONE, DONE_EVENT, encode, error_event

Validator = Callable[[dict[str, Any]], None]
JSON = "application/json"


def runtime(request: Request) -> Runtime:
    rt: Runtime = request.app.state.runtime
    return rt


def authenticate(rt: Runtime, request: Request) -> None:
    if not rt.client_keys:
        return
    auth = request.headers.get("authorization", "")
    scheme, _, key = auth.partition(" ")
    if scheme.lower() == "bearer" and any(hmac.compare_digest(key.strip(), k) for k in rt.client_keys):
        return
    raise AuthenticationFailed("Missing or invalid API key in the Authorization header")


def parse_body(raw: bytes) -> dict[str, Any]:
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"The request body is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise BadRequest("The request body must be a JSON object")
    return body


def request_id(request: Request) -> str:
    rid = request.headers.get("x-request-id", "")
    return rid[:128] if rid.isascii() and rid.isprintable() and rid else os.urandom(12).hex()


async def relay(request: Request, op: Operation, validate: Validator) -> Response:
    rt = runtime(request)
    started = time.perf_counter()
    rid = request_id(request)
    fields: dict[str, Any] = {"request_id": rid, "path": request.url.path, "op": op}
    try:
        authenticate(rt, request)
        body = parse_body(await request.body())
        validate(body)
        fields["model"] = body["model"]
        plan = rt.router.plan(rt.catalog, op, body, request.headers.get("x-routeway-objective"))
        fields["route"] = plan.route.name
        if body.get("stream") is True and op != "embeddings":
            opened = await rt.router.open_stream(plan, body)
            headers = _route_headers(rid, opened.target.backend, opened.target.model_id, opened.log.attempts)
            gen = _relay_stream(rt, opened, fields, started)
            return StreamingResponse(gen, media_type="text/event-stream", headers=headers)
        done = await rt.router.complete(plan, body)
    except GatewayError as err:
        _access(rt, fields, started, err.status, error=err.code or err.type)
        err.headers.setdefault("x-request-id", rid)
        raise
    return _respond(rt, plan, done, rid, fields, started)


def _respond(
    rt: Runtime, plan: Plan, done: Completed, rid: str, fields: dict[str, Any], started: float
) -> Response:
    target, usage = done.target, done.parsed.usage
    headers = _route_headers(rid, target.backend, target.model_id, done.log.attempts)
    cost = cost_usd(target, usage)
    if cost is not None:
        headers["x-routeway-cost-usd"] = f"{cost:.8f}"
    fields.update(backend=target.backend, attempts=done.log.attempts, cost_usd=cost)
    if usage is not None:
        fields.update(input_tokens=usage.input_tokens, output_tokens=usage.output_tokens)
    _access(rt, fields, started, 200)
    return Response(done.parsed.body, media_type=JSON, headers=headers)


def _route_headers(rid: str, backend: str, model_id: str, attempts: int) -> dict[str, str]:
    return {
        "x-request-id": rid,
        "x-routeway-backend": backend,
        "x-routeway-model": model_id,
        "x-routeway-attempts": str(attempts),
    }


async def _relay_stream(
    rt: Runtime, s: OpenStream, fields: dict[str, Any], started: float
) -> AsyncIterator[bytes]:
    """After the first byte there is no failover: a cut, stall or bad chunk ends the stream with an error
    event and never with [DONE]. Closing the upstream in `finally` also covers a client that went away."""
    finished = False
    outcome = "client_disconnected"
    try:
        out = _encode_events(s, s.first, translate=False)
        if out[1]:
            finished = True
        yield out[0]
        while not finished:
            try:
                chunk = await anext(s.chunks)
            except StopAsyncIteration:
                raise ProviderError("protocol", "upstream closed the stream before it finished") from None
            data, finished = _encode_events(s, s.decoder.feed(chunk))
            if data:
                yield data
        outcome = "ok"
    except ProviderError as err:
        outcome = f"{err.kind}: {err.message}"
        yield error_event(
            f"The upstream stream from '{s.target.backend}' failed after it started: {err.message}"
        )
    finally:
        if finished:
            s.reply.release()
        else:
            s.reply.close()
        usage = s.translator.usage
        fields.update(backend=s.target.backend, attempts=s.log.attempts, stream=outcome, partial=not finished)
        if usage is not None:
            fields.update(input_tokens=usage.input_tokens, output_tokens=usage.output_tokens)
            fields["cost_usd"] = cost_usd(s.target, usage)
        _access(rt, fields, started, 200)


def _encode_events(s: OpenStream, events: list[bytes], translate: bool = True) -> tuple[bytes, bool]:
    """Encodes what arrived in one upstream read as one write; True once [DONE] was seen."""
    parts: list[bytes] = []
    for data in events:
        if data == DONE:
            parts.append(DONE_EVENT)
            return b"".join(parts), True
        if translate:
            translated = s.translator.translate(data)
            if translated is None:
                continue
            data = translated
        parts.append(encode(data))
    return b"".join(parts), False


def _access(
    rt: Runtime, fields: dict[str, Any], started: float, status: int, error: str | None = None
) -> None:
    if not rt.settings.access_log:
        return
    fields["status"] = status
    fields["latency_ms"] = round((time.perf_counter() - started) * 1000, 2)
    if error:
        fields["error"] = error
    rt.access.info("request", extra=fields)


# Light validation of the fields we use; everything else passes through untouched.


def require_model(body: dict[str, Any]) -> None:
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise BadRequest("'model' is required and must be a non-empty string", param="model")


def optional_int(body: dict[str, Any], key: str, minimum: int = 1) -> None:
    value = body.get(key)
    if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < minimum):
        raise BadRequest(f"'{key}' must be an integer >= {minimum}", param=key)


def optional_bool(body: dict[str, Any], key: str) -> None:
    value = body.get(key)
    if value is not None and not isinstance(value, bool):
        raise BadRequest(f"'{key}' must be a boolean", param=key)


def optional_number(body: dict[str, Any], key: str, low: float, high: float) -> None:
    value = body.get(key)
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        raise BadRequest(f"'{key}' must be a number between {low:g} and {high:g}", param=key)


def common_sampling(body: dict[str, Any]) -> None:
    require_model(body)
    optional_bool(body, "stream")
    optional_int(body, "max_tokens")
    optional_int(body, "max_completion_tokens")
    optional_int(body, "n")
    optional_number(body, "temperature", 0, 2)
    optional_number(body, "top_p", 0, 1)
    opts = body.get("stream_options")
    if opts is not None and not isinstance(opts, dict):
        raise BadRequest("'stream_options' must be an object", param="stream_options")
