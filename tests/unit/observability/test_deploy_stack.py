"""deploy/: the compose file, Prometheus config and deploy policy agree with each other and the app."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from gateway.observability.tracing import build_tracing
from gateway.policy.loader import load_policy
from gateway.settings import Settings
from gateway.sim import DEMO_FLEET

ROOT = Path(__file__).resolve().parents[3]
DEPLOY = ROOT / "deploy"


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load((DEPLOY / "docker-compose.yaml").read_text())
    return doc


def mounts(service: dict[str, Any]) -> dict[str, str]:
    """Container path -> host path (relative to deploy/) of each bind mount."""
    out: dict[str, str] = {}
    for volume in service.get("volumes", []):
        host, container, *_ = volume.split(":")
        out[container] = host
    return out


def test_services_images_and_ports(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert set(services) == {"gateway", "sim", "redis", "jaeger", "prometheus"}
    for name in ("gateway", "sim"):
        build = services[name]["build"]
        assert (DEPLOY / build["context"] / build["dockerfile"]).is_file()
    assert services["gateway"]["ports"] == ["8080:8080"]
    assert services["sim"]["entrypoint"] == ["routeway", "sim", "--fleet", "demo", "--host", "0.0.0.0"]
    jaeger = services["jaeger"]
    assert {p.split(":")[0] for p in jaeger["ports"]} >= {"4317", "4318", "16686"}
    assert jaeger["environment"]["COLLECTOR_OTLP_ENABLED"] == "true"
    assert set(services["gateway"]["depends_on"]) == {"sim", "redis", "jaeger"}


def test_gateway_environment_builds_settings_with_tracing(
    compose: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    env: dict[str, str] = compose["services"]["gateway"]["environment"]
    assert env["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://jaeger:4318"
    assert env["ROUTEWAY_REDIS_URL"].startswith("redis://redis:")
    for key, value in env.items():
        monkeypatch.setenv(key, str(value))
    settings = Settings()
    assert settings.host == "0.0.0.0" and settings.port == 8080
    assert (
        settings.otel_exporter_otlp_protocol == "http/protobuf" and settings.otel_service_name == "routeway"
    )
    tracing = build_tracing(settings)
    assert tracing is not None
    tracing.shutdown()
    # The policy folder the gateway reads is the deploy policy, mounted read-only.
    assert mounts(compose["services"]["gateway"])[str(settings.config)] == "./policies"


def test_prometheus_scrapes_the_gateway(compose: dict[str, Any]) -> None:
    prom = compose["services"]["prometheus"]
    host_file = mounts(prom)["/etc/prometheus/prometheus.yml"]
    config = yaml.safe_load((DEPLOY / host_file).read_text())
    (job,) = config["scrape_configs"]
    assert job["metrics_path"] == "/metrics"
    port = compose["services"]["gateway"]["environment"]["ROUTEWAY_PORT"]
    assert job["static_configs"][0]["targets"] == [f"gateway:{port}"]


def test_deploy_policy_is_the_demo_policy_pointed_at_the_sim_service() -> None:
    loaded = load_policy(DEPLOY / "policies")
    ports = sorted(p.port for p in DEMO_FLEET.values())
    urls = [urlsplit(b.base_url) for b in loaded.policy.backends.values()]
    assert {u.hostname for u in urls} == {"sim"}
    assert sorted(u.port or 0 for u in urls) == ports
    deploy = yaml.safe_load((DEPLOY / "policies" / "demo.yaml").read_text())
    shipped = yaml.safe_load((ROOT / "policies" / "demo.yaml").read_text())
    for backend in shipped["backends"].values():
        backend["base_url"] = backend["base_url"].replace("127.0.0.1", "sim")
    assert deploy == shipped
