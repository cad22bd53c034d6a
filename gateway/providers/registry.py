"""The only switch on provider kind: maps a policy's `provider:` value to its adapter."""

from __future__ import annotations

from gateway.providers.base import Adapter
from gateway.providers.openai_compat import OpenAICompatAdapter

_ADAPTERS: dict[str, Adapter] = {
    # Any server that speaks OpenAI's wire format: OpenAI, Groq, NIM, vLLM, TGI, Together, Fireworks...
    "openai": OpenAICompatAdapter(),
}


# gen_ai.provider.name (OpenTelemetry GenAI conventions) where it spells an adapter kind differently.
_SEMCONV_NAMES: dict[str, str] = {"bedrock": "aws.bedrock", "vertex": "gcp.vertex_ai"}


def semconv_provider_name(kind: str) -> str:
    return _SEMCONV_NAMES.get(kind, kind)


def known_kinds() -> list[str]:
    return sorted(_ADAPTERS)


def adapter_for(kind: str) -> Adapter:
    try:
        return _ADAPTERS[kind]
    except KeyError:
        raise ValueError(f"unknown provider {kind!r}; known: {', '.join(known_kinds())}") from None
