"""A client-facing operation: its path, how it routes, validates, estimates, translates and streams."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from gateway.errors import GatewayError
from gateway.policy.model import ModelType, Route
from gateway.providers.base import Operation
from gateway.routing.scoring import Estimate

if TYPE_CHECKING:
    from gateway.access.principal import Principal
    from gateway.runtime import Runtime

Body = dict[str, Any]
Validator = Callable[[Body], None]
Estimator = Callable[[Body, Route], Estimate]


class ClientStreamEncoder(Protocol):
    """Per-stream state on the client's side: canonical chunks in, the client's stream bytes out."""

    def encode(self, chunk: bytes) -> bytes:
        """One canonical chunk as the client's event(s); b"" when it says nothing to this client."""
        ...

    def finish(self) -> bytes:
        """The clean end (`data: [DONE]`, `response.completed`, `message_stop`...)."""
        ...

    def error(self, err: GatewayError) -> bytes:
        """The event ending a stream that failed after it started (never followed by `finish`)."""
        ...


def same_body(body: Body) -> Body:
    return body


def same_response(body: bytes, request: Body) -> bytes:
    return body


def openai_error(err: GatewayError) -> bytes:
    return err.body()


@dataclass(frozen=True, slots=True)
class EndpointSpec:
    """One client-facing operation. The router, relay, catalog and tracing read these fields; nothing else
    switches on the operation, so a new endpoint is a new spec (and, if needed, adapter support)."""

    path: str
    operation: Operation  # the backend operation it routes as: the adapters speak these
    genai_operation: str  # gen_ai.operation.name (OpenTelemetry GenAI conventions)
    model_type: ModelType  # the declared model `type` it may call (an untyped model serves any endpoint)
    validate: Validator  # the client's body: raises BadRequest; checks only the fields we use
    estimate: Estimator  # tokens in and out from the canonical body, to rank, guard and price
    # client body -> canonical body (the OpenAI request of `operation`); identity for OpenAI's own routes
    to_backend: Callable[[Body], Body] = same_body
    # canonical response bytes (and the client's body, for echoed fields) -> the client's response bytes
    from_backend: Callable[[bytes, Body], bytes] = same_response
    # None: the endpoint never streams. Called once per stream with the client's body.
    stream_encoder: Callable[[Body], ClientStreamEncoder] | None = None
    error_body: Callable[[GatewayError], bytes] = openai_error  # the client's error JSON
    media_type: str = "text/event-stream"  # of its streams
    # Endpoints that keep state across calls (the Responses API's stored conversations): after validation,
    # `begin` reads what the call needs and returns this call's spec, its translations bound to that state.
    begin: Callable[[Runtime, Principal, Body], Awaitable[EndpointSpec]] | None = None
    # Awaited once the answer is whole, before its last bytes go out (a stream: before its clean end), so
    # the client's next call finds what it stored. Must not raise: the answer is already paid for.
    commit: Callable[[], Awaitable[None]] | None = None

    def streams(self, canonical: Body) -> bool:
        """Whether this call is answered as a stream (the canonical body asks, and the endpoint can)."""
        return self.stream_encoder is not None and canonical.get("stream") is True
