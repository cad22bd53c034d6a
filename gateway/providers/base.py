"""The adapter Protocol and the neutral types that cross the transport seam."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, NamedTuple, Protocol

if TYPE_CHECKING:
    from gateway.providers.credentials import CredentialProvider
    from gateway.secret import Secret
    from gateway.telemetry.headroom import Headroom

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
    quantization: str | None = None  # serving precision (gateway/policy/quantization.py); None: undeclared
    # The backend's provider, shared by its targets and replaced with the policy: the key is not copied here.
    credential: CredentialProvider | None = field(default=None, repr=False, compare=False)
    dialect: str | None = None  # an OpenAI-compatible host's dialect (providers/dialects.py); None: default
    # Derived once, when the catalog is built (a policy reload builds new Targets): read on every request.
    # This target's entry in a catalog's `adapters`: the provider kind, and its dialect when named.
    adapter_key: str = field(init=False, repr=False, compare=False)
    # (backend, provider model): the key its telemetry is kept by (telemetry.store.Key).
    key: tuple[str, str] = field(init=False, repr=False, compare=False)
    # "backend/provider model": the key its health and cooldowns are kept by (resilience.cooldown.health_key).
    health_key: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        adapter_key = self.provider if self.dialect is None else f"{self.provider}/{self.dialect}"
        object.__setattr__(self, "adapter_key", adapter_key)  # frozen: set once, here
        object.__setattr__(self, "key", (self.backend, self.model_id))
        object.__setattr__(self, "health_key", f"{self.backend}/{self.model_id}")

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


class StreamEvent(NamedTuple):
    """One upstream stream event, as the adapter's decoder framed it (a tuple: cheap to make per event)."""

    data: bytes  # SSE: the data lines joined with newlines | AWS event-stream: the frame's payload
    name: str | None = None  # SSE: the `event:` field | event-stream: `:event-type` (or `:exception-type`)


class StreamDecoder(Protocol):
    """Upstream bytes -> events, fed chunks cut anywhere; bounded (a ProviderError "protocol" on an event
    above the limit or on bad framing, never an unbounded buffer)."""

    def feed(self, chunk: bytes) -> list[StreamEvent]: ...


class StreamTranslator(Protocol):
    """Per-stream state: upstream events -> canonical chunks (the OpenAI `chat.completion.chunk` JSON for
    "chat", `text_completion` for "completions"; bytes, unframed). `ended` turns True on the upstream's clean
    end ([DONE], message_stop, ...): a stream whose bytes stop before that is a failed stream."""

    usage: Usage | None
    ended: bool
    # Characters of generated text seen: the gateway's own count, billed when the upstream sends no usage.
    output_chars: int

    def translate(self, event: StreamEvent) -> list[bytes]:
        """Zero, one or several canonical chunks for one event; a ProviderError for a bad or error event."""
        ...

    def flush(self) -> list[bytes]:
        """Called once, at the clean end or when the upstream's bytes end: what is still held back (it may
        also set `ended`, for a provider whose stream ends by closing)."""
        ...


class Adapter(Protocol):
    """A provider's translator. Pure and safe to call again on a retry."""

    def build_request(self, op: Operation, body: dict[str, Any], target: Target) -> UpstreamRequest: ...

    def parse_response(self, op: Operation, body: bytes, target: Target) -> Parsed: ...

    def parse_error(
        self, status: int, headers: Mapping[str, str], body: bytes, target: Target
    ) -> ProviderError: ...

    def stream_decoder(self, op: Operation, target: Target, *, max_event_bytes: int) -> StreamDecoder:
        """The framing of this provider's streams (SSE with event names, AWS event-stream, ...)."""
        ...

    def headroom(self, headers: Mapping[str, str] | None) -> Headroom | None:
        """What the provider's response headers say about its rate limits (and Retry-After), None if nothing:
        each provider names these headers its own way."""
        ...

    def stream_translator(
        self, op: Operation, target: Target, *, show_usage: bool = True
    ) -> StreamTranslator:
        """`show_usage=False`: the usage the gateway asked for (to bill every stream) is read, not relayed."""
        ...


ChunkStream = AsyncIterator[bytes]
