"""Child processes of a run: start them pinned to cores, wait until they answer, read RSS, stop them."""

from __future__ import annotations

import contextlib
import http.client
import os
import resource
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

CORES = sorted(os.sched_getaffinity(0))
# The server under test gets its own core; load generators and the upstream share the other one.
SERVER_CORE: frozenset[int] = frozenset({CORES[-1]})
LOAD_CORE: frozenset[int] = frozenset({CORES[0]})
ALL_CORES: frozenset[int] = frozenset(CORES)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def wait_port(port: int, timeout_s: float = 20) -> None:
    """Returns once something listens on the loopback port; exits the bench when nothing does in time."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"nothing listening on 127.0.0.1:{port} after {timeout_s:g}s")


def _child_setup(cores: frozenset[int]) -> Callable[[], None]:
    def setup() -> None:
        os.sched_setaffinity(0, cores)
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        want = hard if hard != resource.RLIM_INFINITY else 65536
        resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(want, 65536)), hard))

    return setup


def raise_fd_limit() -> None:
    _child_setup(frozenset(os.sched_getaffinity(0)))()


def pin(pid: int, cores: frozenset[int]) -> None:
    """Moves every thread of `pid` (affinity is per thread) onto `cores`."""
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.sched_setaffinity(int(task.name), cores)


def run_pinned(
    cmd: Sequence[str], cores: frozenset[int], timeout_s: float, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Runs a bounded command (a load generator) on `cores` and returns its output."""
    return subprocess.run(
        list(cmd),
        preexec_fn=_child_setup(cores),
        capture_output=True,
        text=True,
        timeout=timeout_s,
        env=env,
        check=False,
    )


@dataclass
class Server:
    """A started server process; `pid` is the process whose RSS we read (uvicorn's only worker)."""

    name: str
    proc: subprocess.Popen[bytes]
    port: int
    log_path: Path

    @property
    def pid(self) -> int:
        return self.proc.pid

    def rss_kb(self) -> int:
        return status_kb(self.pid, "VmRSS")

    def alive(self) -> bool:
        return self.proc.poll() is None

    def log_tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def status_kb(pid: int, field: str) -> int:
    """A `kB` field of /proc/PID/status (VmRSS, VmHWM); 0 once the process is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return 0


_TICK_S = 1.0 / os.sysconf("SC_CLK_TCK")


def _children(pid: int) -> list[int]:
    out: list[int] = []
    with contextlib.suppress(OSError):
        for task in Path(f"/proc/{pid}/task").iterdir():
            with contextlib.suppress(OSError, ValueError):
                out += [int(c) for c in (task / "children").read_text().split()]
    return out


def cpu_s(pid: int) -> float:
    """User + system CPU seconds of `pid` and its live descendants (uvicorn workers), all threads."""
    total = 0.0
    for p in [pid, *_children(pid)]:
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        total += (int(fields[11]) + int(fields[12])) * _TICK_S  # utime, stime
        if p != pid:
            total += sum(cpu_s(c) for c in _children(p))
    return total


def start(
    name: str,
    cmd: Sequence[str],
    port: int,
    cores: frozenset[int],
    log_dir: Path,
    env: dict[str, str],
) -> Server:
    """Starts `cmd` with exactly `env`, its output in `log_dir/name.log`."""
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"{name}.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            list(cmd), stdout=log, stderr=subprocess.STDOUT, env=env, preexec_fn=_child_setup(cores)
        )
    return Server(name, proc, port, log_path)


def wait_ready(
    server: Server, probe: bytes | None, path: str, headers: dict[str, str], timeout_s: float
) -> None:
    """Polls with a real request (a POST of `probe`, or a GET when it is None) until the server answers 200;
    raises with its log tail otherwise."""
    deadline = time.monotonic() + timeout_s
    last = "no answer"
    while time.monotonic() < deadline:
        if not server.alive():
            raise RuntimeError(f"{server.name} exited with {server.proc.returncode}:\n{server.log_tail()}")
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
        try:
            conn.request("GET" if probe is None else "POST", path, body=probe, headers=headers)
            resp = conn.getresponse()
            body = resp.read()
            if resp.status == 200:
                return
            last = f"HTTP {resp.status}: {body[:300]!r}"
        except OSError as exc:
            last = f"{type(exc).__name__}: {exc}"
        finally:
            conn.close()
        time.sleep(0.2)
    raise RuntimeError(f"{server.name} not ready after {timeout_s:g} s ({last}):\n{server.log_tail()}")


def stop(server: Server, timeout_s: float = 10.0) -> None:
    if server.proc.poll() is not None:
        return
    server.proc.send_signal(signal.SIGTERM)
    try:
        server.proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        server.proc.kill()
        server.proc.wait(timeout=timeout_s)


@contextlib.contextmanager
def running(server: Server) -> Iterator[Server]:
    try:
        yield server
    finally:
        stop(server)
