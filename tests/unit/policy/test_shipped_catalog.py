"""The shipped policies/catalog.yaml: the one hardware table, every figure with its source, and every offer a
backend this build can serve once a policy names it."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from gateway.policy.loader import load_policy
from gateway.providers.registry import known_kinds
from gateway.routing.hardware import JOULES_PER_TOKEN, SHIPPED_CATALOG

CATALOG = Path(__file__).resolve().parents[3] / "policies" / "catalog.yaml"
# What a backend must add to an offer of these kinds (the catalog cannot know a user's project).
REQUIRED_EXTRAS: dict[str, dict[str, Any]] = {"vertex": {"project": "test-project"}}


def catalog() -> dict[str, Any]:
    data = yaml.safe_load(CATALOG.read_text())
    assert isinstance(data, dict)
    return data


def test_the_package_reads_the_shipped_file() -> None:
    assert SHIPPED_CATALOG.resolve() == CATALOG.resolve()


def test_the_hardware_table_is_the_catalogs_and_nowhere_else() -> None:
    section = catalog()["hardware"]
    assert dict(JOULES_PER_TOKEN) == {label: spec["joules_per_token"] for label, spec in section.items()}


def _commented_keys(section: str, indent: int) -> dict[str, str]:
    """Each key of a top-level section at `indent`, with the comment lines just above it (joined)."""
    out: dict[str, str] = {}
    inside, comments = False, []
    for line in CATALOG.read_text().splitlines():
        if not line.startswith(" ") and line.strip():
            inside, comments = line.startswith(f"{section}:"), []
            continue
        stripped = line.strip()
        if stripped.startswith("#"):
            comments.append(stripped)
        elif inside and re.match(rf"^ {{{indent}}}[A-Za-z0-9-]+:", line):
            out[stripped.split(":")[0]] = " ".join(comments)
            comments = []
    return out


@pytest.mark.parametrize("section", ["hardware", "offers"])
def test_every_figure_says_where_it_comes_from(section: str) -> None:
    """Prices and energy figures carry their source (a URL or 'memory') or say they are the project's own."""
    keys = _commented_keys(section, 2)
    assert set(keys) == set(catalog()[section])
    for name, comment in keys.items():
        sourced = re.search(r"https?://|\(memory\)|project's (own |round )?(estimate|figure)", comment)
        assert sourced, f"{section}.{name} has no source comment"


def test_every_offer_of_a_known_provider_kind_loads_as_a_backend(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    offers = catalog()["offers"]
    usable = {name: o for name, o in offers.items() if o["provider"] in known_kinds()}
    assert {"groq", "together", "fireworks", "nvidia-nim"} <= set(usable)
    for offer in usable.values():
        if "api_key_env" in offer:
            monkeypatch.setenv(offer["api_key_env"], "sk-test")
    backends = {name: {"offer": name, **REQUIRED_EXTRAS.get(o["provider"], {})} for name, o in usable.items()}
    policy_file = tmp_path / "policy.yaml"
    policy_file.write_text(yaml.safe_dump({"include": [str(CATALOG)], "backends": backends}))
    policy = load_policy(policy_file).policy
    assert set(policy.backends) == set(usable)
    serving = {m: [b for b, spec in policy.backends.items() if m in spec.models] for m in ("llama-3.3-70b",)}
    assert len(serving["llama-3.3-70b"]) >= 3  # one logical name across providers: one route spreads it
    for name, backend in policy.backends.items():
        for model in backend.models.values():
            assert model.output_price >= 0 and model.id, name


def test_the_shipped_folder_loads_with_the_catalog_in_it() -> None:
    loaded = load_policy(CATALOG.parent)
    assert "catalog.yaml" in {f.name for f in loaded.files}
    assert set(loaded.policy.hardware) == set(JOULES_PER_TOKEN)


def test_the_readme_catalog_example_loads_as_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    readme = (CATALOG.parents[1] / "README.md").read_text()
    example = next(
        b for b in re.findall(r"```yaml\n(.*?)```", readme, re.S) if "include: [catalog.yaml]" in b
    )
    (tmp_path / "catalog.yaml").write_bytes(CATALOG.read_bytes())
    (tmp_path / "policy.yaml").write_text(example)
    monkeypatch.setenv("GROQ_API_KEY", "gsk-test")
    monkeypatch.setenv("TOGETHER_API_KEY", "tg-test")
    policy = load_policy(tmp_path / "policy.yaml").policy
    assert set(policy.backends) == {"groq", "together"}
    together = policy.backends["together"].models
    assert together["llama-3.3-70b"].output_price == 0.80 and "deepseek-v3" not in together
    assert policy.hardware["nvidia-h100"].joules_per_token == 0.35
    assert policy.routes[0].quantization.min_precision == "fp8"
