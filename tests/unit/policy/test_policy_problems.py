"""What `check` tells a newcomer: every problem at once, the value it got, unknown hardware labels."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.policy.loader import load_policy
from gateway.routing.hardware import JOULES_PER_TOKEN
from tests.unit.policy.test_policy_loader import SECRET, changed, problems_of, write

PASTED_KEY = "sk-proj-pasted-instead-of-a-name-42"


@pytest.fixture(autouse=True)
def groq_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GROQ_API_KEY", SECRET)


def reasons(tmp_path: Path, data: object) -> dict[str, str]:
    return {p.path: p.reason for p in problems_of(write(tmp_path / "p.yaml", data))}  # type: ignore[arg-type]


def test_the_bad_value_is_named(tmp_path: Path) -> None:
    got = reasons(tmp_path, changed(("routes|0|objective", "fastestt")))
    assert got["routes[0].objective"].endswith("; got 'fastestt'")
    assert "'cheapest'" in got["routes[0].objective"]


def test_a_long_value_is_shortened_and_a_mapping_not_dumped(tmp_path: Path) -> None:
    got = reasons(
        tmp_path,
        changed(("routes|0|objective", "x" * 500), ("backends|groq|models|llama-3.3-70b|context_window", {})),
    )
    assert got["routes[0].objective"].endswith("xxx...") and len(got["routes[0].objective"]) < 200
    assert "got" not in got["backends.groq.models.llama-3.3-70b.context_window"]


def test_a_pasted_key_is_never_echoed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GROQ_API_KEY")
    got = reasons(
        tmp_path,
        changed(("backends|groq|api_key_env", PASTED_KEY), ("backends|local|headers", {"x-key": 12345})),
    )
    assert "backends.groq.api_key_env" in got and "backends.local.headers.x-key" in got
    assert PASTED_KEY not in str(got) and "12345" not in str(got)


def test_one_bad_backend_hides_no_other_problem(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GROQ_API_KEY")
    data = changed(
        ("backends|groq|models|llama-3.3-70b|input_price", "cheap"),
        ("backends|local|api_key_env", "LOCAL_KEY_NOT_SET_ANYWHERE"),
        ("backends|local|provider", "vllmm"),
        ("routes|0|objective", "quickest"),
    )
    assert sorted(reasons(tmp_path, data)) == [
        "backends.groq.api_key_env",  # the backend's schema problem no longer hides its env var
        "backends.groq.models.llama-3.3-70b.input_price",
        "backends.local.api_key_env",
        "backends.local.provider",
        "routes[0].objective",
    ]


def test_an_unknown_hardware_label_names_the_known_ones(tmp_path: Path) -> None:
    (reason,) = reasons(tmp_path, changed(("backends|groq|hardware", "groq-lpu-v2"))).values()
    assert reason.startswith("unknown hardware label 'groq-lpu-v2'; known: ")
    assert all(label in reason for label in JOULES_PER_TOKEN) and "joules_per_token" in reason


def test_declared_energy_makes_any_hardware_label_fine(tmp_path: Path) -> None:
    data = changed(("backends|groq|hardware", "home-made-asic"), ("backends|groq|joules_per_token", 0.5))
    loaded = load_policy(write(tmp_path / "p.yaml", data))
    assert loaded.policy.backends["groq"].hardware == "home-made-asic"
    assert loaded.secrets["groq"] is not None and loaded.secrets["groq"].reveal() == SECRET


def test_every_known_label_and_no_label_pass(tmp_path: Path) -> None:
    for label in [*JOULES_PER_TOKEN, None]:
        load_policy(write(tmp_path / "p.yaml", changed(("backends|groq|hardware", label))))


def test_an_unset_env_var_does_not_stop_the_routes_cross_check(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("GROQ_API_KEY")
    data = changed(("routes|0|backends", ["groq", "ghost"]), ("backends|local|hardware", "tpu-v9"))
    assert sorted(reasons(tmp_path, data)) == [
        "backends.groq.api_key_env",
        "backends.local.hardware",
        "routes[0].backends[1]",
    ]
