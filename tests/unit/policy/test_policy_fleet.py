"""A backend's `dialect`, `metrics_url` and `metrics_interval_s`: optional, and every bad value rejected
with its file, path and reason."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from gateway.policy.loader import load_policy
from gateway.routing.candidates import build_catalog
from gateway.telemetry.loadsignals import ScrapeTarget, scrape_targets
from tests.unit.policy.test_policy_loader import SECRET, changed, problems_of, write

AT = "backends.groq"


@pytest.fixture(autouse=True)
def groq_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GROQ_API_KEY", SECRET)


def test_optional_and_carried_to_the_targets(tmp_path: Path) -> None:
    plain = load_policy(write(tmp_path / "a.yaml", changed())).policy
    assert plain.backends["groq"].dialect is None and plain.backends["groq"].metrics_url is None
    assert scrape_targets(plain.backends) == []
    given = load_policy(
        write(
            tmp_path / "b.yaml",
            changed(
                ("backends|groq|dialect", "groq"),
                ("backends|groq|metrics_url", "http://10.0.0.5:8000/metrics"),
                ("backends|groq|metrics_interval_s", 2),
            ),
        )
    ).policy
    assert scrape_targets(given.backends) == [ScrapeTarget("groq", "http://10.0.0.5:8000/metrics", 2.0)]
    catalog = build_catalog(given, {})
    [t] = catalog.targets["llama-3.3-70b"]
    assert t.dialect == "groq" and t.adapter_key == "openai/groq"
    assert catalog.adapters["openai/groq"].headroom({"x-ratelimit-remaining-requests": "3"}) is not None


@pytest.mark.parametrize(
    ("key", "value", "reason"),
    [
        (
            "dialect",
            "mistral",
            "unknown dialect 'mistral'; known: fireworks, groq, nim, openai, tgi, together, vllm",
        ),
        ("metrics_url", "ftp://host/metrics", "scheme must be http or https"),
        ("metrics_url", "http://user:pw@host/metrics", "must not carry credentials"),
        ("metrics_url", "http://host/metrics?token=abc", "must not have a query string"),
        ("metrics_interval_s", 0.1, "greater than or equal to 0.5"),
        ("metrics_interval_s", 3600, "less than or equal to 300"),
    ],
)
def test_bad_values_are_refused(tmp_path: Path, key: str, value: Any, reason: str) -> None:
    found = problems_of(write(tmp_path / "p.yaml", changed((f"backends|groq|{key}", value))))
    assert any(p.path == f"{AT}.{key}" and reason in p.reason for p in found), found
    assert all("pw" not in p.reason and "abc" not in p.reason for p in found)  # masked, never echoed
