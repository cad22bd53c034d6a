"""deploy/kubernetes: `kubectl kustomize` renders it offline; every resource validates and fits together."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.unit.deploy.manifests import (
    ROOT,
    by_kind,
    check_gateway_deployment,
    check_no_key_baked_in,
    check_policy_configmap,
    check_selectors,
    check_starts_only_with_keys,
    documents,
    run,
    tool,
    validate_all,
)

BASE = ROOT / "deploy" / "kubernetes"


@pytest.fixture(scope="module")
def rendered() -> str:
    return run(tool("kubectl"), "kustomize", str(BASE))


@pytest.fixture(scope="module")
def docs(rendered: str) -> list[dict[str, Any]]:
    return documents(rendered)


@pytest.fixture(scope="module")
def deployment(docs: list[dict[str, Any]]) -> dict[str, Any]:
    (dep,) = by_kind(docs)["Deployment"]
    return dep


def test_renders_the_expected_resources(docs: list[dict[str, Any]]) -> None:
    kinds = sorted(d["kind"] for d in docs)
    assert kinds == [
        "ConfigMap",
        "Deployment",
        "HorizontalPodAutoscaler",
        "PodDisruptionBudget",
        "Service",
    ]


def test_every_resource_validates_against_the_kubernetes_schemas(docs: list[dict[str, Any]]) -> None:
    validate_all(docs)


def test_the_deployment(deployment: dict[str, Any]) -> None:
    check_gateway_deployment(deployment)
    assert deployment["spec"]["replicas"] >= 2


def test_service_pdb_and_hpa_select_the_gateway(
    docs: list[dict[str, Any]], deployment: dict[str, Any]
) -> None:
    check_selectors(by_kind(docs), deployment)


def test_policy_configmap_loads_and_keeps_its_name_for_hot_reload(
    docs: list[dict[str, Any]], deployment: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (cm,) = by_kind(docs)["ConfigMap"]
    # No hash suffix: an edited policy updates this ConfigMap in place, and the pods hot-reload it.
    volumes = deployment["spec"]["template"]["spec"]["volumes"]
    assert {"name": "policies", "configMap": {"name": cm["metadata"]["name"]}} in volumes
    assert cm["metadata"]["name"] == "routeway-policies"
    key_envs = check_policy_configmap(cm, tmp_path, monkeypatch)
    # Every provider key the policy names is documented in the Secret recipe at the top of the base.
    recipe = (BASE / "kustomization.yaml").read_text()
    assert key_envs and all(f"--from-literal={name}=" in recipe for name in key_envs)


def test_keys_are_required_and_none_is_baked_in(
    rendered: str, docs: list[dict[str, Any]], deployment: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    check_no_key_baked_in(rendered, docs)
    check_starts_only_with_keys(deployment, monkeypatch)


def test_the_image_runs_as_the_user_the_pods_require() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    stages = [line for line in dockerfile.splitlines() if line.startswith("FROM ")]
    assert len(stages) == 2 and stages[0].endswith(" AS build")
    final = dockerfile[dockerfile.rindex("\nFROM ") :]
    assert "--uid 10001" in final and "\nUSER 10001:10001\n" in final
    # No compiler or package manager run in the final stage: it only copies the build stage's result.
    assert "apt-get" not in final and "pip install" not in final
    assert "COPY --from=build /install /usr/local" in final
    assert "\nHEALTHCHECK " in final and "/healthz" in final
    for label in ("version", "revision"):
        assert f'org.opencontainers.image.{label}="${{{label.upper()}}}"' in final
        assert f"\nARG {label.upper()}=" in final


def test_the_example_secret_recipe_matches_what_the_deployment_reads(deployment: dict[str, Any]) -> None:
    recipe = (BASE / "kustomization.yaml").read_text()
    env = {e["name"]: e for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]}
    for name in ("ROUTEWAY_API_KEYS", "ROUTEWAY_ADMIN_KEY", "ROUTEWAY_REDIS_URL"):
        ref = env[name]["valueFrom"]["secretKeyRef"]
        assert f"secret generic {ref['name']}" in recipe and f"--from-literal={ref['key']}=" in recipe
    (env_from,) = deployment["spec"]["template"]["spec"]["containers"][0]["envFrom"]
    assert f"secret generic {env_from['secretRef']['name']}" in recipe
    yaml.safe_load(recipe)  # the recipe lives in comments: the file stays a valid Kustomization
