"""The `routeway` command as a user runs it: check, serve (a real process on uvloop), explain, hot reload."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
import yaml

from gateway.sim import SimThread
from tests.conftest import free_port
from tests.integration.conftest import BACKEND_KEY, GatewayThread, default_policy, wait_serving

REPO = Path(__file__).resolve().parents[2]
MSG = [{"role": "user", "content": "hi"}]


def routeway(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gateway", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        cwd=REPO,
    )


def write(tmp: Path, name: str, text: str) -> Path:
    path = tmp / name
    path.write_text(text)
    return path


def test_check_accepts_the_shipped_policies() -> None:
    result = routeway("check", "--config", "policies")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("ok: 5 backends")  # vertex-tpu and tpu-v5e share the TPU simulator


GOOD_BACKEND = """
backends:
  up:
    provider: openai
    base_url: http://127.0.0.1:1/v1
    models:
      m: {id: x}
"""


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("backends: [oops\n", ["bad.yaml", "invalid YAML", "line 2"]),
        (GOOD_BACKEND + "    colour: red\n", ["backends.up.colour", "unknown"]),
        (GOOD_BACKEND + "routes:\n  - {name: r, objective: quickest}\n", ["routes[0].objective", "cheapest"]),
        (GOOD_BACKEND + "routes:\n  - {name: r, backends: [ghost]}\n", ["routes[0].backends[0]", "ghost"]),
        (
            GOOD_BACKEND.replace("models:", "api_key_env: ROUTEWAY_TEST_UNSET_VAR\n    models:"),
            ["backends.up.api_key_env", "ROUTEWAY_TEST_UNSET_VAR", "not set"],
        ),
    ],
)
def test_check_reports_file_path_and_reason(tmp_path: Path, text: str, expected: list[str]) -> None:
    path = write(tmp_path, "bad.yaml", text)
    result = routeway("check", "--config", str(path))
    assert result.returncode == 1
    for fragment in expected:
        assert fragment in result.stderr, result.stderr


def test_explain_command_ranks_demo_backends() -> None:
    result = routeway("explain", "llama-3.3-70b", "--config", "policies", "--objective", "fastest")
    assert result.returncode == 0, result.stderr
    doc = yaml.safe_load(result.stdout)
    assert doc["candidates"][0]["backend"] == "groq-lpu"
    assert any("context window" in d["reason"] for d in doc["dropped"]) is False


def test_serve_process_answers_the_sdk(sims: SimThread, tmp_path: Path) -> None:
    policy = write(tmp_path, "p.yaml", yaml.safe_dump(default_policy(sims)))
    port = free_port()
    env = {"PATH": "/usr/bin:/bin", "ROUTEWAY_TEST_BACKEND_KEY": BACKEND_KEY, "ROUTEWAY_LOG_LEVEL": "INFO"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "gateway", "serve", "--config", str(policy), "--port", str(port)],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_serving(proc, port)
        client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="x", max_retries=0)
        resp = client.chat.completions.create(model="fast-only", messages=MSG, max_tokens=2)  # type: ignore[arg-type]
        assert resp.choices[0].message.content
    finally:
        proc.terminate()
        _, stderr = proc.communicate(timeout=15)
    # One JSON access line per request, and the backend key never in the logs.
    access = [line for line in stderr.splitlines() if '"routeway.access"' in line]
    assert len(access) == 1 and '"backend":"fast"' in access[0]
    assert BACKEND_KEY not in stderr


def _wait_for(predicate: Any, timeout_s: float = 8.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


def test_hot_reload_applies_good_policy_and_keeps_last_good(sims: SimThread, tmp_path: Path) -> None:
    policy = default_policy(sims)
    with GatewayThread(policy, tmp_path, reload_policies=True) as gw:
        client = gw.client()
        time.sleep(0.3)  # let the watcher start
        policy["backends"]["cheap"]["models"]["new-model"] = {"id": "up-cheap"}
        gw.write_policy(policy)
        _wait_for(lambda: "new-model" in [m.id for m in client.models.list()])

        gw.policy_path.write_text("backends: [broken\n")
        time.sleep(1.0)
        assert client.chat.completions.create(model="new-model", messages=MSG, max_tokens=1).choices  # type: ignore[arg-type]

        r = httpx.post(gw.root + "/admin/reload", timeout=10)
        assert r.status_code == 422
        assert r.json()["problems"][0]["file"].endswith("policy.yaml")
        assert client.chat.completions.create(model="new-model", messages=MSG, max_tokens=1).choices  # type: ignore[arg-type]
