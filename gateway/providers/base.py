"""The adapter Protocol and the neutral types that cross the transport seam."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol

if TYPE_CHECKING:
    from gateway.providers.credentials import CredentialProvider
    from gateway.secret import Secret

Operation = Literal["chat", "completions", "embeddings"]

# Why an attempt failed, as the resilience layer sees it.
FailureKind = Literal[
    "connect", "timeout", "rate_limited", "server", "auth", "client", "context_length", "protocol"
]


@dataclass(frozen=True, slots=True)
class Target:
    """One (backend, model) pair a request may be sent to, with everything the adapter needs."""

    backend: str
    provider: str
    base_url: str
    model: str  # logical name the client asked for
    model_id: str  # the provider's own id
    headers: Mapping[str, str]
    hardware: str | None
    input_price: float
    output_price: float
    context_window: int | None
    ttft_ms: float | None
    tokens_per_s: float | None
    joules_per_token: float | None = None
    # The backend's provider, shared by its targets and replaced with the policy: the key is not copied here.
    credential: CredentialProvider | None = field(default=None, repr=False, compare=False)

    @property
    def api_key(self) -> Secret | None:
        """The credential to scrub from texts that leave the process (an upstream's error, a span)."""
        return self.credential.secret if self.credential is not None else None


@dataclass(slots=True)
class UpstreamRequest:
    method: str
    url: str
    headers: dict[str, str]
    body: bytes


@dataclass(slots=True)
class Usage:
    input_tokens: int = 0
    output_tokens: int = 0


@dataclass(slots=True)
class Parsed:
    """A response ready for the client: body bytes (patched to the spec if needed) and its usage."""

    body: bytes
    usage: Usage | None


class ProviderError(Exception):
    """A typed upstream failure; `kind` drives retry and failover decisions."""

    def __init__(
        self,
        kind: FailureKind,
        message: str,
        *,
        backend: str = "",
        status: int | None = None,
        retry_after: float | None = None,
        body: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.backend = backend
        self.status = status
        self.retry_after = retry_after
        self.body = body

    def summary(self) -> str:
        status = f" {self.status}" if self.status else ""
        return f"{self.backend}: {self.kind}{status}: {self.message}"


class StreamTranslator(Protocol):
    """Per-stream state: turns each upstream SSE `data:` payload into the bytes to send (None drops it)."""

    usage: Usage | None
    # Characters of generated text seen: the gateway's own count, billed when the upstream sends no usage.
    output_chars: int

    def translate(self, data: bytes) -> bytes | None: ...


class Adapter(Protocol):
    """A provider's translator. Pure and safe to call again on a retry."""

    def build_request(self, op: Operation, body: dict[str, Any], target: Target) -> UpstreamRequest: ...

    def parse_response(self, op: Operation, body: bytes, target: Target) -> Parsed: ...

    def parse_error(
        self, status: int, headers: Mapping[str, str], body: bytes, target: Target
    ) -> ProviderError: ...

    def stream_translator(
        self, op: Operation, target: Target, *, show_usage: bool = True
    ) -> StreamTranslator:
        """`show_usage=False`: the usage the gateway asked for (to bill every stream) is read, not relayed."""
        ...


ChunkStream = AsyncIterator[bytes]
