"""A vertex backend's keys: project, location and endpoint checked, base_url optional and host-only, and
none of them accepted on another provider; each problem named with its path."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from gateway.policy.loader import load_policy
from gateway.providers.registry import api_root
from tests.unit.policy.test_policy_loader import problems_of, write

MODELS = {"llama": {"id": "meta/llama-3.3-70b-instruct-maas"}}


def vertex(**keys: Any) -> dict[str, Any]:
    backend = {"provider": "vertex", "project": "my-project", "location": "us-central1", "models": MODELS}
    for key, value in keys.items():
        if value is None:
            backend.pop(key, None)
        else:
            backend[key] = value
    return {"backends": {"vx": backend}}


@pytest.mark.parametrize(
    ("keys", "url"),
    [
        ({}, "https://us-central1-aiplatform.googleapis.com/v1/projects/my-project/locations/us-central1/endpoints/openapi"),
        ({"location": "global"}, "https://aiplatform.googleapis.com/v1/projects/my-project/locations/global/endpoints/openapi"),
        ({"endpoint": "987654321"}, "https://us-central1-aiplatform.googleapis.com/v1/projects/my-project/locations/us-central1/endpoints/987654321"),
        ({"base_url": "http://127.0.0.1:9103"}, "http://127.0.0.1:9103/v1/projects/my-project/locations/us-central1/endpoints/openapi"),
        ({"project": "example.com:team-llm"}, "https://us-central1-aiplatform.googleapis.com/v1/projects/example.com:team-llm/locations/us-central1/endpoints/openapi"),
    ],
)  # fmt: skip
def test_a_valid_vertex_backend_and_its_root(tmp_path: Path, keys: dict[str, Any], url: str) -> None:
    loaded = load_policy(write(tmp_path / "p.yaml", vertex(**keys)))
    assert api_root(loaded.policy.backends["vx"]) == url
    assert loaded.secrets == {"vx": None}  # no key: its credential is Application Default Credentials


@pytest.mark.parametrize(
    ("policy", "path", "reason"),
    [
        (vertex(project=None), "backends.vx.project", "Field required"),
        (vertex(location=None), "backends.vx.location", "Field required"),
        (vertex(project="My_Project"), "backends.vx.project", "should match pattern"),
        (vertex(project="abc"), "backends.vx.project", "should match pattern"),
        (vertex(location="us central1"), "backends.vx.location", "should match pattern"),
        (vertex(endpoint="my-endpoint"), "backends.vx.endpoint", "should match pattern"),
        (vertex(base_url="https://psc.example/v1"), "backends.vx.base_url", "only a scheme and host"),
        (vertex(base_url="ftp://host"), "backends.vx.base_url", "scheme must be http or https"),
        (vertex(api_key_env="GROQ_API_KEY"), "backends.vx.api_key_env", "Application Default Credentials"),
        (
            {"backends": {"o": {"provider": "openai", "base_url": "http://h/v1", "project": "my-project",
                                "models": MODELS}}},
            "backends.o.project",
            "only for provider vertex",
        ),
        (
            {"backends": {"o": {"provider": "openai", "location": "us-central1", "models": MODELS}}},
            "backends.o.base_url",
            "Field required",
        ),
    ],
    ids=[
        "no project", "no location", "project case", "project short", "location space", "endpoint name",
        "base_url path", "base_url scheme", "api_key_env", "project on openai", "openai base_url",
    ],
)  # fmt: skip
def test_bad_vertex_keys_are_named(tmp_path: Path, policy: dict[str, Any], path: str, reason: str) -> None:
    found = problems_of(write(tmp_path / "p.yaml", policy))
    assert any(p.path == path and reason in p.reason for p in found), found
