"""Injected failures (hang, reset, fixed errors, random 5xx and 429) and the real rate limit."""

from __future__ import annotations

import asyncio
import socket
import struct
import time
from collections.abc import Mapping
from typing import Any

import orjson
from aiohttp import web

from gateway.sim.ratelimit import format_duration, retry_after_headers
from gateway.sim.responses import error_body
from gateway.sim.state import SimState

# Set when the server itself dropped the connection, so the disconnect is no client cancellation.
ABORTED = web.RequestKey("sim_aborted", bool)

_SERVER_ERRORS = {
    500: "The server had an error while processing your request. Sorry about that!",
    502: "Bad gateway.",
    503: "The server is overloaded or not ready yet.",
    504: "Gateway timeout.",
}


class ApiError(Exception):
    """An OpenAI-shaped error response, raised anywhere in a handler and rendered by the wrapper."""

    def __init__(
        self,
        status: int,
        message: str,
        type_: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.body = error_body(message, type_, param, code)
        self.headers = dict(headers or {})

    def response(self) -> web.Response:
        return json_response(self.body, self.status, self.headers)


def json_response(body: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> web.Response:
    return web.Response(
        body=orjson.dumps(body), status=status, headers=headers, content_type="application/json"
    )


def error_of(response: web.StreamResponse) -> tuple[dict[str, Any] | None, dict[str, str]] | None:
    """A finished error response's OpenAI `error` object (None when the body is not that shape) and its
    headers but the content ones, for a route that renders errors in its provider's shape; None for a
    success or a stream."""
    if response.status < 400 or not isinstance(response, web.Response):
        return None
    try:
        doc = orjson.loads(bytes(response.body)) if isinstance(response.body, bytes) else None
    except orjson.JSONDecodeError:
        doc = None
    error = doc.get("error") if isinstance(doc, dict) else None
    kept = {k: v for k, v in response.headers.items() if k.lower() not in ("content-type", "content-length")}
    return (error if isinstance(error, dict) else None), kept


def error_type_for(status: int) -> str:
    if status >= 500:
        return "server_error"
    if status == 429:
        return "requests"
    return "invalid_request_error"


async def wait_forever() -> None:
    """Park the handler; only a client disconnect (handler cancellation) or shutdown ends it."""
    await asyncio.Event().wait()


def abort_connection(request: web.BaseRequest, rst: bool = True) -> None:
    """Drop the TCP connection at once: with an RST (linger 0) like a crashed server, or a bare FIN.

    A FIN is used for mid-stream cuts because an RST may make the client's kernel discard chunks
    it has received but not yet read, which would make "cut after N tokens" fuzzy.
    """
    request[ABORTED] = True
    transport = request.transport
    if transport is None:
        return
    sock = transport.get_extra_info("socket")
    if rst and sock is not None:
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass  # already closed by the peer: a plain abort below does the same job
    transport.abort()


async def injected_fault(request: web.BaseRequest, state: SimState) -> web.StreamResponse | None:
    """The response a configured fault dictates, in the documented order, or None to serve normally."""
    knobs = state.knobs
    if knobs.hang:
        await wait_forever()
    if knobs.reset:
        abort_connection(request)
        # Nothing reaches the client; aiohttp notices the closed transport and drops this quietly.
        return web.Response(status=500)
    if knobs.bad_status_body is not None:
        return _fixed_response(knobs.bad_status_body)
    if state.roll(knobs.error_rate):
        status = knobs.error_status
        message = _SERVER_ERRORS.get(status, f"Simulated error {status}.")
        raise ApiError(status, message, error_type_for(status))  # rendered in the route's error shape
    if state.roll(knobs.rate_limit_rate):
        raise _simulated_429(state)
    return None


def _fixed_response(spec: dict[str, Any]) -> web.Response:
    status: int = spec["status"]
    headers: dict[str, str] = spec.get("headers") or {}
    body = spec.get("body")
    if body is None:
        raise ApiError(status, f"Simulated error {status}.", error_type_for(status), headers=headers)
    if isinstance(body, str):
        return web.Response(text=body, status=status, headers=headers)
    return json_response(body, status, headers)


def _simulated_429(state: SimState) -> ApiError:
    wait = state.knobs.retry_after_s
    headers = state.limiter.headers(time.monotonic())
    if "x-ratelimit-limit-requests" in headers:
        headers["x-ratelimit-remaining-requests"] = "0"
        headers["x-ratelimit-reset-requests"] = format_duration(wait)
    headers.update(retry_after_headers(wait))
    message = f"Rate limit reached for requests. Please try again in {wait:g}s."
    return ApiError(429, message, "requests", None, "rate_limit_exceeded", headers)


def admit(state: SimState, model: str, tokens: int) -> dict[str, str]:
    """Spend the request against the profile's rolling limits; the rate-limit headers to send, or 429."""
    verdict = state.limiter.admit(tokens, time.monotonic())
    if verdict.allowed:
        return verdict.headers
    short = "RPM" if verdict.kind == "requests" else "TPM"
    requested = 1 if verdict.kind == "requests" else tokens
    message = (
        f"Rate limit reached for {model} on {verdict.kind} per min ({short}): Limit {verdict.limit}, "
        f"Used {verdict.used}, Requested {requested}. Please try again in {verdict.retry_after_s:.3f}s."
    )
    headers = {**verdict.headers, **retry_after_headers(verdict.retry_after_s)}
    raise ApiError(429, message, verdict.kind, None, "rate_limit_exceeded", headers)
