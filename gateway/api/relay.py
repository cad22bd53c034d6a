"""The shared path of every proxied call: principal, parse once, plan, guards, attempt, answer, log once."""

from __future__ import annotations

import asyncio
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
from gateway.endpoints.spec import ClientStreamEncoder, EndpointSpec, same_body, same_response
from gateway.errors import BadRequest, GatewayError, StreamFailed, StreamInterrupted
from gateway.events import Observers, RequestRecord
from gateway.providers.base import ProviderError, Target, Usage
from gateway.routing.preferences import take_preferences
from gateway.routing.router import Completed, OpenStream, Plan, cost_usd
from gateway.runtime import Runtime

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


@dataclass(slots=True)
class Answer:
    """A whole (non-streaming) JSON response. Its request is finished (metrics, telemetry, the access log
    line, spans) by `finished()`, which the front calls once the bytes are written: ~30 µs a request that
    no longer sit between the upstream's answer and the client's (measured with the observers timed in a
    `routeway serve` under sequential requests)."""

    body: bytes
    headers: dict[str, str]
    req: RequestRecord
    observers: Observers
    status: int = 200

    def finished(self) -> None:
        self.observers.request_finished(self.req)


async def relay(
    rt: Runtime,
    endpoint: EndpointSpec,
    headers: Mapping[str, str],
    read_body: Callable[[], Awaitable[bytes | bytearray]],
) -> Answer | RelayStream:
    """Serves one call of `endpoint`: the client's body is validated and translated to the canonical one,
    which is planned, guarded and sent; the answer is translated back. A GatewayError leaves with
    `x-request-id` set, after the request was recorded."""
    req = RequestRecord(
        rt.request_ids.take(headers), endpoint.operation, endpoint.path, incoming_headers=headers
    )
    req.operation_name = endpoint.genai_operation
    observers = rt.router.observers
    observers.request_started(req)
    principal = ANONYMOUS
    admitted: Plan | None = None  # set once the guards saw the plan: from then on settle is owed
    try:
        principal = await authenticate(rt, headers)
        req.principal = principal.label
        client_body = parse_body(await read_body())
        endpoint.validate(client_body)
        prefs = take_preferences(client_body, headers)
        if endpoint.begin is not None:  # this call's spec, bound to the state it read (stored responses)
            endpoint = await endpoint.begin(rt, principal, client_body)
        # OpenAI's own routes are already canonical: their identity translations are not called.
        body = client_body if endpoint.to_backend is same_body else endpoint.to_backend(client_body)
        req.model = body["model"]
        if rt.request_log is not None:  # only then: finished records are kept (dashboard), bodies need not be
            req.body = body
        plan = rt.router.plan(rt.catalog, endpoint, body, prefs, req)
        req.candidates, req.dropped, req.pick = plan.ranked, plan.dropped, plan.pick
        if plan.route.shadow is not None and rt.shadow is not None:  # one draw; mirrored once answered
            rt.shadow.consider(plan, body, req, rt.catalog.targets.get(req.model, []))
        if rt.guards.concern(principal):
            admitted = plan
            await rt.guards.admit(principal, plan, req)
            req.candidates = plan.ranked  # a guard may have narrowed it
        if endpoint.streams(body):
            assert endpoint.stream_encoder is not None  # streams() said so
            req.stream = True
            encoder = endpoint.stream_encoder(client_body)  # before the upstream call: nothing to undo
            opened = await rt.router.open_stream(plan, body, req)
            media = endpoint.media_type
            return RelayStream(rt, encoder, media, opened, req, principal, admitted, endpoint.commit)
        done = await rt.router.complete(plan, body, req)
        answer = done.parsed.body
        if endpoint.from_backend is not same_response:
            answer = endpoint.from_backend(answer, client_body)
        if endpoint.commit is not None:
            await endpoint.commit()
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
    return _respond(rt, answer, done, req, principal, admitted)


class ClientGone(Exception):
    """The client disconnected before its request body arrived whole."""


class RelayStream(StreamingResponse):
    """The stream in the endpoint's format; if the client is gone before the first write, the upstream is
    still closed."""

    def __init__(
        self,
        rt: Runtime,
        encoder: ClientStreamEncoder,
        media_type: str,
        opened: OpenStream,
        req: RequestRecord,
        principal: Principal,
        plan: Plan | None,
        commit: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self._relay = _StreamState(rt, opened, encoder, req, principal, plan, commit)
        super().__init__(
            _relay_stream(self._relay),
            media_type=media_type,
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
    rt: Runtime, body: bytes, done: Completed, req: RequestRecord, principal: Principal, plan: Plan | None
) -> Answer:
    headers = _route_headers(req, done.target)
    _account(req, done.target, done.parsed.usage)
    if req.cost_usd is not None:
        headers["x-routeway-cost-usd"] = f"{req.cost_usd:.8f}"
    req.status = 200
    _settle(rt, principal, plan, req, done.parsed.usage)
    return Answer(body, headers, req, rt.router.observers)


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
    probe = req.pick == "probe"  # the request carried a probe even when a failover or hedge answered it
    if req.candidates and req.candidates[0].target is not target:
        req.pick = "fallback"  # a later candidate answered (failover or hedge): the plan's label is moot
    headers = {
        "x-request-id": req.request_id,
        "x-routeway-backend": target.backend,
        "x-routeway-model": target.model_id,
        "x-routeway-attempts": str(len(req.attempts)),
        "x-routeway-pick": req.pick or "best",
    }
    if probe:  # sent to renew a backend's figures, not because it looked best: say so
        headers["x-routeway-probe"] = "true"
    return headers


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
    encoder: ClientStreamEncoder
    req: RequestRecord
    principal: Principal
    plan: Plan | None  # None: no guard concerned this caller, nothing to settle
    commit: Callable[[], Awaitable[None]] | None = None  # the endpoint's, awaited before the clean end
    started: bool = False


async def _relay_stream(state: _StreamState) -> AsyncIterator[bytes]:
    """Writes what each upstream read made, in the client's format, as one write. After the first byte there
    is no failover: a cut, stall, bad event or an upstream that stops before its clean end ends the stream
    with the client's error event, never its clean end. Closing the upstream in `finally` also covers a
    client that went away."""
    if state.started:
        return
    state.started = True
    s, enc = state.s, state.encoder
    upstream = s.upstream
    finished = False
    att = s.attempt.record
    att.outcome = "cancelled"  # until the stream ends one way or the other
    try:
        chunks, raw = s.first, upstream.chunks
        while True:
            data = _encode(enc, chunks)
            if upstream.done:
                finished = True
                data += enc.finish()
                if state.commit is not None:
                    await state.commit()
                yield data
                break
            if data:
                yield data
            try:
                chunk = await anext(raw)
            except StopAsyncIteration:
                chunks = upstream.end()
            else:
                chunks = upstream.feed(chunk)
        att.outcome = "ok"
    except ProviderError as err:
        att.outcome, att.error = err.kind, err.message
        msg = f"The upstream stream from '{s.target.backend}' failed after it started: {err.message}"
        yield enc.error(StreamInterrupted(msg))
    except Exception as exc:  # noqa: BLE001 - a bug still ends the stream with an error event, not a cut
        att.outcome, att.error = "error", type(exc).__name__
        state.rt.log.error(
            "stream failed after it started",
            extra={"request_id": state.req.request_id, "exc_type": type(exc).__name__},
        )
        yield enc.error(StreamFailed("The stream failed after it started (internal error)"))
    finally:
        _finish_stream(state, finished)


def _encode(enc: ClientStreamEncoder, chunks: list[bytes]) -> bytes:
    if len(chunks) == 1:
        return enc.encode(chunks[0])
    return b"".join([enc.encode(c) for c in chunks])


def _finish_stream(state: _StreamState, finished: bool) -> None:
    rt, s, req = state.rt, state.s, state.req
    usage = s.upstream.usage
    if usage is None and s.upstream.translator.output_chars and state.plan is not None:
        # No usage from the upstream (cut, or it sends none): the gateway's own count, ~4 chars a token.
        usage = Usage(state.plan.estimate.input_tokens, -(-s.upstream.translator.output_chars // 4))
    _account(req, s.target, usage)
    req.status = 200
    if not finished:
        req.error = "client_disconnected" if s.attempt.record.outcome == "cancelled" else "stream_interrupted"
    s.attempt.end_stream(finished, usage)
    _settle(rt, state.principal, state.plan, req, usage)
    rt.router.observers.request_finished(req)
