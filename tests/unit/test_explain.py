"""gateway.explain's pure parts: the body explained and the gateway URL a user may give."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from gateway.explain import explain_local, gateway_root, request_body
from gateway.policy.loader import load_policy


def test_the_body_is_a_chat_unless_an_input_is_given() -> None:
    assert request_body("m", "Hi", 8, None) == {
        "model": "m",
        "messages": [{"role": "user", "content": "Hi"}],
        "max_tokens": 8,
    }
    assert "max_tokens" not in request_body("m", "Hi", None, None)
    assert request_body("e", "Hi", 8, "text") == {"model": "e", "input": "text"}


@pytest.mark.parametrize(
    "url", ["http://gw:8080", "http://gw:8080/", "http://gw:8080/v1", "http://gw:8080/v1/"]
)
def test_the_root_or_the_openai_base_url_is_accepted(url: str) -> None:
    assert gateway_root(url) == "http://gw:8080"


def test_explain_from_a_policy_shows_the_routes_shadow_settings(tmp_path: Path) -> None:
    backends = {
        name: {"provider": "openai", "base_url": f"http://{name}/v1", "models": {"m": {"id": name}}}
        for name in ("a", "b")
    }
    shadow = {"backends": ["b"], "sample": 0.05, "max_usd_per_day": 2}
    routes = [
        {"name": "mirrored", "match": {"model": "m"}, "backends": ["a"], "shadow": shadow},
        {"name": "plain", "match": {"model": "*"}},
    ]
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump({"backends": backends, "routes": routes}))
    doc = explain_local(load_policy(path), request_body("m", "Hi", 8, None), None)
    assert doc["route"] == "mirrored" and [c["backend"] for c in doc["candidates"]] == ["a"]
    assert doc["shadow"] == {"backends": ["b"], "sample": 0.05, "max_usd_per_day": 2.0, "timeout_s": 60.0}
    routes.pop(0)
    path.write_text(yaml.safe_dump({"backends": backends, "routes": routes}))
    assert explain_local(load_policy(path), request_body("m", "Hi", 8, None), None)["shadow"] is None
