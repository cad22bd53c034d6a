"""A route's `shadow:` block: off by default, and every bad value rejected with its file, path and reason."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from gateway.policy.loader import load_policy
from tests.unit.policy.test_policy_loader import SECRET, changed, problems_of, write


@pytest.fixture(autouse=True)
def groq_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GROQ_API_KEY", SECRET)


AT = "routes[0].shadow"


def with_shadow(shadow: Any, match: str = "*") -> dict[str, Any]:
    return changed(("routes|0|shadow", shadow), ("routes|0|match", {"model": match}))


def test_off_by_default_and_defaults_when_given(tmp_path: Path) -> None:
    assert load_policy(write(tmp_path / "a.yaml", changed())).policy.routes[0].shadow is None
    loaded = load_policy(write(tmp_path / "b.yaml", with_shadow({"backends": ["local"]})))
    shadow = loaded.policy.routes[0].shadow
    assert shadow is not None
    assert (shadow.backends, shadow.sample, shadow.max_usd_per_day, shadow.timeout_s) == (
        ["local"],
        0.01,
        5.0,
        60,
    )


@pytest.mark.parametrize(
    ("shadow", "match", "path", "reason"),
    [
        ({"backends": ["local"], "sample": 1.5}, "*", "routes[0].shadow.sample", "less than or equal to 1"),
        ({"backends": ["local"], "sample": 0}, "*", "routes[0].shadow.sample", "greater than 0"),
        ({"backends": ["local"], "max_usd_per_day": -1}, "*", f"{AT}.max_usd_per_day", "greater than 0"),
        ({"backends": ["local"], "timeout_s": 0}, "*", "routes[0].shadow.timeout_s", "greater than 0"),
        ({"backends": []}, "*", "routes[0].shadow.backends", "at least 1 item"),
        ({"backends": ["local", "local"]}, "*", "routes[0].shadow.backends", "more than once: local"),
        ({"backends": ["local"], "rate": 0.1}, "*", "routes[0].shadow.rate", "unknown key"),
        ({"sample": 0.1}, "*", "routes[0].shadow.backends", "Field required"),
        ({"backends": ["nowhere"]}, "*", "routes[0].shadow.backends[0]", "no backend named 'nowhere'"),
        (
            {"backends": ["groq", "local"]},
            "llama-*",
            "routes[0].shadow.backends[1]",
            "backend 'local' serves no model matching 'llama-*'",
        ),
    ],
    ids=[
        "sample>1",
        "sample=0",
        "negative cap",
        "no timeout",
        "empty",
        "repeated",
        "unknown key",
        "no backends",
        "unknown backend",
        "serves nothing",
    ],
)
def test_bad_shadow_config_is_rejected_with_file_path_and_reason(
    tmp_path: Path, shadow: dict[str, Any], match: str, path: str, reason: str
) -> None:
    file = write(tmp_path / "p.yaml", with_shadow(shadow, match))
    problems = problems_of(file)
    found = {p.path: p for p in problems}
    assert path in found, problems
    assert reason in found[path].reason
    assert found[path].file == str(file)
