"""Suite-wide fixtures: a real redis-server started by the suite, free ports."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.settings import use_aws_keys
from gateway.sim.profiles import DEMO_AWS_KEYS

# The demo policy's Bedrock backend signs with the simulator's dummy keys, as `routeway demo` arranges; in
# the suite the AWS chain never reads ~/.aws nor asks a metadata service (gateway subprocesses inherit it).
use_aws_keys(*DEMO_AWS_KEYS)
os.environ["AWS_CONFIG_FILE"] = os.environ["AWS_SHARED_CREDENTIALS_FILE"] = "/nonexistent/routeway-tests"
# No test reaches a metadata server: google-auth's search for Application Default Credentials (a Vertex
# backend without GOOGLE_APPLICATION_CREDENTIALS) stops before probing GCE's, here and in child processes.
os.environ["NO_GCE_CHECK"] = "True"

# The Redis Cluster fixtures (a module of their own: they import free_port from here).
pytest_plugins = ("tests.redis_cluster",)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real redis-server on a free loopback port, for the tests that share state across replicas."""
    exe = shutil.which("redis-server")
    if exe is None:
        pytest.fail(
            "redis-server is not installed: run the README's test command (make test), which installs it"
        )
    port = free_port()
    workdir: Path = tmp_path_factory.mktemp("redis")
    proc = subprocess.Popen(
        [
            exe,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(workdir),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                break
        except OSError:
            if time.monotonic() > deadline or proc.poll() is not None:
                proc.kill()
                pytest.fail("redis-server did not start")
            time.sleep(0.05)
    yield f"redis://127.0.0.1:{port}/0"
    proc.terminate()
    proc.wait(timeout=10)
