"""`routeway demo`: the simulated fleet in a child process plus the gateway; either signal stops both."""

from __future__ import annotations

import contextlib
import errno
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import yaml

from gateway.policy.loader import YAML_SUFFIXES
from gateway.settings import use_aws_keys
from gateway.sim import DEMO_FLEET
from gateway.sim.profiles import DEMO_AWS_KEYS

SIM_HOST = "127.0.0.1"
LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost"})


class DemoError(Exception):
    """The demo cannot start; the message is the one line shown to the user."""


def sim_ports(first: int | None) -> list[int]:
    """The fleet's ports: the profiles' own (9101-9104), or `first` and the ones after it."""
    if first is None:
        return [p.port for p in DEMO_FLEET.values()]
    return [first + i for i in range(len(DEMO_FLEET))]


def port_in_use(host: str, port: int) -> bool:
    """True when nothing could listen on host:port now (same SO_REUSEADDR as uvicorn and aiohttp use)."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return True
            raise
    return False


def check_ports_free(pairs: list[tuple[str, int]]) -> None:
    """Fail before starting anything, rather than serve against another demo's leftover simulators."""
    for host, port in pairs:
        if port_in_use(host, port):
            raise DemoError(
                f"port {port} on {host} is already in use (another `routeway demo` or `routeway sim`?)"
            )


def rewrite_base_urls(data: Any, moved: dict[int, int]) -> Any:
    """One policy file's data with each local base_url (and metrics_url) on a moved port pointed at its new
    port."""
    backends = data.get("backends") if isinstance(data, dict) else None
    if not isinstance(backends, dict):
        return data
    for backend in backends.values():
        for key in ("base_url", "metrics_url"):
            url = backend.get(key) if isinstance(backend, dict) else None
            if not isinstance(url, str):
                continue
            parts = urlsplit(url)
            if parts.hostname in LOCAL_HOSTS and parts.port in moved:
                netloc = f"{parts.hostname}:{moved[parts.port]}"
                backend[key] = parts._replace(netloc=netloc).geturl()
    return data


def policy_for_ports(config: Path, moved: dict[int, int], into: Path) -> Path:
    """A copy of the policy (file or folder) in `into` whose simulator base URLs use the moved ports."""
    files = (
        [config]
        if config.is_file()
        else sorted(p for p in config.iterdir() if p.suffix in YAML_SUFFIXES and not p.name.startswith("."))
    )
    for file in files:
        data = rewrite_base_urls(yaml.safe_load(file.read_text()), moved)
        (into / file.name).write_text(yaml.safe_dump(data, sort_keys=False))
    return into / config.name if config.is_file() else into


def start_sims(ports: list[int]) -> subprocess.Popen[bytes]:
    # Its own session: a terminal's Ctrl-C reaches only the demo, which then stops the child itself,
    # so the child never sees a signal before its handlers are in place.
    args = [sys.executable, "-m", "gateway", "sim", "--fleet", "demo", "--port", str(ports[0])]
    return subprocess.Popen(args, start_new_session=True)


def wait_for_sims(proc: subprocess.Popen[bytes], ports: list[int], timeout_s: float = 15.0) -> None:
    deadline = time.monotonic() + timeout_s
    for port in ports:
        while True:
            if proc.poll() is not None:
                raise DemoError(f"the simulator exited with code {proc.returncode}")
            try:
                httpx.get(f"http://{SIM_HOST}:{port}/v1/models", timeout=1.0, trust_env=False)
                break
            except httpx.HTTPError:
                if time.monotonic() > deadline:
                    raise DemoError(f"the simulator did not start on port {port}") from None
                time.sleep(0.1)


def stop_sims(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM raises KeyboardInterrupt like Ctrl-C, so `finally` blocks run and the child is stopped.

    uvicorn handles both signals while it serves and re-raises the one it got once it has shut down;
    with the default SIGTERM action that re-raise would kill the process before it stopped the child.
    """
    previous = signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def vertex_service_account(ports: list[int], into: Path) -> Path | None:
    """A service account the fleet's Vertex-speaking simulator minted for this run (its key trusted by that
    simulator only, its token_uri that simulator), written for the gateway's Application Default
    Credentials; None when no simulator speaks Vertex."""
    vertex = [port for port, p in zip(ports, DEMO_FLEET.values(), strict=True) if p.vertex is not None]
    if not vertex:
        return None
    try:
        answer = httpx.post(
            f"http://{SIM_HOST}:{vertex[0]}/sim/service-account", timeout=10.0, trust_env=False
        )
        answer.raise_for_status()
    except httpx.HTTPError as exc:
        raise DemoError(f"the Vertex simulator gave no service account ({type(exc).__name__})") from None
    path = into / "vertex-service-account.json"
    path.touch(mode=0o600)
    path.write_bytes(answer.content)
    return path


def run_demo(
    config: Path, host: str, port: int, sim_port: int | None, serve: Callable[[Path, Path | None], None]
) -> None:
    """Start the fleet, then `serve(policy path, Google ADC file)` until a signal; always stop the fleet.
    Raises DemoError."""
    ports = sim_ports(sim_port)
    check_ports_free([(SIM_HOST, p) for p in ports] + [(host, port)])
    with sigterm_as_interrupt(), tempfile.TemporaryDirectory(prefix="routeway-demo-") as tmp:
        policy = config
        if sim_port is not None:
            policy = policy_for_ports(config, dict(zip(sim_ports(None), ports, strict=True)), Path(tmp))
        proc = start_sims(ports)
        try:
            wait_for_sims(proc, ports)
            use_aws_keys(*DEMO_AWS_KEYS)  # the simulated Bedrock account's keys: the gateway signs with them
            serve(policy, vertex_service_account(ports, Path(tmp)))
        except KeyboardInterrupt:
            pass  # the requested way to stop
        finally:
            stop_sims(proc)
