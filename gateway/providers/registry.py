"""The only switch on provider kind: maps a policy's `provider:` value to its adapter."""

from __future__ import annotations

from collections.abc import Mapping

from gateway.providers.base import Adapter
from gateway.providers.dialects import DIALECTS
from gateway.providers.openai_compat import OpenAICompatAdapter

_ADAPTERS: dict[str, Adapter] = {
    # Any server that speaks OpenAI's wire format: OpenAI, Groq, NIM, vLLM, TGI, Together, Fireworks...
    "openai": OpenAICompatAdapter(),
}

# Kinds whose backends may name a `dialect:`, and the adapter for each.
_DIALECTS: dict[str, Mapping[str, Adapter]] = {
    "openai": {name: OpenAICompatAdapter(d) for name, d in DIALECTS.items()},
}


# gen_ai.provider.name (OpenTelemetry GenAI conventions) where it spells an adapter kind differently.
_SEMCONV_NAMES: dict[str, str] = {"bedrock": "aws.bedrock", "vertex": "gcp.vertex_ai"}


def semconv_provider_name(kind: str) -> str:
    return _SEMCONV_NAMES.get(kind, kind)


def known_kinds() -> list[str]:
    return sorted(_ADAPTERS)


def dialects_of(kind: str) -> list[str]:
    """The dialects a provider kind's backends may name (none for most kinds)."""
    return sorted(_DIALECTS.get(kind, {}))


def adapter_for(kind: str, dialect: str | None = None) -> Adapter:
    try:
        return _ADAPTERS[kind] if dialect is None else _DIALECTS[kind][dialect]
    except KeyError:
        if kind in _ADAPTERS:
            known = ", ".join(dialects_of(kind)) or "none"
            raise ValueError(f"provider {kind!r} has no dialect {dialect!r}; known: {known}") from None
        raise ValueError(f"unknown provider {kind!r}; known: {', '.join(known_kinds())}") from None
