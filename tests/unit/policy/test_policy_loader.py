"""Tests for gateway.policy.loader: every problem class is reported with its file, key path and reason."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from gateway.policy.loader import _FRAGMENTS, LoadedPolicy, PolicyError, Problem, load_policy
from gateway.policy.model import Policy

SECRET = "sk-test-do-not-print-0123456789"
PRICE = "backends.groq.models.llama-3.3-70b.input_price"


def valid() -> dict[str, Any]:
    return {
        "backends": {
            "groq": {
                "provider": "openai",
                "base_url": "https://api.groq.com/openai/v1",
                "api_key_env": "GROQ_API_KEY",
                "hardware": "groq-lpu",
                "models": {
                    "llama-3.3-70b": {
                        "id": "llama-3.3-70b-versatile",
                        "input_price": 0.59,
                        "output_price": 0.79,
                        "context_window": 131072,
                    }
                },
            },
            "local": {
                "provider": "openai",
                "base_url": "http://localhost:8000/v1",
                "models": {"mistral-7b": {"id": "mistralai/Mistral-7B-Instruct-v0.3"}},
            },
        },
        "routes": [{"name": "default", "match": {"model": "*"}, "objective": "cheapest"}],
    }


def changed(*edits: tuple[str, Any]) -> dict[str, Any]:
    """valid() with each dotted path set to a value (None deletes it); digits index lists."""
    data = valid()
    for dotted, value in edits:
        *parents, last = dotted.split("|")
        node: Any = data
        for key in parents:
            node = node[int(key)] if isinstance(node, list) else node[key]
        if value is None:
            del node[last]
        elif isinstance(node, list):
            node[int(last)] = value
        else:
            node[last] = copy.deepcopy(value)
    return data


def write(path: Path, content: dict[str, Any] | str) -> Path:
    path.write_text(content if isinstance(content, str) else yaml.safe_dump(content, sort_keys=False))
    return path


@pytest.fixture(autouse=True)
def groq_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GROQ_API_KEY", SECRET)


def problems_of(path: Path) -> list[Problem]:
    with pytest.raises(PolicyError) as info:
        load_policy(path)
    return info.value.problems


# (case id, file content, expected key path, expected fragment of the reason)
SINGLE_FILE_CASES: list[tuple[str, dict[str, Any] | str, str, str]] = [
    ("yaml syntax", "backends:\n  groq: [\n", "-", "line 3, column 1"),
    ("yaml bad indent", "backends:\n  groq:\n    a: 1\n   b: 2\n", "-", "line 4, column 4"),
    (
        "yaml duplicate key",
        "backends:\n  groq: {}\n  groq: {}\n",
        "-",
        "duplicate key 'groq' (line 3, column 3)",
    ),
    ("top level list", "- backends\n", "-", "top level must be a mapping, not list"),
    ("top level scalar", "hello\n", "-", "top level must be a mapping, not str"),
    ("unknown top key", changed(("backend", {})), "backend", "unknown key"),
    ("unknown backend key", changed(("backends|groq|zone", "eu")), "backends.groq.zone", "unknown key"),
    (
        "unknown model key",
        changed(("backends|groq|models|llama-3.3-70b|price", 1)),
        "backends.groq.models.llama-3.3-70b.price",
        "unknown key",
    ),
    ("unknown route key", changed(("routes|0|fallback", True)), "routes[0].fallback", "unknown key"),
    (
        "negative price",
        changed(("backends|groq|models|llama-3.3-70b|input_price", -1)),
        PRICE,
        "Input should be greater than or equal to 0",
    ),
    (
        "wrong type",
        changed(("backends|groq|models|llama-3.3-70b|context_window", "big")),
        "backends.groq.models.llama-3.3-70b.context_window",
        "Input should be a valid integer",
    ),
    (
        "missing model id",
        changed(("backends|groq|models|llama-3.3-70b|id", None)),
        "backends.groq.models.llama-3.3-70b.id",
        "Field required",
    ),
    (
        "bad base_url",
        changed(("backends|groq|base_url", "groq.com")),
        "backends.groq.base_url",
        "'groq.com': scheme",
    ),
    ("no models", changed(("backends|groq|models", {})), "backends.groq.models", "at least 1 item"),
    ("routes not a list", changed(("routes", {"name": "x"})), "routes", "Input should be a valid list"),
    (
        "unknown objective",
        changed(("routes|0|objective", "cheap")),
        "routes[0].objective",
        "'cheapest', 'fastest', 'balanced' or 'greenest'",
    ),
    ("no backends", changed(("backends", {})), "backends", "no backends defined"),
    ("empty file", "", "backends", "no backends defined"),
    (
        "unknown provider",
        changed(("backends|groq|provider", "bedrockx")),
        "backends.groq.provider",
        "unknown provider 'bedrockx'; known: bedrock, openai, sagemaker",
    ),
    (
        "route names a missing backend",
        changed(("routes|0|backends", ["groq", "nope"])),
        "routes[0].backends[1]",
        "no backend named 'nope'",
    ),
    (
        "duplicate route name",
        changed(("routes", [{"name": "a", "match": {"model": "llama*"}}, {"name": "a"}])),
        "routes[1].name",
        "duplicate route name 'a' (first used at routes[0]",
    ),
    (
        "glob matches no model",
        changed(("routes|0|match", {"model": "gpt-*"})),
        "routes[0].match.model",
        "'gpt-*' matches no model of any backend",
    ),
    (
        "allowed backends serve no matching model",
        changed(("routes|0", {"name": "llama", "match": {"model": "llama-*"}, "backends": ["local"]})),
        "routes[0].backends",
        "none of the allowed backends serves a model matching 'llama-*'",
    ),
    (
        "route allows no backend",
        changed(("routes|0|backends", [])),
        "routes[0].backends",
        "none of the allowed",
    ),
]


@pytest.mark.parametrize(
    ("content", "path", "reason"), [c[1:] for c in SINGLE_FILE_CASES], ids=[c[0] for c in SINGLE_FILE_CASES]
)
def test_problem_is_reported_with_file_path_and_reason(
    tmp_path: Path, content: dict[str, Any] | str, path: str, reason: str
) -> None:
    file = write(tmp_path / "demo.yaml", content)
    problems = problems_of(file)
    assert [(p.file, p.path) for p in problems] == [(str(file), path)], problems
    assert reason in problems[0].reason


def test_missing_env_var_is_a_problem(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GROQ_API_KEY")
    file = write(tmp_path / "demo.yaml", valid())
    assert problems_of(file) == [
        Problem(str(file), "backends.groq.api_key_env", "environment variable GROQ_API_KEY is not set")
    ]


def test_present_env_var_is_read_but_never_shown(tmp_path: Path) -> None:
    loaded = load_policy(write(tmp_path / "demo.yaml", valid()))
    assert {k: v and v.reveal() for k, v in loaded.secrets.items()} == {"groq": SECRET, "local": None}
    assert SECRET not in repr(loaded)
    assert SECRET not in str(loaded)


def test_valid_single_file(tmp_path: Path) -> None:
    file = write(tmp_path / "demo.yaml", valid())
    loaded = load_policy(file)
    assert isinstance(loaded, LoadedPolicy)
    assert loaded.files == (file,)
    assert loaded.policy == Policy.model_validate(valid())
    assert loaded.policy.backends["groq"].models["llama-3.3-70b"].input_price == 0.59
    assert len(loaded.fingerprint) == 16


def test_routes_default_when_absent(tmp_path: Path) -> None:
    loaded = load_policy(write(tmp_path / "demo.yaml", changed(("routes", None))))
    assert [r.name for r in loaded.policy.routes] == ["default"]


def test_problem_renders_as_file_path_reason() -> None:
    problem = Problem("policies/demo.yaml", PRICE, "Input should be greater than or equal to 0")
    assert str(problem) == f"policies/demo.yaml: {PRICE}: Input should be greater than or equal to 0"
    assert str(problem) in str(PolicyError([problem]))


def test_all_problems_are_collected_across_files(tmp_path: Path) -> None:
    write(tmp_path / "a.yaml", changed(("backends|groq|bogus", 1), ("routes|0|objective", "x")))
    write(tmp_path / "b.yaml", "routes: [\n")
    got = [(Path(p.file).name, p.path) for p in problems_of(tmp_path)]
    assert got == [("a.yaml", "backends.groq.bogus"), ("a.yaml", "routes[0].objective"), ("b.yaml", "-")]


def folder(tmp_path: Path) -> Path:
    backends = valid()["backends"]
    write(tmp_path / "10-groq.yaml", {"backends": {"groq": backends["groq"]}})
    write(
        tmp_path / "20-local.yml", {"backends": {"local": backends["local"]}, "routes": [{"name": "local"}]}
    )
    write(tmp_path / "30-routes.yaml", {"routes": [{"name": "fast", "objective": "fastest"}]})
    write(tmp_path / ".hidden.yaml", "not: [valid")
    write(tmp_path / "notes.txt", "not: [valid")
    (tmp_path / "sub").mkdir()
    write(tmp_path / "sub" / "nested.yaml", "not: [valid")
    return tmp_path


def test_folder_merges_backends_and_keeps_route_order(tmp_path: Path) -> None:
    loaded = load_policy(folder(tmp_path))
    assert [f.name for f in loaded.files] == ["10-groq.yaml", "20-local.yml", "30-routes.yaml"]
    assert set(loaded.policy.backends) == {"groq", "local"}
    assert [r.name for r in loaded.policy.routes] == ["local", "fast"]


def test_backend_defined_in_two_files(tmp_path: Path) -> None:
    folder(tmp_path)
    write(tmp_path / "40-again.yaml", {"backends": {"groq": valid()["backends"]["groq"]}})
    (problem,) = problems_of(tmp_path)
    assert (Path(problem.file).name, problem.path) == ("40-again.yaml", "backends.groq")
    assert str(tmp_path / "10-groq.yaml") in problem.reason


def test_folder_problems_name_the_file_and_its_own_route_index(tmp_path: Path) -> None:
    folder(tmp_path)
    write(
        tmp_path / "30-routes.yaml", {"routes": [{"name": "fast", "backends": ["nope"]}, {"name": "local"}]}
    )
    got = [(Path(p.file).name, p.path, p.reason) for p in problems_of(tmp_path)]
    assert got == [
        ("30-routes.yaml", "routes[0].backends[0]", "no backend named 'nope'"),
        (
            "30-routes.yaml",
            "routes[1].name",
            f"duplicate route name 'local' (first used at routes[0] in {tmp_path / '20-local.yml'})",
        ),
    ]


@pytest.mark.parametrize("make", ["empty folder", "missing"])
def test_nothing_to_load(tmp_path: Path, make: str) -> None:
    target = tmp_path if make == "empty folder" else tmp_path / "nope.yaml"
    write(tmp_path / "readme.txt", "hi")
    (problem,) = problems_of(target)
    assert (problem.file, problem.path) == (str(target), "-")


def test_fingerprint_follows_content(tmp_path: Path) -> None:
    file = write(tmp_path / "demo.yaml", valid())
    first = load_policy(file).fingerprint
    assert load_policy(file).fingerprint == first
    write(file, changed(("routes|0|objective", "fastest")))
    assert load_policy(file).fingerprint != first


def test_every_policy_field_has_a_fragment_validator() -> None:
    # A field added to Policy but not to the loader would be rejected as an unknown key.
    assert set(_FRAGMENTS) == set(Policy.model_fields)
