"""The shared path of every proxied call: principal, parse once, plan, guards, attempt, answer, log once."""

from __future__ import annotations

import asyncio
import itertools
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from gateway.access import principal as access
from gateway.access.principal import ANONYMOUS, Principal
from gateway.api.depth import MAX_JSON_DEPTH, too_deep
from gateway.errors import BadRequest, GatewayError
from gateway.events import RequestRecord
from gateway.providers.base import Operation, ProviderError, Target, Usage
from gateway.routing.preferences import take_preferences
from gateway.routing.router import Completed, OpenStream, Plan, cost_usd
from gateway.runtime import Runtime
from gateway.streaming import DONE, DONE_EVENT, encode, error_event

Validator = Callable[[dict[str, Any]], None]
JSON = "application/json"


def runtime(request: Request) -> Runtime:
    rt: Runtime = request.app.state.runtime
    return rt


async def authenticate(rt: Runtime, headers: Mapping[str, str]) -> Principal:
    """The caller of a /v1 route, for the raw-ASGI front and the FastAPI routes alike."""
    if rt.tenancy is not None:  # static keys, then virtual keys through the lookup cache
        return await rt.tenancy.identity.client(headers)
    return access.client(rt.keys, headers)


def parse_body(raw: bytes | bytearray) -> dict[str, Any]:
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"The request body is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise BadRequest("The request body must be a JSON object")
    if too_deep(raw, body):
        raise BadRequest(
            f"The request body nests JSON deeper than {MAX_JSON_DEPTH} levels", code="json_too_deep"
        )
    return body


# Request ids: a random per-process prefix and a counter (unique across replicas, no syscall per request).
_ID_PREFIX = os.urandom(6).hex()
_ID_COUNTER = itertools.count(1)


def request_id(headers: Mapping[str, str]) -> str:
    rid = headers.get("x-request-id", "")
    if rid and rid.isascii() and rid.isprintable():
        return rid[:128]
    return f"{_ID_PREFIX}{next(_ID_COUNTER):012x}"


@dataclass(slots=True)
class Answer:
    """A whole (non-streaming) JSON response."""

    body: bytes
    headers: dict[str, str]
    status: int = 200


async def relay(
    rt: Runtime,
    op: Operation,
    path: str,
    headers: Mapping[str, str],
    read_body: Callable[[], Awaitable[bytes | bytearray]],
    validate: Validator,
) -> Answer | RelayStream:
    """Serves one call; a GatewayError leaves with `x-request-id` set, after the request was recorded."""
    req = RequestRecord(request_id(headers), op, path, incoming_headers=headers)
    observers = rt.router.observers
    observers.request_started(req)
    principal = ANONYMOUS
    admitted: Plan | None = None  # set once the guards saw the plan: from then on settle is owed
    try:
        principal = await authenticate(rt, headers)
        req.principal = principal.label
        body = parse_body(await read_body())
        validate(body)
        req.model = body["model"]
        if rt.request_log is not None:  # only then: finished records are kept (dashboard), bodies need not be
            req.body = body
        plan = rt.router.plan(rt.catalog, op, body, take_preferences(body, headers), req)
        req.candidates, req.dropped, req.pick = plan.ranked, plan.dropped, plan.pick
        if rt.guards:
            admitted = plan
            await rt.guards.admit(principal, plan, req)
            req.candidates = plan.ranked  # a guard may have narrowed it
        if body.get("stream") is True and op != "embeddings":
            req.stream = True
            opened = await rt.router.open_stream(plan, body, req)
            return RelayStream(rt, opened, req, principal, admitted)
        done = await rt.router.complete(plan, body, req)
    except GatewayError as err:
        req.status, req.error = err.status, err.code or err.type
        _settle(rt, principal, admitted, req, None)
        observers.request_finished(req)
        _error_headers(err, req)
        raise
    except BaseException as exc:
        # A bug, or the client going away mid-request: still one finished record (gauges, spans, log).
        gone = isinstance(exc, asyncio.CancelledError | ClientGone)
        req.status, req.error = (499, "client_disconnected") if gone else (500, "internal_error")
        _settle(rt, principal, admitted, req, None)
        observers.request_finished(req)
        raise
    return _respond(rt, done, req, principal, admitted)


class ClientGone(Exception):
    """The client disconnected before its request body arrived whole."""


class RelayStream(StreamingResponse):
    """The SSE response; if the client is gone before the first write, the upstream is still closed."""

    def __init__(
        self, rt: Runtime, opened: OpenStream, req: RequestRecord, principal: Principal, plan: Plan | None
    ) -> None:
        self._relay = _StreamState(rt, opened, req, principal, plan)
        super().__init__(
            _relay_stream(self._relay),
            media_type="text/event-stream",
            headers=_route_headers(req, opened.target),
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            if not self._relay.started:
                self._relay.started = True
                _finish_stream(self._relay, finished=False)


def _respond(
    rt: Runtime, done: Completed, req: RequestRecord, principal: Principal, plan: Plan | None
) -> Answer:
    headers = _route_headers(req, done.target)
    _account(req, done.target, done.parsed.usage)
    if req.cost_usd is not None:
        headers["x-routeway-cost-usd"] = f"{req.cost_usd:.8f}"
    req.status = 200
    _settle(rt, principal, plan, req, done.parsed.usage)
    rt.router.observers.request_finished(req)
    return Answer(done.parsed.body, headers)


def _settle(
    rt: Runtime, principal: Principal, plan: Plan | None, req: RequestRecord, usage: Usage | None
) -> None:
    """The guards' settlement with the real usage, once per request the guards admitted (or refused)."""
    if plan is not None:
        rt.guards.settle(principal, plan, req, usage, req.cost_usd)


def _account(req: RequestRecord, target: Target, usage: Usage | None) -> None:
    req.backend = target.backend
    if usage is not None:
        req.input_tokens, req.output_tokens = usage.input_tokens, usage.output_tokens
        req.cost_usd = cost_usd(target, usage)


def _route_headers(req: RequestRecord, target: Target) -> dict[str, str]:
    if req.candidates and req.candidates[0].target is not target:
        req.pick = "fallback"  # a later candidate answered (failover or hedge): the plan's label is moot
    return {
        "x-request-id": req.request_id,
        "x-routeway-backend": target.backend,
        "x-routeway-model": target.model_id,
        "x-routeway-attempts": str(len(req.attempts)),
        "x-routeway-pick": req.pick or "best",
    }


def _error_headers(err: GatewayError, req: RequestRecord) -> None:
    """What an error answer can truthfully say: its id, how many upstream attempts ran and where."""
    headers = err.headers
    headers.setdefault("x-request-id", req.request_id)
    headers["x-routeway-attempts"] = str(len(req.attempts))
    if req.attempts:
        headers["x-routeway-backends-tried"] = ",".join([a.target.backend for a in req.attempts])


@dataclass(slots=True)
class _StreamState:
    rt: Runtime
    s: OpenStream
    req: RequestRecord
    principal: Principal
    plan: Plan | None  # None: no guards, nothing to settle
    started: bool = False


async def _relay_stream(state: _StreamState) -> AsyncIterator[bytes]:
    """After the first byte there is no failover: a cut, stall or bad chunk ends the stream with an error
    event and never with [DONE]. Closing the upstream in `finally` also covers a client that went away."""
    if state.started:
        return
    state.started = True
    s = state.s
    finished = False
    att = s.attempt.record
    att.outcome = "cancelled"  # until the stream ends one way or the other
    try:
        data, finished = _encode_events(s, s.first, translate=False)
        yield data
        while not finished:
            try:
                chunk = await anext(s.chunks)
            except StopAsyncIteration:
                raise ProviderError("protocol", "upstream closed the stream before it finished") from None
            data, finished = _encode_events(s, s.decoder.feed(chunk))
            if data:
                yield data
        att.outcome = "ok"
    except ProviderError as err:
        att.outcome, att.error = err.kind, err.message
        yield error_event(
            f"The upstream stream from '{s.target.backend}' failed after it started: {err.message}"
        )
    except Exception as exc:  # noqa: BLE001 - a bug still ends the stream with an error event, not a cut
        att.outcome, att.error = "error", type(exc).__name__
        state.rt.log.error(
            "stream failed after it started",
            extra={"request_id": state.req.request_id, "exc_type": type(exc).__name__},
        )
        yield error_event("The stream failed after it started (internal error)", type_="server_error")
    finally:
        _finish_stream(state, finished)


def _finish_stream(state: _StreamState, finished: bool) -> None:
    rt, s, req = state.rt, state.s, state.req
    usage = s.translator.usage
    if usage is None and s.translator.output_chars and state.plan is not None:
        # No usage from the upstream (cut, or it sends none): the gateway's own count, ~4 chars a token.
        usage = Usage(state.plan.estimate.input_tokens, -(-s.translator.output_chars // 4))
    _account(req, s.target, usage)
    req.status = 200
    if not finished:
        req.error = "client_disconnected" if s.attempt.record.outcome == "cancelled" else "stream_interrupted"
    s.attempt.end_stream(finished, usage)
    _settle(rt, state.principal, state.plan, req, usage)
    rt.router.observers.request_finished(req)


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
