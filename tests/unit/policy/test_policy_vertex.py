"""A vertex backend's keys: project, location and endpoint checked, base_url optional and host-only, and
none of them accepted on another provider (nor AWS's region on vertex); each problem named with its path."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from gateway.policy.loader import load_policy
from gateway.providers.registry import base_url_of
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
    assert base_url_of(loaded.policy.backends["vx"]) == url
    assert loaded.secrets == {"vx": None}  # no key: its credential is Application Default Credentials


@pytest.mark.parametrize(
    ("policy", "path", "reason"),
    [
        (vertex(project=None), "backends.vx", "project is required for provider vertex"),
        (vertex(location=None), "backends.vx", "location is required for provider vertex"),
        (vertex(project="My_Project"), "backends.vx.project", "should match pattern"),
        (vertex(project="abc"), "backends.vx.project", "should match pattern"),
        (vertex(location="us central1"), "backends.vx.location", "should match pattern"),
        (vertex(endpoint="my-endpoint"), "backends.vx.endpoint", "should match pattern"),
        (vertex(base_url="https://psc.example/v1"), "backends.vx", "a scheme and host only"),
        (vertex(base_url="ftp://host"), "backends.vx.base_url", "scheme must be http or https"),
        (vertex(api_key_env="GROQ_API_KEY"), "backends.vx", "Application Default Credentials"),
        (vertex(region="us-east-1"), "backends.vx", "region applies only to provider bedrock, sagemaker"),
        (
            {"backends": {"o": {"provider": "openai", "base_url": "http://h/v1", "project": "my-project",
                                "models": MODELS}}},
            "backends.o",
            "project applies only to provider vertex, not openai",
        ),
        (
            {"backends": {"b": {"provider": "bedrock", "region": "us-east-1", "endpoint": "openapi",
                                "models": MODELS}}},
            "backends.b",
            "endpoint applies only to provider vertex, not bedrock",
        ),
        (
            {"backends": {"o": {"provider": "openai", "location": "us-central1", "models": MODELS}}},
            "backends.o",
            "location applies only to provider vertex, not openai",
        ),
    ],
    ids=[
        "no project", "no location", "project case", "project short", "location space", "endpoint name",
        "base_url path", "base_url scheme", "api_key_env", "region on vertex", "project on openai",
        "endpoint on bedrock", "location on openai",
    ],
)  # fmt: skip
def test_bad_vertex_keys_are_named(tmp_path: Path, policy: dict[str, Any], path: str, reason: str) -> None:
    found = problems_of(write(tmp_path / "p.yaml", policy))
    assert any(p.path == path and reason in p.reason for p in found), found


def test_the_catalogs_vertex_offer_needs_the_project_from_the_backend_using_it(tmp_path: Path) -> None:
    catalog = str(Path(__file__).parents[3] / "policies" / "catalog.yaml")
    offer = {"offer": "vertex-us-central1", "project": "my-project"}
    using = {"include": [catalog], "backends": {"vx": offer}}
    backend = load_policy(write(tmp_path / "p.yaml", using)).policy.backends["vx"]
    assert base_url_of(backend).endswith("/v1/projects/my-project/locations/us-central1/endpoints/openapi")
    lacking = {"include": [catalog], "backends": {"vx": {"offer": "vertex-us-central1"}}}
    found = problems_of(write(tmp_path / "q.yaml", lacking))
    assert [p.reason for p in found if p.path == "backends.vx"] == ["project is required for provider vertex"]
