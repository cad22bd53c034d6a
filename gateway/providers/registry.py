"""The only switch on provider kind: maps a policy's `provider:` value to its adapter and its API root."""

from __future__ import annotations

from gateway.policy.model import Backend
from gateway.providers.base import Adapter
from gateway.providers.google import vertex
from gateway.providers.openai_compat import OpenAICompatAdapter

_ADAPTERS: dict[str, Adapter] = {
    # Any server that speaks OpenAI's wire format: OpenAI, Groq, NIM, vLLM, TGI, Together, Fireworks...
    "openai": OpenAICompatAdapter(),
    # Vertex AI's OpenAI-compatible endpoint (TPU-served models), OAuth from Application Default Credentials.
    "vertex": vertex.VertexAdapter(),
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


def api_root(backend: Backend) -> str:
    """The URL a backend's operation paths are appended to: its base_url, or what its keys spell (vertex)."""
    if backend.provider == "vertex":
        assert backend.project is not None and backend.location is not None  # the schema requires them
        return vertex.api_root(
            backend.project, backend.location, backend.endpoint or "openapi", backend.base_url
        )
    assert backend.base_url is not None  # required for every other kind
    return backend.base_url.rstrip("/")
