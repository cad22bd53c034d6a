"""Policy keys of the AWS kinds: region required and checked, base_url optional for them (the region's
endpoint by default) and still required for openai; region refused where it means nothing; SigV4 picked
for AWS backends without a key, a Bearer key (Bedrock API keys) when api_key_env names one."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from gateway.policy.loader import load_policy
from gateway.providers.credentials import StaticKey, providers_for
from gateway.routing.candidates import build_catalog
from gateway.secret import Secret
from tests.unit.policy.test_policy_loader import problems_of, write


def policy(**backend: Any) -> dict[str, Any]:
    return {"backends": {"aws": {"models": {"m": {"id": "meta.llama3-3-70b-instruct-v1:0"}}, **backend}}}


def test_aws_backends_default_to_the_regions_endpoints(tmp_path: Path) -> None:
    data = {
        "backends": {
            "br": {"provider": "bedrock", "region": "us-east-1", "models": {"m": {"id": "x"}}},
            "sm": {"provider": "sagemaker", "region": "eu-west-2", "models": {"m": {"id": "ep"}}},
            "vpc": {
                "provider": "bedrock",
                "region": "us-gov-west-1",
                "base_url": "https://vpce-1.bedrock-runtime.us-east-1.vpce.amazonaws.com/",
                "models": {"m": {"id": "x"}},
            },
        }
    }
    loaded = load_policy(write(tmp_path / "p.yaml", data))
    creds = providers_for(loaded.secrets, loaded.policy.backends)
    urls = {t.backend: t.base_url for t in build_catalog(loaded.policy, creds).targets["m"]}
    assert urls == {
        "br": "https://bedrock-runtime.us-east-1.amazonaws.com",
        "sm": "https://runtime.sagemaker.eu-west-2.amazonaws.com",
        "vpc": "https://vpce-1.bedrock-runtime.us-east-1.vpce.amazonaws.com",
    }
    assert {
        name: (type(c).__name__, getattr(c, "service", None), getattr(c, "region", None))
        for name, c in creds.items()
    } == {
        "br": ("SigV4Credentials", "bedrock", "us-east-1"),
        "sm": ("SigV4Credentials", "sagemaker", "eu-west-2"),
        "vpc": ("SigV4Credentials", "bedrock", "us-gov-west-1"),
    }


@pytest.mark.parametrize(
    ("backend", "reason"),
    [
        ({"provider": "bedrock"}, "region is required for provider bedrock"),
        ({"provider": "sagemaker", "base_url": "http://sim"}, "region is required for provider sagemaker"),
        ({"provider": "openai"}, "base_url is required for provider openai"),
        (
            {"provider": "openai", "base_url": "http://x/v1", "region": "us-east-1"},
            "region applies only to provider bedrock, sagemaker",
        ),
        ({"provider": "bedrock", "region": "US-EAST-1"}, "should match pattern"),
        ({"provider": "bedrock", "region": "us-east-1; rm"}, "should match pattern"),
        (
            {"provider": "bedrock", "region": "us-east-1", "base_url": "ftp://x"},
            "scheme must be http or https",
        ),
        ({"provider": "bedrock", "region": "us-east-1", "zone": "a"}, "unknown key"),
    ],
)
def test_bad_aws_keys_are_named(tmp_path: Path, backend: dict[str, Any], reason: str) -> None:
    found = problems_of(write(tmp_path / "p.yaml", policy(**backend)))
    assert any(reason in p.reason and p.path.startswith("backends.aws") for p in found), found


def test_an_api_key_env_on_bedrock_is_a_bearer_key(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("AWS_BEARER_TOKEN_BEDROCK", "bedrock-api-key-abc")
    loaded = load_policy(
        write(
            tmp_path / "p.yaml",
            policy(provider="bedrock", region="us-west-2", api_key_env="AWS_BEARER_TOKEN_BEDROCK"),
        )
    )
    creds = providers_for(loaded.secrets, loaded.policy.backends)
    assert isinstance(creds["aws"], StaticKey) and creds["aws"].secret == Secret("bedrock-api-key-abc")
