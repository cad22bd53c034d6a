"""Rendering deploy/ with the real tools, and the checks every render of Routeway's manifests must pass."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from gateway.exposure import verdict_for
from gateway.policy.loader import load_policy
from gateway.policy.model import Timeouts
from gateway.settings import Settings

ROOT = Path(__file__).resolve().parents[3]
# The oldest Kubernetes these manifests claim (HPA autoscaling/v2 and PDB policy/v1 are GA there) and the
# newest whose schemas kubernetes-validate ships.
KUBE_VERSIONS = ("1.27.0", kubernetes_validate.latest_version())
SECRET_ENV = ("ROUTEWAY_API_KEYS", "ROUTEWAY_ADMIN_KEY", "ROUTEWAY_REDIS_URL")


def tool(name: str) -> str:
    """The venv's copy (make k8s-tools) first, then PATH; a missing tool fails the test, never skips it."""
    local = ROOT / ".venv" / "bin" / name
    if local.is_file():
        return str(local)
    found = shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is not installed: run `make k8s-tools` (the README's test command does)")
    return found


def run(*args: str) -> str:
    done = subprocess.run(args, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, f"{' '.join(args)} failed:\n{done.stderr}"
    return done.stdout


def documents(text: str) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(text) if doc]


def by_kind(docs: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for doc in docs:
        out.setdefault(doc["kind"], []).append(doc)
    return out


def validate_all(docs: list[dict[str, Any]]) -> None:
    """Each core resource against the Kubernetes OpenAPI schemas, strictly (an unknown field is an error)."""
    for doc in docs:
        if doc["apiVersion"].startswith("monitoring.coreos.com/"):
            continue  # a CRD: no schema ships with Kubernetes; checked by shape in the tests
        for version in KUBE_VERSIONS:
            try:
                kubernetes_validate.validate(doc, version, strict=True)
            except kubernetes_validate.ValidationError as exc:
                raise AssertionError(f"{doc['kind']} {doc['metadata']['name']} on {version}: {exc}") from exc


def container(deployment: dict[str, Any]) -> dict[str, Any]:
    (only,) = deployment["spec"]["template"]["spec"]["containers"]
    c: dict[str, Any] = only
    return c


def env_of(c: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in c.get("env", [])}


def check_gateway_deployment(dep: dict[str, Any]) -> None:
    """Security context, probes, resources, graceful stop, Secret references and the policy mount."""
    pod = dep["spec"]["template"]["spec"]
    c = container(dep)
    psc = pod["securityContext"]
    assert psc["runAsNonRoot"] is True and psc["runAsUser"] == 10001 and psc["runAsGroup"] == 10001
    assert psc["seccompProfile"] == {"type": "RuntimeDefault"}
    csc = c["securityContext"]
    assert csc["readOnlyRootFilesystem"] is True and csc["allowPrivilegeEscalation"] is False
    assert csc["capabilities"] == {"drop": ["ALL"]}
    assert "privileged" not in csc and pod["automountServiceAccountToken"] is False
    # A writable /tmp, as the root filesystem is read-only.
    mounts = {m["mountPath"]: m for m in c["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert "emptyDir" in volumes[mounts["/tmp"]["name"]]

    (port,) = c["ports"]
    assert port == {"name": "http", "containerPort": 8080}
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    # Liveness is lenient: a busy replica must not be restarted for one slow answer.
    live = c["livenessProbe"]
    assert live["failureThreshold"] * live["periodSeconds"] >= 30

    res = c["resources"]
    assert set(res["requests"]) == {"cpu", "memory"} and set(res["limits"]) == {"cpu", "memory"}
    # Long enough for the longest stream the policy allows by default, after the preStop pause.
    pre_stop = c["lifecycle"]["preStop"]["exec"]["command"]
    assert pre_stop[0] == "sleep"
    assert pod["terminationGracePeriodSeconds"] >= Timeouts().total_s + int(pre_stop[1])
    assert dep["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0

    env = env_of(c)
    api_keys = env["ROUTEWAY_API_KEYS"]["valueFrom"]["secretKeyRef"]
    assert api_keys["key"] == "ROUTEWAY_API_KEYS" and not api_keys.get("optional", False)
    assert env["ROUTEWAY_ADMIN_KEY"]["valueFrom"]["secretKeyRef"]["optional"] is True
    for name in SECRET_ENV:
        assert "value" not in env.get(name, {}) or not _has_password(env[name]["value"]), name
    # Required: the policy does not load while a key it names is unset.
    (provider_keys,) = c["envFrom"]
    assert provider_keys["secretRef"].get("optional", False) is False
    assert env["OTEL_TRACES_SAMPLER"]["value"] == "parentbased_traceidratio"
    assert float(env["OTEL_TRACES_SAMPLER_ARG"]["value"]) == 0.1

    # The policy: the whole ConfigMap mounted as the folder ROUTEWAY_CONFIG names, no subPath (a subPath
    # mount never sees the ConfigMap's updates, so hot reload would silently stop).
    policy_mount = mounts[env["ROUTEWAY_CONFIG"]["value"]]
    assert policy_mount["readOnly"] is True and "subPath" not in policy_mount
    assert "configMap" in volumes[policy_mount["name"]]


def _has_password(url: str) -> bool:
    return "@" in url


def check_policy_configmap(
    configmap: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> set[str]:
    """The ConfigMap's files load as a policy, as a pod would load them; returns the key env names.

    The loader refuses a policy whose `api_key_env` is unset, so the pod needs the provider-keys Secret.
    """
    names: set[str] = set()
    for name, text in configmap["data"].items():
        assert name.endswith((".yaml", ".yml"))
        (tmp_path / name).write_text(text)
        backends = (yaml.safe_load(text) or {}).get("backends", {})
        names |= {b["api_key_env"] for b in backends.values() if "api_key_env" in b}
    for name in names:
        monkeypatch.setenv(name, "placeholder-for-the-test")
    loaded = load_policy(tmp_path)
    assert {b.api_key_env for b in loaded.policy.backends.values() if b.api_key_env} == names
    return names


def check_starts_only_with_keys(dep: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    """The Deployment's own environment, with and without the keys Secret, through the exposure rule."""
    for name, entry in env_of(container(dep)).items():
        if "value" in entry:
            monkeypatch.setenv(name, entry["value"])
    for name in SECRET_ENV:
        monkeypatch.delenv(name, raising=False)
    refusal = verdict_for(Settings()).refusal
    assert refusal is not None and "ROUTEWAY_API_KEYS" in refusal
    monkeypatch.setenv("ROUTEWAY_API_KEYS", "rw-k8s-one,rw-k8s-two")
    monkeypatch.setenv("ROUTEWAY_ADMIN_KEY", "rw-k8s-admin")
    assert verdict_for(Settings()).refusal is None


def check_no_key_baked_in(rendered: str, docs: list[dict[str, Any]]) -> None:
    assert not [d for d in docs if d["kind"] == "Secret"], "keys come from Secrets the operator creates"
    for marker in ("sk-", "rw-", "gsk_", "Bearer ", "password"):
        lines = [
            line for line in rendered.splitlines() if marker in line and not line.lstrip().startswith("#")
        ]
        assert not lines, lines


def check_selectors(kinds: dict[str, list[dict[str, Any]]], dep: dict[str, Any]) -> None:
    """The Service, PDB and HPA all point at the gateway's pods, and only at them."""
    pod_labels = dep["spec"]["template"]["metadata"]["labels"]
    assert dep["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    services = [s for s in kinds["Service"] if s["spec"]["selector"].items() <= pod_labels.items()]
    (svc,) = services
    assert svc["spec"]["ports"][0]["targetPort"] == "http"
    (pdb,) = kinds["PodDisruptionBudget"]
    assert pdb["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    assert pdb["spec"]["maxUnavailable"] == 1
    (hpa,) = kinds["HorizontalPodAutoscaler"]
    target = hpa["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", dep["metadata"]["name"])
    assert hpa["spec"]["minReplicas"] >= 2  # one replica down must not take the service down
    cpu = [m for m in hpa["spec"]["metrics"] if m["type"] == "Resource"]
    assert cpu[0]["resource"]["name"] == "cpu"
    for other in kinds.get("Deployment", []):
        if other is not dep:
            assert (
                not svc["spec"]["selector"].items() <= other["spec"]["template"]["metadata"]["labels"].items()
            )
