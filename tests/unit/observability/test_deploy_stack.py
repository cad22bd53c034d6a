"""deploy/: the compose file, Prometheus config and deploy policy agree with each other and the app."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from gateway.exposure import verdict_for
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
    account = "/home/routeway/vertex-service-account.json"
    assert services["sim"]["entrypoint"] == [
        "routeway", "sim", "--fleet", "demo", "--host", "0.0.0.0",
        "--service-account", account, "--token-host", "sim",
    ]  # fmt: skip
    # The gateway reads the service account the simulator minted, through the volume both mount.
    assert services["gateway"]["environment"]["GOOGLE_APPLICATION_CREDENTIALS"] == account
    homes = [mounts(services[name])["/home/routeway"] for name in ("sim", "gateway")]
    assert homes == ["sim-home", "sim-home"]
    assert "sim-home" in compose["volumes"]
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
    urls = [urlsplit(b.base_url or "") for b in loaded.policy.backends.values()]
    assert {u.hostname for u in urls} == {"sim"}
    assert sorted({u.port or 0 for u in urls}) == ports  # the Vertex and OpenAI layouts share a simulator
    deploy = yaml.safe_load((DEPLOY / "policies" / "demo.yaml").read_text())
    shipped = yaml.safe_load((ROOT / "policies" / "demo.yaml").read_text())
    for backend in shipped["backends"].values():
        for key in ("base_url", "metrics_url"):
            if key in backend:
                backend[key] = backend[key].replace("127.0.0.1", "sim")
    assert deploy == shipped


def _env_file(path: Path) -> dict[str, str]:
    pairs = (
        line.split("=", 1) for line in path.read_text().splitlines() if line and not line.startswith("#")
    )
    return {k.strip(): v.strip() for k, v in pairs}


def test_keys_come_from_a_git_ignored_env_file_never_the_image_or_compose(compose: dict[str, Any]) -> None:
    gateway = compose["services"]["gateway"]
    assert gateway["env_file"] == ["routeway.env"]
    assert "deploy/routeway.env" in (ROOT / ".gitignore").read_text().splitlines()
    assert "deploy/routeway.env" in (ROOT / ".dockerignore").read_text().splitlines()
    example = _env_file(DEPLOY / "routeway.env.example")
    assert example == {"ROUTEWAY_API_KEYS": "", "ROUTEWAY_ADMIN_KEY": ""}  # names only, no sample secret
    secret_names = ("ROUTEWAY_API_KEYS", "ROUTEWAY_ADMIN_KEY", "ROUTEWAY_ALLOW_OPEN")
    assert not set(secret_names) & set(gateway["environment"])
    dockerfile = (ROOT / "Dockerfile").read_text()
    env_lines = [line for line in dockerfile.splitlines() if line.startswith(("ENV ", "ARG "))]
    assert env_lines and not any(name in line for line in env_lines for name in secret_names)
    assert "ROUTEWAY_HOST=0.0.0.0" in " ".join(env_lines)


def test_the_stack_refuses_to_start_until_the_env_file_has_client_keys(
    compose: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    for key, value in compose["services"]["gateway"]["environment"].items():
        monkeypatch.setenv(key, str(value))
    for key, value in _env_file(DEPLOY / "routeway.env.example").items():
        monkeypatch.setenv(key, value)
    refusal = verdict_for(Settings()).refusal
    assert refusal is not None and "ROUTEWAY_API_KEYS" in refusal
    monkeypatch.setenv("ROUTEWAY_API_KEYS", "rw-k1,rw-k2")
    monkeypatch.setenv("ROUTEWAY_ADMIN_KEY", "rw-admin")
    assert verdict_for(Settings()).refusal is None


def test_compose_samples_a_share_of_traces(compose: dict[str, Any]) -> None:
    """Every request sampled costs ~0.8x the throughput (docs/operations.md): the stack ships a ratio."""
    env = compose["services"]["gateway"]["environment"]
    assert env["OTEL_TRACES_SAMPLER"] == "parentbased_traceidratio"
    assert 0 < float(env["OTEL_TRACES_SAMPLER_ARG"]) <= 0.1
