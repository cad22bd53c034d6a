"""deploy/helm/routeway: `helm lint` and `helm template` (a real helm), each render validated and checked."""

from __future__ import annotations

import subprocess
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
    container,
    documents,
    env_of,
    run,
    tool,
    validate_all,
)

CHART = ROOT / "deploy" / "helm" / "routeway"
ALL_ON = (
    "redis.enabled=true",
    "serviceMonitor.enabled=true",
    "autoscaling.inFlight.enabled=true",
    "tracing.otlpEndpoint=http://jaeger-collector.observability.svc:4318",
)


def template(*sets: str) -> str:
    args = [tool("helm"), "template", "routeway", str(CHART), "--namespace", "llm"]
    for s in sets:
        args += ["--set", s]
    return run(*args)


def gateway_of(docs: list[dict[str, Any]]) -> dict[str, Any]:
    (dep,) = [d for d in by_kind(docs)["Deployment"] if container(d)["name"] == "routeway"]
    return dep


@pytest.fixture(scope="module")
def default() -> str:
    return template()


@pytest.fixture(scope="module")
def all_on() -> str:
    return template(*ALL_ON)


def test_lint_is_clean() -> None:
    for sets in ((), ALL_ON):
        args = [tool("helm"), "lint", "--strict", str(CHART)]
        for s in sets:
            args += ["--set", s]
        run(*args)


@pytest.mark.parametrize("which", ["default", "all_on"])
def test_renders_validate_and_hold_together(which: str, request: pytest.FixtureRequest) -> None:
    rendered: str = request.getfixturevalue(which)
    docs = documents(rendered)
    validate_all(docs)
    dep = gateway_of(docs)
    check_gateway_deployment(dep)
    check_selectors(by_kind(docs), dep)
    check_no_key_baked_in(rendered, docs)


def test_default_render(default: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    docs = documents(default)
    kinds = by_kind(docs)
    assert sorted(kinds) == [
        "ConfigMap",
        "Deployment",
        "HorizontalPodAutoscaler",
        "PodDisruptionBudget",
        "Service",
    ]
    dep = gateway_of(docs)
    env = env_of(container(dep))
    # No Redis, no tracing endpoint and no ServiceMonitor unless asked; Prometheus annotations instead.
    assert "ROUTEWAY_REDIS_URL" not in env and "OTEL_EXPORTER_OTLP_ENDPOINT" not in env
    assert dep["spec"]["template"]["metadata"]["annotations"]["prometheus.io/path"] == "/metrics"
    assert "replicas" not in dep["spec"]  # the HPA owns the count
    (cm,) = kinds["ConfigMap"]
    check_policy_configmap(cm, tmp_path, monkeypatch)
    # The chart ships the same example policy as the Kustomize base.
    shipped = (ROOT / "deploy" / "kubernetes" / "policies" / "routeway.yaml").read_text()
    assert cm["data"] == {"routeway.yaml": shipped}
    check_starts_only_with_keys(dep, monkeypatch)


def test_everything_on(all_on: str) -> None:
    docs = documents(all_on)
    kinds = by_kind(docs)
    dep = gateway_of(docs)
    env = env_of(container(dep))
    assert env["ROUTEWAY_REDIS_URL"]["value"] == "redis://routeway-redis:6379/0"
    redis_services = [s for s in kinds["Service"] if s["metadata"]["name"] == "routeway-redis"]
    (redis_pod,) = [d for d in kinds["Deployment"] if d is not dep]
    assert (
        redis_services[0]["spec"]["selector"].items()
        <= redis_pod["spec"]["template"]["metadata"]["labels"].items()
    )
    assert env["OTEL_EXPORTER_OTLP_ENDPOINT"]["value"].endswith(":4318")
    assert env["OTEL_EXPORTER_OTLP_PROTOCOL"]["value"] == "http/protobuf"
    (hpa,) = kinds["HorizontalPodAutoscaler"]
    pods = [m["pods"] for m in hpa["spec"]["metrics"] if m["type"] == "Pods"]
    assert pods[0]["metric"]["name"] == "routeway_requests_in_flight"
    (monitor,) = kinds["ServiceMonitor"]
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["port"] == "http" and endpoint["path"] == "/metrics"
    (svc,) = [s for s in kinds["Service"] if s["metadata"]["name"] == "routeway"]
    # It scrapes the gateway's Service, never the in-chart Redis's.
    selects = monitor["spec"]["selector"]["matchLabels"].items()
    assert selects <= svc["metadata"]["labels"].items()
    assert not selects <= redis_services[0]["metadata"]["labels"].items()


def test_redis_url_from_a_secret_and_policies_from_values(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    policy = {
        "backends": {
            "vllm": {
                "provider": "openai",
                "base_url": "http://vllm.llm.svc:8000/v1",
                "models": {"llama": {"id": "meta-llama/Llama-3.1-8B-Instruct"}},
            }
        },
        "routes": [{"name": "default", "match": {"model": "*"}, "objective": "fastest"}],
    }
    values = tmp_path / "values.yaml"
    values.write_text(
        yaml.safe_dump(
            {
                "redis": {"existingSecret": "redis-url"},
                "providerKeys": {"existingSecret": ""},
                "policies": {"files": {"vllm.yaml": yaml.safe_dump(policy)}},
            }
        )
    )
    docs = documents(run(tool("helm"), "template", "routeway", str(CHART), "-f", str(values)))
    validate_all(docs)
    dep = gateway_of(docs)
    c = container(dep)
    ref = env_of(c)["ROUTEWAY_REDIS_URL"]["valueFrom"]["secretKeyRef"]
    assert ref == {"name": "redis-url", "key": "ROUTEWAY_REDIS_URL"}
    assert "envFrom" not in c  # key-less upstreams: no provider Secret is needed
    (cm,) = by_kind(docs)["ConfigMap"]
    (tmp_path / "p").mkdir()
    assert check_policy_configmap(cm, tmp_path / "p", monkeypatch) == set()
    assert yaml.safe_load(cm["data"]["vllm.yaml"]) == policy


def test_the_keys_secret_cannot_be_left_out() -> None:
    args = [tool("helm"), "template", "routeway", str(CHART), "--set", "auth.existingSecret="]
    done = subprocess.run(args, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode != 0 and "ROUTEWAY_API_KEYS" in done.stderr
