"""The only switch on provider kind: maps a policy's `provider:` value to its adapter, the backend keys
the kind needs, its API root and how its requests are authorised."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from gateway.providers.aws import bedrock, sagemaker
from gateway.providers.base import Adapter
from gateway.providers.dialects import DIALECTS
from gateway.providers.google import vertex
from gateway.providers.openai_compat import OpenAICompatAdapter

if TYPE_CHECKING:
    from gateway.policy.model import Backend


@dataclass(frozen=True)
class Kind:
    adapter: Adapter
    needs: tuple[str, ...] = ()  # backend keys this kind requires
    allows: tuple[str, ...] = ()  # kind-specific backend keys it accepts (others' are refused)
    endpoint: Callable[[str], str] | None = None  # region -> the default base_url
    sigv4_service: str | None = None  # signed with SigV4 for this service unless api_key_env is set
    root: Callable[[Backend], str] | None = None  # the API root its keys spell (a base_url: only the host)
    check: Callable[[Mapping[str, Any]], list[str]] | None = None  # its own rules on the backend's keys
    google_adc: bool = False  # OAuth tokens from Google's Application Default Credentials


_KINDS: dict[str, Kind] = {
    # Any server that speaks OpenAI's wire format: OpenAI, Groq, NIM, vLLM, TGI, Together, Fireworks...
    "openai": Kind(OpenAICompatAdapter(), needs=("base_url",)),
    "bedrock": Kind(
        bedrock.BedrockAdapter(),
        needs=("region",),
        allows=("region",),
        endpoint=bedrock.endpoint,
        sigv4_service="bedrock",
    ),
    "sagemaker": Kind(
        sagemaker.SageMakerAdapter(),
        needs=("region",),
        allows=("region",),
        endpoint=sagemaker.endpoint,
        sigv4_service="sagemaker",
    ),
    # Vertex AI's OpenAI-compatible endpoint (TPU-served models), OAuth from Application Default Credentials.
    "vertex": Kind(
        vertex.VertexAdapter(),
        needs=("project", "location"),
        allows=("project", "location", "endpoint"),
        root=vertex.backend_root,
        check=vertex.config_problems,
        google_adc=True,
    ),
}
_SPECIFIC = sorted({key for kind in _KINDS.values() for key in kind.allows})

# Kinds whose backends may name a `dialect:`, and the adapter for each.
_DIALECTS: dict[str, Mapping[str, Adapter]] = {
    "openai": {name: OpenAICompatAdapter(d) for name, d in DIALECTS.items()},
}


# gen_ai.provider.name (OpenTelemetry GenAI conventions) where it spells an adapter kind differently.
_SEMCONV_NAMES: dict[str, str] = {"bedrock": "aws.bedrock", "vertex": "gcp.vertex_ai"}


def semconv_provider_name(kind: str) -> str:
    return _SEMCONV_NAMES.get(kind, kind)


def known_kinds() -> list[str]:
    return sorted(_KINDS)


def dialects_of(kind: str) -> list[str]:
    """The dialects a provider kind's backends may name (none for most kinds)."""
    return sorted(_DIALECTS.get(kind, {}))


def adapter_for(kind: str, dialect: str | None = None) -> Adapter:
    try:
        return _KINDS[kind].adapter if dialect is None else _DIALECTS[kind][dialect]
    except KeyError:
        if kind in _KINDS:
            known = ", ".join(dialects_of(kind)) or "none"
            raise ValueError(f"provider {kind!r} has no dialect {dialect!r}; known: {known}") from None
        raise ValueError(f"unknown provider {kind!r}; known: {', '.join(known_kinds())}") from None


def missing_keys(kind: str, fields: Mapping[str, Any]) -> list[str]:
    """The keys a backend of this kind needs and lacks (an offer may leave them to the backend using it)."""
    spec = _KINDS.get(kind)
    return [key for key in spec.needs if fields.get(key) is None] if spec is not None else []


def config_problems(kind: str, fields: Mapping[str, Any]) -> list[str]:
    """What a backend of this kind has that does not apply to it, beside the keys it lacks (an unknown kind:
    nothing here, the loader names it)."""
    spec = _KINDS.get(kind)
    if spec is None:
        return []
    problems = []
    for key in _SPECIFIC:
        if fields.get(key) is not None and key not in spec.allows:
            users = ", ".join(name for name, k in _KINDS.items() if key in k.allows)
            problems.append(f"{key} applies only to provider {users}, not {kind}")
    return problems + (spec.check(fields) if spec.check is not None else [])


def base_url_of(backend: Backend) -> str:
    """The backend's API root: what its kind's keys spell (vertex), else its `base_url`, else its kind's
    endpoint in its region."""
    spec = _KINDS[backend.provider]
    if spec.root is not None:
        return spec.root(backend)
    if backend.base_url is not None:
        return backend.base_url.rstrip("/")
    if spec.endpoint is None or backend.region is None:
        raise ValueError(f"provider {backend.provider} needs a base_url")  # the schema refused it already
    return spec.endpoint(backend.region)


def sigv4_service(kind: str) -> str | None:
    spec = _KINDS.get(kind)
    return spec.sigv4_service if spec is not None else None


def uses_google_adc(kind: str) -> bool:
    spec = _KINDS.get(kind)
    return spec is not None and spec.google_adc
