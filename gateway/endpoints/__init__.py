"""The client-facing operations, one spec each, in one table: the front serves the paths listed here.

A new endpoint is a spec (its own module here when it translates) and one entry in `ENDPOINTS`."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from gateway.endpoints.anthropic import MESSAGES
from gateway.endpoints.openai import CHAT, COMPLETIONS, EMBEDDINGS
from gateway.endpoints.responses import RESPONSES
from gateway.endpoints.spec import ClientStreamEncoder, EndpointSpec
from gateway.policy.model import ModelType

__all__ = [
    "CHAT",
    "COMPLETIONS",
    "EMBEDDINGS",
    "ENDPOINTS",
    "MESSAGES",
    "RESPONSES",
    "ClientStreamEncoder",
    "EndpointSpec",
]

ENDPOINTS: Mapping[str, EndpointSpec] = MappingProxyType(
    {spec.path: spec for spec in (CHAT, COMPLETIONS, EMBEDDINGS, RESPONSES, MESSAGES)}
)


def paths_serving(model_type: ModelType) -> list[str]:
    """The paths that may call a model declared with this `type` (for an error that says where to go)."""
    return [spec.path for spec in ENDPOINTS.values() if spec.model_type == model_type]
