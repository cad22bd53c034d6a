"""A newcomer's first hour through the real CLI: demo start and stop, check, explain, sim."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from gateway.demo import port_in_use
from gateway.sim import SimThread
from tests.conftest import free_port
from tests.integration.conftest import CLIENT_KEY, GatewayThread, default_policy
from tests.integration.test_cli import REPO, routeway, write

OBJECTIVES_LINE = "error: --objective must be one of cheapest, fastest, balanced, greenest"


def free_ports(n: int) -> int:
    """The first of `n` consecutive free loopback ports."""
    for _ in range(50):
        first = free_port()
        if first + n < 65536 and not any(port_in_use("127.0.0.1", first + i) for i in range(n)):
            return first
    raise RuntimeError(f"no {n} consecutive free ports")


def wait_http(url: str, proc: subprocess.Popen[Any], timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            httpx.get(url, timeout=0.5, trust_env=False)
            return
        except httpx.HTTPError:
            assert proc.poll() is None, f"exited early with {proc.returncode}"
            assert time.monotonic() < deadline, f"{url} did not answer"
            time.sleep(0.1)


def children(pid: int) -> list[int]:
    text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    return [int(p) for p in text.split()]


class Demo:
    """`routeway demo` as a user starts it, in its own process group like a terminal's foreground job."""

    def __init__(self, tmp: Path) -> None:
        self.port, self.sim_port = free_port(), free_ports(4)
        self.out, self.err = tmp / "demo.out", tmp / "demo.err"
        args = ["demo", "--port", str(self.port), "--sim-port", str(self.sim_port)]
        with self.out.open("w") as out, self.err.open("w") as err:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "gateway", *args],
                cwd=REPO,
                stdout=out,
                stderr=err,
                start_new_session=True,
                env={"PATH": os.environ["PATH"], "ROUTEWAY_LOG_LEVEL": "INFO"},
            )

    def ports(self) -> list[int]:
        return [self.port] + [self.sim_port + i for i in range(4)]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)


@pytest.fixture
def demo(tmp_path: Path) -> Iterator[Demo]:
    running = Demo(tmp_path)
    sims: list[int] = []
    try:
        wait_http(f"http://127.0.0.1:{running.port}/healthz", running.proc)
        sims = children(running.proc.pid)
        yield running
    finally:
        running.stop()
        for pid in sims:  # an orphan only when the test failed: never leave it holding the ports
            with contextlib.suppress(OSError):  # gone already (the pid is checked: it may be reused)
                if b"gateway\x00sim" in Path(f"/proc/{pid}/cmdline").read_bytes():
                    os.kill(pid, signal.SIGKILL)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_demo_stops_cleanly_with_its_simulators(demo: Demo, signum: signal.Signals) -> None:
    (sim_child,) = children(demo.proc.pid)
    client = openai.OpenAI(base_url=f"http://127.0.0.1:{demo.port}/v1", api_key="x", max_retries=0)
    answer = client.chat.completions.create(
        model="llama-3.3-70b", messages=[{"role": "user", "content": "hi"}], max_tokens=3
    )
    assert answer.choices[0].message.content  # served by a simulator on the moved ports

    if signum == signal.SIGINT:
        os.killpg(demo.proc.pid, signum)  # what Ctrl-C in a terminal does: the whole foreground group
    else:
        demo.proc.send_signal(signum)  # what `kill <pid>` does
    assert demo.proc.wait(timeout=20) == 0

    stderr = demo.err.read_text()
    assert "Traceback" not in stderr and "Error" not in demo.out.read_text(), stderr
    assert not Path(f"/proc/{sim_child}").exists(), "the simulator child outlived the demo"
    assert not any(port_in_use("127.0.0.1", port) for port in demo.ports())
    # Started once, never "reloaded" at start; the access line's cost is a readable number.
    assert "policy reloaded" not in stderr
    (access,) = [json.loads(line) for line in stderr.splitlines() if '"routeway.access"' in line]
    cost = access["cost_usd"]
    assert cost > 0 and cost == float(f"{cost:.6g}")


def test_a_second_demo_on_taken_ports_fails_fast_in_one_line(demo: Demo) -> None:
    started = time.monotonic()
    second = routeway("demo", "--port", str(free_port()), "--sim-port", str(demo.sim_port))
    assert time.monotonic() - started < 15  # it used to serve on against the first one's simulators
    assert second.returncode == 1
    assert second.stderr.strip().splitlines() == [
        f"error: port {demo.sim_port} on 127.0.0.1 is already in use"
        " (another `routeway demo` or `routeway sim`?)"
    ]
    third = routeway("demo", "--port", str(demo.port), "--sim-port", str(free_ports(4)))
    assert third.returncode == 1 and f"port {demo.port} " in third.stderr
    assert len(third.stderr.strip().splitlines()) == 1


MISTAKES = """
backends:
  a:
    provider: openai
    base_url: http://127.0.0.1:1/v1
    api_key_env: ROUTEWAY_TEST_FIRST_HOUR_UNSET_A
    hardware: nvidia-h1000
    models:
      m: {id: x, output_price: cheap}
  b:
    provider: openaii
    base_url: http://127.0.0.1:2/v1
    api_key_env: ROUTEWAY_TEST_FIRST_HOUR_UNSET_B
    hardware: home-made-asic
    joules_per_token: 0.3
    models:
      m: {id: y}
routes:
  - name: r
    objective: fastestt
"""


def test_check_lists_every_problem_with_the_value_it_got(tmp_path: Path) -> None:
    result = routeway("check", "--config", str(write(tmp_path, "p.yaml", MISTAKES)))
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    expected = [
        ("backends.a.models.m.output_price", "got 'cheap'"),
        ("routes[0].objective", "got 'fastestt'"),
        ("backends.a.api_key_env", "ROUTEWAY_TEST_FIRST_HOUR_UNSET_A is not set"),
        ("backends.a.hardware", "unknown hardware label 'nvidia-h1000'; known: nvidia-h100, "),
        ("backends.b.provider", "unknown provider 'openaii'"),
        ("backends.b.api_key_env", "ROUTEWAY_TEST_FIRST_HOUR_UNSET_B is not set"),
    ]
    for path, reason in expected:
        assert any(f"p.yaml: {path}: " in line and reason in line for line in lines), (path, result.stderr)
    assert "home-made-asic" not in result.stderr  # it declares joules_per_token
    assert lines[-1].startswith(f"{len(expected)} problem(s)")


def test_check_counts_in_singular_and_plural(tmp_path: Path) -> None:
    text = "backends:\n  up: {provider: openai, base_url: 'http://127.0.0.1:1/v1', models: {m: {id: x}}}\n"
    result = routeway("check", "--config", str(write(tmp_path, "one.yaml", text)))
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("ok: 1 backend, 1 model, 1 route (")


def test_explain_endpoint_plans_an_embeddings_body(gateway: GatewayThread) -> None:
    r = httpx.post(gateway.root + "/v1/route/explain", json={"model": "embed", "input": "hello"}, timeout=10)
    assert r.status_code == 200, r.text
    assert [c["backend"] for c in r.json()["candidates"]] == ["fast"]
    bad = httpx.post(gateway.root + "/v1/route/explain", json={"model": "embed", "input": ""}, timeout=10)
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "input"


def test_explain_command_plans_embeddings() -> None:
    for args in (["embed-small"], ["embed-small", "--input", "some text"]):
        result = routeway("explain", *args, "--config", "policies")
        assert result.returncode == 0, result.stderr
        doc = json.loads(result.stdout)
        assert doc["route"] == "embeddings"
        assert [c["backend"] for c in doc["candidates"]] == ["h100-nim", "tpu-v5e"]  # cheapest first


def test_explain_objective_must_be_a_known_one() -> None:
    result = routeway("explain", "llama-3.3-70b", "--objective", "bogus")
    assert result.returncode == 2
    assert result.stderr.strip() == OBJECTIVES_LINE


def test_explain_url_shows_the_running_gateways_live_figures(sims: SimThread, tmp_path: Path) -> None:
    with GatewayThread(default_policy(sims), tmp_path, reload_policies=False, api_keys=CLIENT_KEY) as gw:
        client = gw.client()
        for _ in range(3):
            stream = client.chat.completions.create(
                model="chat", messages=[{"role": "user", "content": "hi"}], max_tokens=4, stream=True
            )
            assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
        wait_until_live(gw)

        result = routeway("explain", "chat", "--url", gw.base_url, "--api-key", CLIENT_KEY)
        assert result.returncode == 0, result.stderr
        live = {c["backend"]: c for c in json.loads(result.stdout)["candidates"]}
        # Measured on the simulator (a few ms), not the 400 ms the policy declares for `cheap`.
        assert live["cheap"]["live_telemetry"] is True and live["cheap"]["ttft_ms"] < 200
        offline = routeway("explain", "chat", "--config", str(gw.policy_path))
        assert offline.returncode == 0, offline.stderr
        declared = {c["backend"]: c for c in json.loads(offline.stdout)["candidates"]}
        assert declared["cheap"]["live_telemetry"] is False and declared["cheap"]["ttft_ms"] == 400

        refused = routeway("explain", "chat", "--url", gw.root, "--api-key", "wrong-key")
        assert refused.returncode == 1 and "answered 401" in refused.stderr
        assert "wrong-key" not in refused.stderr + refused.stdout


def wait_until_live(gw: GatewayThread) -> None:
    deadline = time.monotonic() + 10
    headers = {"authorization": f"Bearer {CLIENT_KEY}"}
    while True:
        r = httpx.post(gw.root + "/v1/route/explain", json=_chat_body(), headers=headers, timeout=5)
        if any(c["live_telemetry"] for c in r.json()["candidates"]):
            return
        assert time.monotonic() < deadline, r.text
        time.sleep(0.1)


def _chat_body() -> dict[str, Any]:
    return {"model": "chat", "messages": [{"role": "user", "content": "Hello"}]}


def test_explain_url_that_nothing_serves_is_one_line() -> None:
    result = routeway("explain", "chat", "--url", f"http://127.0.0.1:{free_port()}")
    assert result.returncode == 1
    assert len(result.stderr.strip().splitlines()) == 1 and "cannot reach" in result.stderr


@pytest.mark.parametrize(
    "names",
    [
        ["--profile", "groq-lpu", "tpu-v5e"],
        ["--profile", "groq-lpu,tpu-v5e"],
        ["--profile", "groq-lpu", "--profile", "tpu-v5e"],
    ],
)
def test_sim_takes_profiles_after_one_flag_in_a_list_or_repeated(names: list[str], tmp_path: Path) -> None:
    first = free_ports(2)
    err = tmp_path / "sim.err"
    with err.open("w") as err_file:
        proc = subprocess.Popen(
            [sys.executable, "-m", "gateway", "sim", *names, "--port", str(first)],
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=err_file,
            text=True,
        )
    try:
        wait_http(f"http://127.0.0.1:{first + 1}/sim/profile", proc)
        served = [
            httpx.get(f"http://127.0.0.1:{first + i}/sim/profile", timeout=5).json()["name"] for i in range(2)
        ]
        assert served == ["groq-lpu", "tpu-v5e"]
        assert not port_in_use("127.0.0.1", first + 2)  # only those two
    finally:
        proc.send_signal(signal.SIGINT)
        stdout, _ = proc.communicate(timeout=15)
    assert proc.returncode == 0
    assert "Traceback" not in err.read_text()
    assert stdout.splitlines() == [
        f"sim groq-lpu (groq-lpu) on http://127.0.0.1:{first}/v1",
        f"sim tpu-v5e (google-tpu-v5e) on http://127.0.0.1:{first + 1}/v1",
    ]


def test_sim_names_unknown_profiles_and_taken_ports() -> None:
    unknown = routeway("sim", "--profile", "groq-lpu,nope")
    assert unknown.returncode == 2 and "unknown profile(s) nope" in unknown.stderr
    first = free_ports(1)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", first))
        taken.listen()
        result = routeway("sim", "--profile", "groq-lpu", "--port", str(first))
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert str(first) in line and "address already in use" in line
