"""OpenAI-compatible dialects as data: each host's rate-limit headers, error body shape and request quirks.

A backend names its dialect in the policy (`dialect: groq`; default `openai`); `OpenAICompatAdapter` reads
the table and has no `if` on a provider's name. Each entry cites where its facts were read; the fixtures in
`tests/fixtures/dialects/` are written from the same pages.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from gateway.providers.base import FailureKind
from gateway.telemetry.headroom import DEFAULT_SPEC, HeaderTable

Path = tuple[str, ...]  # keys into a JSON document, outermost first


@dataclass(frozen=True, slots=True)
class ErrorShape:
    """Where an error body keeps its text and its type, and what those types mean to us."""

    # Tried in order; the first string found is the message.
    message: tuple[Path, ...] = (
        ("error", "message"), ("error", "detail"), ("error", "msg"), ("error",),
        ("message",), ("detail",), ("msg",),
    )  # fmt: skip
    # The provider's own error type or code, tried in order; looked up in `kinds`.
    type: tuple[Path, ...] = (("error", "type"), ("error", "code"))
    # A provider error type that says more than the status does (checked before the status rule).
    kinds: Mapping[str, FailureKind] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Dialect:
    name: str
    rate_limits: HeaderTable
    errors: ErrorShape = field(default_factory=ErrorShape)
    # Whether the server takes `stream_options: {include_usage: true}`. When it does not, the gateway neither
    # asks for usage nor forwards the client's stream_options, and bills what it counted (StreamTranslator).
    stream_options: bool = True
    # The name the server gives the output-token cap: `max_tokens` renames OpenAI's newer
    # `max_completion_tokens` for servers that only know the older name. None: the client's field as sent.
    max_tokens_field: str | None = None
    # Where else than `usage` a stream chunk may carry usage, tried in order (Groq: under `x_groq`).
    more_usage: tuple[Path, ...] = ()
    # Statuses a server uses its own way (TGI's 424 "generation error" is the server's fault).
    status_kinds: Mapping[int, FailureKind] = field(default_factory=dict)


def dig(doc: Any, path: Path) -> Any:
    """The value at `path` in nested dicts, or None."""
    for key in path:
        if not isinstance(doc, dict):
            return None
        doc = doc.get(key)
    return doc


_NO_HEADERS: dict[str, tuple[str, str]] = {
    "retry-after-ms": ("retry_after_ms", "ms"),
    "retry-after": ("retry_after", "http"),
}

# OpenAI (https://platform.openai.com/docs/guides/rate-limits, "Rate limits in headers"): x-ratelimit-
# {limit,remaining,reset}-{requests,tokens}, resets as durations (`1s`, `6m0s`); errors
# {"error": {"message", "type", "param", "code"}}; code `insufficient_quota` on a 429 is an empty balance,
# not a burst: it will not pass by waiting, so it is treated like a refused key. The default dialect, also
# for any compatible server not listed: it keeps reading Anthropic's `anthropic-ratelimit-*` too.
OPENAI = Dialect(
    "openai",
    HeaderTable(DEFAULT_SPEC),
    ErrorShape(kinds=MappingProxyType({"insufficient_quota": "auth"})),
)

# Groq (https://console.groq.com/docs/rate-limits): the same x-ratelimit-* names, where limit-requests is
# the per-day cap (RPD) and limit-tokens the per-minute one (TPM); resets like `2m59.56s` and `7.66s`;
# retry-after only on 429. Errors are OpenAI's shape. Stream usage also arrives as `x_groq.usage` on the last
# chunk (https://console.groq.com/docs/api-reference#chat-create). Takes max_completion_tokens.
GROQ = Dialect(
    "groq",
    HeaderTable(
        {
            **{k: v for k, v in DEFAULT_SPEC.items() if k.startswith("x-ratelimit-")},
            **_NO_HEADERS,
        }
    ),
    more_usage=(("x_groq", "usage"),),
)

# Together (https://support.together.ai/en/articles/8988956-rate-limits, "Rate limits in headers";
# https://docs.together.ai/docs/rate-limits): x-ratelimit-limit / -remaining / -reset for requests, the
# reset in seconds; x-tokenlimit-limit / -remaining for tokens. A 429's error type `dynamic_request_limited`
# or `dynamic_token_limited` is its dynamic rate; a 503 is the model's capacity (our status rule: server).
TOGETHER = Dialect(
    "together",
    HeaderTable(
        {
            "x-ratelimit-limit": ("requests_limit", "count"),
            "x-ratelimit-remaining": ("requests_remaining", "count"),
            "x-ratelimit-reset": ("requests_reset", "duration"),
            "x-tokenlimit-limit": ("tokens_limit", "count"),
            "x-tokenlimit-remaining": ("tokens_remaining", "count"),
            **_NO_HEADERS,
        }
    ),
    ErrorShape(
        type=(("error", "type"), ("error", "code"), ("error_type",), ("type",)),
        kinds=MappingProxyType(
            {"dynamic_request_limited": "rate_limited", "dynamic_token_limited": "rate_limited"}
        ),
    ),
    max_tokens_field="max_tokens",
)

# Fireworks (https://docs.fireworks.ai/guides/quotas_usage/rate-limits, "Rate limit response headers"):
# x-ratelimit-{limit,remaining}-requests, and separate prompt and generated token windows
# (x-ratelimit-{limit,remaining}-tokens-prompt, -tokens-generated): the tighter one stands for tokens.
# `x-ratelimit-over-limit: yes` means requests are served at a lower priority, not refused: not read.
FIREWORKS = Dialect(
    "fireworks",
    HeaderTable(
        {
            "x-ratelimit-limit-requests": ("requests_limit", "count"),
            "x-ratelimit-remaining-requests": ("requests_remaining", "count"),
            "x-ratelimit-reset-requests": ("requests_reset", "duration"),
            "x-ratelimit-limit-tokens-prompt": ("input_tokens_limit", "count"),
            "x-ratelimit-remaining-tokens-prompt": ("input_tokens_remaining", "count"),
            "x-ratelimit-limit-tokens-generated": ("output_tokens_limit", "count"),
            "x-ratelimit-remaining-tokens-generated": ("output_tokens_remaining", "count"),
            **_NO_HEADERS,
        }
    ),
    max_tokens_field="max_tokens",
)

# vLLM's OpenAI-compatible server (vllm/entrypoints/openai/protocol.py, ErrorResponse): no rate-limit
# headers; errors are {"error": {"message", "type", "param", "code"}} in current releases and were a flat
# {"object": "error", "message", "type", "param", "code"} before; both are read. Takes stream_options and
# both token caps.
VLLM = Dialect(
    "vllm",
    HeaderTable(_NO_HEADERS),
    ErrorShape(type=(("error", "type"), ("type",))),
)

# Hugging Face TGI (router/src/server.rs; https://huggingface.co/docs/text-generation-inference): errors
# are {"error": "<text>", "error_type": "validation" | "generation" | "overloaded" | "incomplete_generation"}
# with 422 validation, 424 generation error, 429 "Model is overloaded". Its Messages API knows only
# max_tokens and does not take stream_options (huggingface/text-generation-inference#2531).
TGI = Dialect(
    "tgi",
    HeaderTable(_NO_HEADERS),
    ErrorShape(
        type=(("error_type",),),
        kinds=MappingProxyType(
            {
                "overloaded": "rate_limited",
                "validation": "client",
                "generation": "server",
                "incomplete_generation": "server",
            }
        ),
    ),
    stream_options=False,
    max_tokens_field="max_tokens",
    status_kinds=MappingProxyType({424: "server"}),
)

# NVIDIA NIM for LLMs, self-hosted or at integrate.api.nvidia.com (https://docs.nvidia.com/nim/large-
# language-models/latest/api-reference.html): no rate-limit headers documented beyond retry-after; errors
# are OpenAI's shape from the engine, or a problem document {"status", "title", "detail", "type"} from the
# hosted front (`detail` is read as the message). max_tokens is the documented cap.
NIM = Dialect(
    "nim",
    HeaderTable(_NO_HEADERS),
    ErrorShape(type=(("error", "type"), ("error", "code"), ("title",))),
    max_tokens_field="max_tokens",
)

DIALECTS: Mapping[str, Dialect] = MappingProxyType(
    {d.name: d for d in (OPENAI, GROQ, TOGETHER, FIREWORKS, VLLM, TGI, NIM)}
)


def dialect(name: str | None) -> Dialect:
    """The named dialect (None: openai); a ValueError naming the known ones otherwise."""
    if name is None:
        return OPENAI
    try:
        return DIALECTS[name]
    except KeyError:
        raise ValueError(f"unknown dialect {name!r}; known: {', '.join(sorted(DIALECTS))}") from None
