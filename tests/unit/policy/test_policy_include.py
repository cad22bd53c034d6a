"""`include:` and catalog offers: relative paths, deep merge where the including file wins, null deletes,
bounded depth, cycles refused, every problem with the file it is in; a policy's own hardware labels."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from gateway.policy.include import MAX_DEPTH, MAX_INCLUDES, Document, merge
from gateway.policy.loader import PolicyError, Problem, load_policy
from gateway.routing.candidates import build_catalog
from gateway.routing.hardware import JOULES_PER_TOKEN

KEY_ENV = "ROUTEWAY_TEST_INCLUDE_KEY"


@pytest.fixture(autouse=True)
def _key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(KEY_ENV, "sk-include-test")


def write(path: Path, content: dict[str, Any] | str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(content if isinstance(content, str) else yaml.safe_dump(content, sort_keys=False))
    return path


def backend(**models: dict[str, Any]) -> dict[str, Any]:
    return {"provider": "openai", "base_url": "http://up.local/v1", "models": models}


def offers() -> dict[str, Any]:
    """A small catalog: two offers and a hardware label of its own."""
    return {
        "hardware": {"test-asic": {"joules_per_token": 0.05}},
        "offers": {
            "alpha": {
                "provider": "openai",
                "base_url": "https://alpha.example/v1",
                "api_key_env": KEY_ENV,
                "hardware": "test-asic",
                "models": {
                    "llama": {
                        "id": "alpha/llama",
                        "input_price": 0.5,
                        "output_price": 0.7,
                        "quantization": "fp8",
                    },
                    "qwen": {"id": "alpha/qwen", "input_price": 0.2, "output_price": 0.2},
                },
            },
            "beta": {
                "provider": "openai",
                "base_url": "https://beta.example/v1",
                "models": {"llama": {"id": "b"}},
            },
        },
    }


def problems_of(path: Path) -> list[Problem]:
    with pytest.raises(PolicyError) as info:
        load_policy(path)
    return info.value.problems


def test_an_included_file_is_merged_under_the_including_one(tmp_path: Path) -> None:
    write(tmp_path / "lib" / "base.yaml", {"backends": {"b": backend(m={"id": "up-m", "input_price": 1.0})}})
    user = write(
        tmp_path / "policy.yaml",
        {
            "include": ["lib/base.yaml"],  # relative to the including file, not to the working directory
            "backends": {"b": {"models": {"m": {"input_price": 2.0}, "n": {"id": "up-n"}}}},
        },
    )
    loaded = load_policy(user)
    models = loaded.policy.backends["b"].models
    assert models["m"].id == "up-m" and models["m"].input_price == 2.0  # the including file's key wins
    assert models["n"].id == "up-n"
    assert [f.name for f in loaded.files] == ["policy.yaml", "base.yaml"]


def test_null_removes_what_would_be_inherited_and_lists_are_replaced(tmp_path: Path) -> None:
    base = {
        "backends": {"b": backend(m={"id": "up-m"}, old={"id": "up-old"})},
        "routes": [{"name": "one"}, {"name": "two"}],
    }
    write(tmp_path / "base.yaml", base)
    user = write(
        tmp_path / "policy.yaml",
        {"include": "base.yaml", "backends": {"b": {"models": {"old": None}}}, "routes": [{"name": "mine"}]},
    )
    policy = load_policy(user).policy
    assert set(policy.backends["b"].models) == {"m"}
    assert [r.name for r in policy.routes] == ["mine"]


def test_later_includes_win_over_earlier_ones(tmp_path: Path) -> None:
    write(tmp_path / "a.yaml", {"backends": {"b": backend(m={"id": "from-a", "input_price": 1.0})}})
    write(tmp_path / "b.yaml", {"backends": {"b": {"models": {"m": {"id": "from-b"}}}}})
    policy = load_policy(write(tmp_path / "p.yaml", {"include": ["a.yaml", "b.yaml"]})).policy
    assert policy.backends["b"].models["m"].id == "from-b"
    assert policy.backends["b"].models["m"].input_price == 1.0


# (case, files to write: name -> content, the root, expected (file name, key path, reason fragment))
BAD_INCLUDES: list[tuple[str, dict[str, Any], str, tuple[str, str, str]]] = [
    (
        "self",
        {"p.yaml": {"include": ["p.yaml"]}},
        "p.yaml",
        ("p.yaml", "include[0]", "cycle: p.yaml -> p.yaml"),
    ),
    (
        "cycle",
        {
            "p.yaml": {"include": ["a.yaml"]},
            "a.yaml": {"include": ["b.yaml"]},
            "b.yaml": {"include": ["a.yaml"]},
        },
        "p.yaml",
        ("b.yaml", "include[0]", "cycle: a.yaml -> b.yaml -> a.yaml"),
    ),
    ("missing", {"p.yaml": {"include": ["nope.yaml"]}}, "p.yaml", ("p.yaml", "include[0]", "no such file")),
    (
        "not a list",
        {"p.yaml": {"include": {"a": 1}}},
        "p.yaml",
        ("p.yaml", "include", "a file name or a list"),
    ),
    (
        "too many",
        {"p.yaml": {"include": [f"f{i}.yaml" for i in range(MAX_INCLUDES + 1)]}},
        "p.yaml",
        ("p.yaml", "include", f"at most {MAX_INCLUDES} files"),
    ),
    (
        "too deep",
        {f"d{i}.yaml": {"include": [f"d{i + 1}.yaml"]} for i in range(MAX_DEPTH + 2)},
        "d0.yaml",
        (f"d{MAX_DEPTH}.yaml", "include", f"nested deeper than {MAX_DEPTH} levels"),
    ),
    (
        "bad yaml in an included file",
        {"p.yaml": {"include": ["a.yaml"]}, "a.yaml": "backends: [\n"},
        "p.yaml",
        ("a.yaml", "-", "invalid YAML"),
    ),
    (
        "bad value in an included file",
        {
            "p.yaml": {"include": ["a.yaml"]},
            "a.yaml": {"backends": {"b": backend(m={"id": "x", "input_price": -1})}},
        },
        "p.yaml",
        ("a.yaml", "backends.b.models.m.input_price", "greater than or equal to 0"),
    ),
    (
        "bad override in the including file",
        {
            "p.yaml": {
                "include": ["a.yaml"],
                "backends": {"b": {"models": {"m": {"context_window": "big"}}}},
            },
            "a.yaml": {"backends": {"b": backend(m={"id": "x"})}},
        },
        "p.yaml",
        ("p.yaml", "backends.b.models.m.context_window", "valid integer"),
    ),
    (
        "unknown key from an included file",
        {
            "p.yaml": {"include": ["a.yaml"], "backends": {"b": backend(m={"id": "x"})}},
            "a.yaml": {"backend": {}},
        },
        "p.yaml",
        ("a.yaml", "backend", "unknown key"),
    ),
    (
        "unknown offer",
        {"p.yaml": {"include": ["c.yaml"], "backends": {"b": {"offer": "gamma"}}}, "c.yaml": offers()},
        "p.yaml",
        ("p.yaml", "backends.b.offer", "no offer named 'gamma'; known: alpha, beta"),
    ),
    (
        "unknown hardware label in an offer",
        {
            "p.yaml": {"include": ["c.yaml"], "backends": {"b": backend(m={"id": "x"})}},
            "c.yaml": {"offers": {"o": {**backend(m={"id": "x"}), "hardware": "abacus"}}},
        },
        "p.yaml",
        ("c.yaml", "offers.o.hardware", "unknown hardware label 'abacus'"),
    ),  # fmt: skip
]


@pytest.mark.parametrize(
    ("files", "root", "expected"), [c[1:] for c in BAD_INCLUDES], ids=[c[0] for c in BAD_INCLUDES]
)
def test_include_problems_name_the_file_path_and_reason(
    tmp_path: Path, files: dict[str, Any], root: str, expected: tuple[str, str, str]
) -> None:
    for name, content in files.items():
        write(tmp_path / name, content)
    found = problems_of(tmp_path / root)
    name, path, reason = expected
    assert any(Path(p.file).name == name and p.path == path and reason in p.reason for p in found), "\n".join(
        map(str, found)
    )


def test_an_offer_is_inert_until_a_backend_names_it_and_its_keys_can_be_overridden(tmp_path: Path) -> None:
    write(tmp_path / "catalog.yaml", offers())
    user = write(
        tmp_path / "policy.yaml",
        {
            "include": ["catalog.yaml"],
            "backends": {"a": {"offer": "alpha", "models": {"llama": {"output_price": 0.9}, "qwen": None}}},
        },
    )
    policy = load_policy(user).policy
    assert list(policy.backends) == ["a"]  # beta, never named, is not a backend
    a = policy.backends["a"]
    assert str(a.base_url) == "https://alpha.example/v1" and a.api_key_env == KEY_ENV
    assert set(a.models) == {"llama"}
    llama = a.models["llama"]
    assert (llama.id, llama.input_price, llama.output_price, llama.quantization) == (
        "alpha/llama",
        0.5,
        0.9,
        "fp8",
    )


def test_a_problem_in_an_offer_is_reported_in_the_catalog_file(tmp_path: Path) -> None:
    catalog = offers()
    catalog["offers"]["alpha"]["models"]["llama"]["quantization"] = "fp12"
    write(tmp_path / "catalog.yaml", catalog)
    user = write(
        tmp_path / "policy.yaml", {"include": ["catalog.yaml"], "backends": {"a": {"offer": "alpha"}}}
    )
    found = problems_of(user)
    assert {(Path(p.file).name, p.path) for p in found} >= {
        ("catalog.yaml", "offers.alpha.models.llama.quantization"),
        ("catalog.yaml", "backends.a.models.llama.quantization"),
    }, found


def test_a_policys_own_hardware_label_is_known_and_its_figure_is_used(tmp_path: Path) -> None:
    write(tmp_path / "catalog.yaml", offers())
    user = write(
        tmp_path / "policy.yaml",
        {
            "include": ["catalog.yaml"],
            "hardware": {"nvidia-h100": {"joules_per_token": 0.123}},  # overrides the shipped figure
            "backends": {"a": {"offer": "alpha"}, "h": {**backend(m={"id": "x"}), "hardware": "nvidia-h100"}},
        },
    )
    loaded = load_policy(user)
    targets = build_catalog(loaded.policy, {}).targets
    assert {t.backend: t.joules_per_token for t in targets["llama"] + targets["m"]} == {"a": 0.05, "h": 0.123}
    assert JOULES_PER_TOKEN["nvidia-h100"] != 0.123  # the shipped table itself is untouched


def test_in_a_folder_an_included_file_is_not_a_policy_of_its_own(tmp_path: Path) -> None:
    write(tmp_path / "catalog.yaml", offers())
    write(tmp_path / "users.yaml", {"include": ["catalog.yaml"], "backends": {"a": {"offer": "alpha"}}})
    loaded = load_policy(tmp_path)
    assert list(loaded.policy.backends) == ["a"]
    assert sorted(f.name for f in loaded.files) == ["catalog.yaml", "users.yaml"]


def test_a_catalog_alone_in_a_folder_adds_no_backend(tmp_path: Path) -> None:
    write(tmp_path / "catalog.yaml", offers())
    write(tmp_path / "own.yaml", {"backends": {"b": {**backend(m={"id": "x"}), "hardware": "test-asic"}}})
    assert list(load_policy(tmp_path).policy.backends) == ["b"]


def test_the_fingerprint_follows_an_included_file(tmp_path: Path) -> None:
    base = write(tmp_path / "base.yaml", {"backends": {"b": backend(m={"id": "x", "input_price": 1})}})
    user = write(tmp_path / "policy.yaml", {"include": ["base.yaml"]})
    before = load_policy(user).fingerprint
    write(base, {"backends": {"b": backend(m={"id": "x", "input_price": 2})}})
    after = load_policy(user)
    assert after.fingerprint != before and after.policy.backends["b"].models["m"].input_price == 2


def test_a_later_include_may_delete_what_an_earlier_one_brought(tmp_path: Path) -> None:
    write(tmp_path / "a.yaml", {"backends": {"b": backend(m={"id": "m"}, n={"id": "n"})}})
    write(tmp_path / "b.yaml", {"backends": {"b": {"models": {"n": None}}}})
    policy = load_policy(write(tmp_path / "p.yaml", {"include": ["a.yaml", "b.yaml"]})).policy
    assert set(policy.backends["b"].models) == {"m"}


def test_an_offer_in_the_same_file_and_one_named_by_an_included_file(tmp_path: Path) -> None:
    write(tmp_path / "catalog.yaml", offers())
    write(tmp_path / "team.yaml", {"backends": {"t": {"offer": "beta"}}})  # beta comes from a sibling include
    own = {"o": {"provider": "openai", "base_url": "http://own.local/v1", "models": {"x": {"id": "own-x"}}}}
    user = write(
        tmp_path / "policy.yaml",
        {"include": ["catalog.yaml", "team.yaml"], "offers": own, "backends": {"mine": {"offer": "o"}}},
    )
    policy = load_policy(user).policy
    assert policy.backends["mine"].models["x"].id == "own-x"
    assert policy.backends["t"].models["llama"].id == "b"


# --- the merge itself, as a property ---------------------------------------------------------------------

SCALARS = st.integers(0, 9) | st.text("xyz", max_size=2) | st.lists(st.integers(0, 9), max_size=2)


def docs(leaf: st.SearchStrategy[Any]) -> st.SearchStrategy[dict[str, Any]]:
    tree = st.recursive(
        leaf, lambda inner: st.dictionaries(st.sampled_from("abc"), inner, max_size=3), max_leaves=8
    )
    return st.dictionaries(st.sampled_from("abcd"), tree, max_size=4)


def leaves(node: Any, at: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Any]]:
    if isinstance(node, dict) and node:
        for key, value in node.items():
            yield from leaves(value, (*at, key))
    elif at:
        yield at, node


def present(doc: Any, path: tuple[str, ...]) -> bool:
    node = doc
    for key in path:
        if not isinstance(node, dict) or key not in node:
            return False
        node = node[key]
    return True


def touched(patch: Any, path: tuple[str, ...]) -> bool:
    """Whether the patch sets, replaces or deletes anything on `path` (or above it)."""
    node = patch
    for key in path:
        if not isinstance(node, dict):
            return True
        if key not in node:
            return False
        node = node[key]
    return True


@given(docs(SCALARS), docs(SCALARS | st.none()))
def test_merge_is_rfc7386_and_knows_which_file_wrote_each_value(
    target: dict[str, Any], patch: dict[str, Any]
) -> None:
    origins: dict[Any, str] = {}
    base = merge({}, target, origins, {(): "target.yaml"}, ())
    out = merge(base, patch, origins, {(): "patch.yaml"}, ())
    doc = Document("root.yaml", out, origins)

    def get(path: tuple[str, ...]) -> Any:
        node: Any = out
        for key in path:
            node = node[key]
        return node

    for path, value in leaves(patch):
        if value is None:  # deleted
            assert not present(out, path)
        elif not (isinstance(value, dict) and not value):
            assert get(path) == value and doc.where(*path) == "patch.yaml"
    for path, value in leaves(target):
        if not touched(patch, path) and not (isinstance(value, dict) and not value):
            assert get(path) == value and doc.where(*path) == "target.yaml"
    assert all(v is not None for _, v in leaves(out))


@pytest.mark.parametrize(
    ("limit", "problem"),
    [
        ({"min_precision": "fp8"}, None),  # alpha's llama is fp8
        (
            {"min_precision": "bf16"},
            "no model the route matches meets it (they are served at: fp8, undeclared)",
        ),
        ({"allow": ["int4"]}, "served at: fp8, undeclared"),
        ({"allow": ["unknown"]}, None),
    ],
)
def test_check_refuses_a_precision_limit_no_backend_meets(
    tmp_path: Path, limit: dict[str, Any], problem: str | None
) -> None:
    write(tmp_path / "catalog.yaml", offers())
    policy = {
        "include": ["catalog.yaml"],
        "backends": {"a": {"offer": "alpha"}},
        "routes": [{"name": "r", "quantization": limit}],
    }
    user = write(tmp_path / "policy.yaml", policy)
    if problem is None:
        load_policy(user)
        return
    (found,) = problems_of(user)
    assert (Path(found.file).name, found.path) == ("policy.yaml", "routes[0].quantization")
    assert problem in found.reason
