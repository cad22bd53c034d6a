"""The servers of a run: the upstream, Routeway, the pass-throughs and LiteLLM, as start specifications."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

from bench import payloads, procs
from bench.options import ROOT
from bench.venvs import Venv

ROUTEWAY = str(ROOT / ".venv" / "bin" / "routeway")
PROJECT_PYTHON = str(ROOT / ".venv" / "bin" / "python")
REFERENCE_NAMES = ("fastapi-aiohttp", "asgi-aiohttp", "fastapi-httpx", "fastapi-httpx-aiohttp")


@dataclass(frozen=True)
class Spec:
    """How to start one server under test on `port`; `ready_s` bounds its start-up."""

    name: str
    label: str
    cmd: list[str]
    env: dict[str, str]
    port: int
    cores: frozenset[int] = procs.SERVER_CORE
    ready_s: float = 30.0
    ready_get: str | None = None  # ready when a GET of this path answers 200 (default: a chat completion)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{payloads.CHAT_PATH}"

    def start(self, log_dir: Path) -> procs.Server:
        server = procs.start(self.name, self.cmd, self.port, self.cores, log_dir, self.env)
        try:
            if self.ready_get is not None:
                procs.wait_ready(server, None, self.ready_get, {}, self.ready_s)
            else:
                procs.wait_ready(
                    server, payloads.CHAT_BODY, payloads.CHAT_PATH, payloads.HEADERS, self.ready_s
                )
        except BaseException:
            procs.stop(server)
            raise
        return server


_DROPPED = ("ROUTEWAY_", "OTEL_", "FASTAPI_", "LITELLM_", "PYTHON")
_PROXIES = {"http_proxy", "https_proxy", "all_proxy"}


def clean_env(**extra: str) -> dict[str, str]:
    """The parent's environment minus settings that would skew a run, and minus proxies: loopback only."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(_DROPPED) and k.lower() not in _PROXIES and k.lower() != "no_proxy"
    }
    env.update({"OTEL_SDK_DISABLED": "true", "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(ROOT)})
    env.update({"NO_PROXY": "127.0.0.1,localhost", **extra})
    return env


def upstream(port: int, slow_events: int, slow_interval: float) -> Spec:
    cmd = [sys.executable, "-m", "bench.upstream", "--port", str(port)]
    cmd += ["--slow-events", str(slow_events), "--slow-interval", str(slow_interval)]
    return Spec(
        "upstream", "direct upstream (raw asyncio + httptools)", cmd, clean_env(), port, procs.LOAD_CORE
    )


def otlp_sink(port: int) -> Spec:
    """The local OTLP/HTTP trace receiver of the tracing run, on the load core like the upstream."""
    cmd = [sys.executable, "-m", "bench.otlp_sink", "--port", str(port)]
    label = "local OTLP/HTTP trace sink (raw asyncio + httptools)"
    return Spec("otlp-sink", label, cmd, clean_env(), port, procs.LOAD_CORE, ready_get="/stats")


def sim_upstream(port: int) -> Spec:
    cmd = [sys.executable, "-m", "bench.sim_upstream", "--port", str(port)]
    return Spec("sim", "gateway/sim at 0 ms (aiohttp.web)", cmd, clean_env(), port)


def write_policy(path: Path, upstream_port: int) -> Path:
    entry = "{id: %s, input_price: 0.5, output_price: 1.5, context_window: 131072}"
    path.write_text(
        "# Written by `python -m bench`: one backend, the bench upstream.\n"
        "backends:\n"
        "  bench-upstream:\n"
        "    provider: openai\n"
        f"    base_url: http://127.0.0.1:{upstream_port}/v1\n"
        "    hardware: nvidia-h100\n"
        "    models:\n"
        f"      {payloads.MODEL}: {entry % payloads.MODEL}\n"
        f"      {payloads.SLOW_MODEL}: {entry % payloads.SLOW_MODEL}\n"
        "routes:\n"
        "  - name: default\n"
        '    match: {model: "*"}\n'
        "    objective: balanced\n"
    )
    return path


def routeway(
    port: int,
    policy: Path,
    *,
    access_log: bool = True,
    workers: int = 1,
    cores: frozenset[int] = procs.SERVER_CORE,
    name: str | None = None,
    gc_log: Path | None = None,
    otlp_endpoint: str | None = None,
    settings: dict[str, str] | None = None,
) -> Spec:
    """`routeway serve` as in production (access log on, metrics on by default, no OTLP endpoint: no tracing).

    `gc_log` runs it through bench/routeway_gc.py (collector pauses); `otlp_endpoint` turns tracing on
    (OTLP/HTTP protobuf, every other OTEL_* setting at its default); `settings` adds ROUTEWAY_* variables.
    """
    launcher = [ROUTEWAY]
    if gc_log:
        launcher = [PROJECT_PYTHON, "-m", "bench.routeway_gc", "--gc-log", str(gc_log)]
    cmd = [*launcher, "serve", "--config", str(policy), "--host", "127.0.0.1", "--port", str(port)]
    if workers > 1:
        cmd += ["--workers", str(workers)]
    env = clean_env(
        ROUTEWAY_ACCESS_LOG="true" if access_log else "false", ROUTEWAY_LOG_LEVEL="INFO", **(settings or {})
    )
    if otlp_endpoint:
        del env["OTEL_SDK_DISABLED"]  # the SDK on, as in production with an endpoint set
        env.update(OTEL_EXPORTER_OTLP_ENDPOINT=otlp_endpoint, OTEL_EXPORTER_OTLP_PROTOCOL="http/protobuf")
    label = (
        f"Routeway, {workers} worker{'s' if workers > 1 else ''}, access log {'on' if access_log else 'off'}"
    )
    if otlp_endpoint:
        label += ", tracing on (OTLP/HTTP to a local sink)"
    label += "".join(f", {k}={v}" for k, v in (settings or {}).items())
    default = (
        "routeway"
        + ("" if access_log else "-nolog")
        + ("-tracing" if otlp_endpoint else "")
        + (f"-w{workers}" if workers > 1 else "")
    )
    return Spec(name or default, label, cmd, env, port, cores)


def references(port_of: dict[str, int], upstream_root: str, bench: Venv) -> tuple[list[Spec], list[str]]:
    """The pass-throughs; they run in bench/.venv (the project's exact web stack) when it exists."""
    python = bench.python if bench.ok else sys.executable
    env = clean_env(PYTHONPATH=str(ROOT))
    skipped: list[str] = []

    def spec(name: str, label: str, module: str, *extra: str) -> Spec:
        cmd = [python, "-m", module, "--port", str(port_of[name]), "--upstream", upstream_root, *extra]
        return Spec(name, label, cmd, env, port_of[name])

    specs = [
        spec("fastapi-aiohttp", "FastAPI + aiohttp pass-through (reference)", "bench.ref_fastapi_aiohttp"),
        spec("asgi-aiohttp", "bare ASGI + aiohttp pass-through", "bench.ref_asgi_aiohttp"),
        spec("fastapi-httpx", "FastAPI + httpx (default transport)", "bench.ref_fastapi_httpx"),
    ]
    if "httpx-aiohttp" in bench.available:
        specs.append(
            spec(
                "fastapi-httpx-aiohttp",
                "FastAPI + httpx (httpx-aiohttp transport)",
                "bench.ref_fastapi_httpx",
                "--transport",
                "aiohttp",
            )
        )
    else:
        skipped.append("fastapi-httpx-aiohttp: httpx-aiohttp not installed in bench/.venv")
    return specs, skipped


def litellm(port: int, upstream_root: str, venv: Venv, config_dir: Path) -> Spec:
    config = config_dir / "litellm.yaml"
    config.write_text(
        "# Written by `python -m bench`: the bench upstream as an OpenAI-compatible backend.\n"
        "model_list:\n"
        f"  - model_name: {payloads.MODEL}\n"
        "    litellm_params:\n"
        f"      model: openai/{payloads.MODEL}\n"
        f"      api_base: {upstream_root}/v1\n"
        "      api_key: sk-upstream-unused\n"
        "general_settings:\n"
        f"  master_key: {payloads.BENCH_KEY}\n"
    )
    cmd = [venv.bin("litellm"), "--config", str(config), "--host", "127.0.0.1", "--port", str(port)]
    cmd += ["--num_workers", "1"]
    # Local cost map: no download at start-up (the run only talks to loopback); errors-only logging.
    env = clean_env(LITELLM_LOCAL_MODEL_COST_MAP="True", LITELLM_LOG="ERROR", DISABLE_ADMIN_UI="True")
    return Spec("litellm", "LiteLLM proxy, 1 worker", cmd, env, port, ready_s=180.0)
