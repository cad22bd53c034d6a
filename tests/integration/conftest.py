"""Integration harness: simulated upstreams and the gateway under uvicorn, on real loopback sockets."""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
import uvicorn
import yaml

from gateway.api.server import uvicorn_options
from gateway.main import create_app
from gateway.settings import Settings
from gateway.sim import Profile, SimThread

BACKEND_KEY_ENV = "ROUTEWAY_TEST_BACKEND_KEY"
BACKEND_KEY = "sk-backend-3f9c2e-never-leak"
CLIENT_KEY = "rw-client-77aa-never-forward"

# Fast profiles: tests exercise behaviour, not wall-clock speed.
SIM_PROFILES = [
    Profile(
        name="fast",
        hardware="nvidia-h100",
        models=["up-fast", "up-embed"],
        ttft_ms=2,
        tokens_per_s=20000,
        api_key=BACKEND_KEY,
    ),
    Profile(
        name="cheap",
        hardware="aws-inferentia2",
        models=["up-cheap"],
        ttft_ms=2,
        tokens_per_s=20000,
        context_window=4096,
    ),
    Profile(
        name="quirky",
        hardware="groq-lpu",
        models=["up-quirky"],
        ttft_ms=2,
        tokens_per_s=20000,
        omit_optional=True,
    ),
]


@pytest.fixture(scope="session")
def sims() -> Iterator[SimThread]:
    with SimThread(SIM_PROFILES) as fleet:
        yield fleet


@pytest.fixture(autouse=True)
def _reset_sims(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    if "sims" in request.fixturenames:
        fleet: SimThread = request.getfixturevalue("sims")
        for p in SIM_PROFILES:
            fleet.reset(p.name)


def backend(url: str, models: dict[str, dict[str, Any]], **extra: Any) -> dict[str, Any]:
    return {"provider": "openai", "base_url": url, "models": models, **extra}


def default_policy(sims: SimThread) -> dict[str, Any]:
    """`chat` is served by a pricier fast backend and a cheap one; other models by one backend each."""
    return {
        "backends": {
            "fast": backend(
                sims.urls["fast"],
                {
                    "chat": {
                        "id": "up-fast",
                        "type": "chat",
                        "input_price": 2.0,
                        "output_price": 4.0,
                        "ttft_ms": 50,
                    },
                    "fast-only": {"id": "up-fast", "input_price": 2.0, "output_price": 4.0},
                    "embed": {"id": "up-embed", "type": "embedding", "input_price": 0.02},
                },
                api_key_env=BACKEND_KEY_ENV,
                hardware="nvidia-h100",
            ),
            "cheap": backend(
                sims.urls["cheap"],
                {
                    "chat": {
                        "id": "up-cheap",
                        "input_price": 0.1,
                        "output_price": 0.2,
                        "ttft_ms": 400,
                        "context_window": 4096,
                    }
                },
                hardware="aws-inferentia2",
            ),
            "quirky": backend(sims.urls["quirky"], {"quirky": {"id": "up-quirky"}}, hardware="groq-lpu"),
        },
        "routes": [
            {
                "name": "default",
                "match": {"model": "*"},
                "objective": "cheapest",
                "timeouts": {"first_token_s": 2, "idle_s": 2, "total_s": 10, "connect_s": 1},
                "probe_interval_s": 0,  # deterministic routing; tests of probing turn it on themselves
            }
        ],
    }


class GatewayThread:
    """The real app under uvicorn (uvloop + httptools) in a background thread, on an ephemeral port."""

    def __init__(self, policy: dict[str, Any], workdir: Path, **settings: Any) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        self.policy_path = workdir / "policy.yaml"
        self.write_policy(policy)
        self.settings = Settings(config=self.policy_path, port=0, **settings)
        # The same uvicorn options as `routeway serve`, so the suite runs through the HTTP edge's limits.
        config = uvicorn.Config(create_app(self.settings), lifespan="on", **uvicorn_options(self.settings))
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.port = 0

    def write_policy(self, policy: dict[str, Any]) -> None:
        self.policy_path.write_text(yaml.safe_dump(policy, sort_keys=False))

    @property
    def root(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def base_url(self) -> str:
        return self.root + "/v1"

    def client(self, **kw: Any) -> openai.OpenAI:
        kw.setdefault("api_key", CLIENT_KEY)
        kw.setdefault("max_retries", 0)
        kw.setdefault("timeout", 20)
        return openai.OpenAI(base_url=self.base_url, **kw)

    def __enter__(self) -> GatewayThread:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("gateway did not start")
            time.sleep(0.01)
        self.port = self.server.servers[0].sockets[0].getsockname()[1]
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


@pytest.fixture(scope="session", autouse=True)
def _backend_key() -> Iterator[None]:
    mp = pytest.MonkeyPatch()
    mp.setenv(BACKEND_KEY_ENV, BACKEND_KEY)
    yield
    mp.undo()


@pytest.fixture(scope="module")
def gateway(sims: SimThread, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayThread]:
    with GatewayThread(default_policy(sims), tmp_path_factory.mktemp("gw"), reload_policies=False) as gw:
        yield gw


@pytest.fixture
def fresh_gateway(sims: SimThread, tmp_path: Path) -> Iterator[GatewayThread]:
    """A gateway of its own for tests that inject faults: the breakers and cooldowns they cause stay there."""
    with GatewayThread(default_policy(sims), tmp_path, reload_policies=False) as gw:
        yield gw


@pytest.fixture
def client(gateway: GatewayThread) -> openai.OpenAI:
    return gateway.client()


def wait_serving(proc: subprocess.Popen[Any], port: int, timeout_s: float = 20) -> None:
    """Returns once a `routeway serve` subprocess answers GET /healthz; fails if it exits or is too slow."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=0.5)
            return
        except httpx.HTTPError:
            assert proc.poll() is None and time.monotonic() < deadline, "serve did not start"
            time.sleep(0.1)
