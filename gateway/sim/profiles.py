"""Provider personalities the simulator can play, and the fixed four-member demo fleet."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class VertexProfile:
    """Also speak Vertex AI's layout (gateway/sim/vertex.py): chat at /v1/projects/{project}/locations/
    {location}/endpoints/{openapi|id}/chat/completions with Bearer tokens from this server's /token."""

    project: str
    location: str
    token_ttl_s: float = 3600.0  # `expires_in` of the tokens issued
    # (service account email, PEM public key): JWTs from these must verify; none: shape and issuer only.
    trusted_keys: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Profile:
    """One simulated upstream: which models it serves, how fast it is and which quirks it has."""

    name: str
    hardware: str
    models: list[str] = field(default_factory=list, hash=False)
    port: int = 0
    ttft_ms: float = 100.0
    tokens_per_s: float = 100.0
    rpm_limit: int = 0
    tpm_limit: int = 0
    context_window: int = 131_072
    # Many OpenAI-compatible servers leave out refusal, logprobs and system_fingerprint; the gateway's
    # response normaliser has to fill them in, so this switch lets a backend exercise that path.
    omit_optional: bool = False
    embedding_dim: int = 8
    api_key: str | None = None
    # (access key id, secret access key): the AWS routes then require a valid SigV4 signature by it.
    aws_keys: tuple[str, str] | None = None
    # Also Vertex AI's chat route, its OAuth token endpoint and google.rpc.Status errors (sim/vertex.py).
    vertex: VertexProfile | None = None


# The demo's simulated Bedrock account: `routeway demo` gives its gateway these (and only the demo does).
DEMO_AWS_KEYS = ("AKIDROUTEWAYDEMO0001", "routeway-demo-secret-key-for-the-simulator-only")


def profile_with(profile: Profile, **overrides: Any) -> Profile:
    """Copy of `profile` with some fields replaced, e.g. `profile_with(p, port=0, ttft_ms=5)`."""
    return dataclasses.replace(profile, **overrides)


DEMO_FLEET: dict[str, Profile] = {
    "h100-nim": Profile(
        name="h100-nim",
        hardware="nvidia-h100",
        models=["meta/llama-3.3-70b-instruct", "nvidia/nv-embedqa-e5-v5"],
        port=9101,
        ttft_ms=180.0,
        tokens_per_s=90.0,
    ),
    "groq-lpu": Profile(
        name="groq-lpu",
        hardware="groq-lpu",
        models=["llama-3.3-70b-versatile"],
        port=9102,
        ttft_ms=60.0,
        tokens_per_s=300.0,
        rpm_limit=600,
        omit_optional=True,
    ),
    "tpu-v5e": Profile(
        name="tpu-v5e",
        hardware="google-tpu-v5e",
        models=["meta/llama-3.3-70b-instruct-maas", "text-embedding-gecko"],
        port=9103,
        ttft_ms=250.0,
        tokens_per_s=120.0,
        # Chat over Vertex AI's layout and OAuth (the demo's vertex-tpu backend); embeddings over OpenAI's.
        vertex=VertexProfile(project="routeway-demo", location="us-central1"),
    ),
    "inferentia2": Profile(
        name="inferentia2",
        hardware="aws-inferentia2",
        models=["meta.llama3-3-70b-instruct-v1:0"],  # served over Bedrock's Converse (gateway/sim/aws.py)
        port=9104,
        ttft_ms=400.0,
        tokens_per_s=60.0,
        aws_keys=DEMO_AWS_KEYS,
    ),
}
