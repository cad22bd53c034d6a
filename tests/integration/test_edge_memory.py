"""Request bodies against a `routeway serve` process: the per-body limit and the budget, measured in RSS."""

from __future__ import annotations

import select
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
import yaml

from gateway.sim import SimThread
from tests.conftest import free_port
from tests.integration.conftest import BACKEND_KEY, default_policy, wait_serving

REPO = Path(__file__).resolve().parents[2]
MIB = 1024 * 1024
MAX_BODY = 16 * MIB
BUDGET = 40 * MIB


class Served:
    def __init__(self, proc: subprocess.Popen[bytes], port: int) -> None:
        self.proc = proc
        self.port = port
        self.root = f"http://127.0.0.1:{port}"

    def memory(self, field: str) -> int:
        """VmRSS (now) or VmHWM (peak) of the process, in bytes."""
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
        raise AssertionError(field)


@pytest.fixture(scope="module")
def served(sims: SimThread, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    policy = tmp_path_factory.mktemp("mem") / "p.yaml"
    policy.write_text(yaml.safe_dump(default_policy(sims)))
    port = free_port()
    env = {
        "PATH": "/usr/bin:/bin",
        "ROUTEWAY_TEST_BACKEND_KEY": BACKEND_KEY,
        "ROUTEWAY_MAX_BODY_BYTES": str(MAX_BODY),
        "ROUTEWAY_MAX_BUFFERED_BYTES": str(BUDGET),
        "ROUTEWAY_RELOAD_POLICIES": "false",
    }
    cmd = [sys.executable, "-m", "gateway", "serve", "--config", str(policy), "--port", str(port)]
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_serving(proc, port)
        yield Served(proc, port)
    finally:
        proc.terminate()
        proc.wait(timeout=15)


def explain_body(size: int) -> bytes:
    """A chat request for /v1/route/explain whose JSON is `size` bytes long."""
    shell = orjson.dumps({"model": "chat", "messages": [{"role": "user", "content": ""}]})
    return shell.replace(b'"content":""', b'"content":"' + b"a" * (size - len(shell)) + b'"')


def whole_answer(sock: socket.socket) -> bytes:
    """Head and body: they may arrive in two segments (uvicorn writes them apart)."""
    answer = sock.recv(65536)
    head, _, body = answer.partition(b"\r\n\r\n")
    length = next(
        (
            int(line.split(b":", 1)[1])
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length:")
        ),
        0,
    )
    while len(body) < length and (more := sock.recv(65536)):
        answer, body = answer + more, body + more
    return answer


def test_a_300_mib_body_is_refused_without_buffering_it(served: Served) -> None:
    before = served.memory("VmRSS")
    with socket.create_connection(("127.0.0.1", served.port), timeout=5) as sock:
        head = b"POST /v1/route/explain HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
        sock.sendall(head + b"content-length: %d\r\n\r\n" % (300 * MIB))
        answer = whole_answer(sock)  # refused from the declared length: nothing of the body is sent
    assert answer.startswith(b"HTTP/1.1 413 ")
    assert b'"code":"request_too_large"' in answer
    # Without a declared length (chunked), the read stops at the limit; what follows is discarded.
    sent = 0
    with socket.create_connection(("127.0.0.1", served.port), timeout=5) as sock:
        sock.sendall(b"POST /v1/route/explain HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n")
        chunk = b"%x\r\n%s\r\n" % (MIB, b"a" * MIB)
        while sent < 300 * MIB and not select.select([sock], [], [], 0)[0]:
            sock.sendall(chunk)
            sent += MIB
        refused = sock.recv(65536)
    assert refused.startswith(b"HTTP/1.1 413 "), refused[:100]
    assert sent < 300 * MIB
    grown = served.memory("VmRSS") - before
    assert grown < 40 * MIB, f"RSS grew by {grown / MIB:.0f} MiB"


def test_concurrent_near_limit_bodies_stay_under_the_budget(served: Served) -> None:
    body = explain_body(MAX_BODY - 1024)
    head = b"POST /v1/route/explain HTTP/1.1\r\nhost: x\r\ncontent-length: %d\r\n\r\n" % len(body)
    before = served.memory("VmRSS")
    answers: list[bytes] = []

    def post() -> None:
        with socket.create_connection(("127.0.0.1", served.port), timeout=30) as sock:
            sock.sendall(head + body)
            answers.append(sock.recv(65536))

    threads = [threading.Thread(target=post) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    peak = served.memory("VmHWM") - before
    statuses = sorted(int(a.split(b" ", 2)[1]) for a in answers)
    print(f"statuses {statuses}; peak RSS +{peak / MIB:.0f} MiB over {before / MIB:.0f} MiB")
    assert len(statuses) == 8 and set(statuses) <= {200, 503} and 200 in statuses, statuses
    for answer in answers:
        if b" 503 " in answer.split(b"\r\n", 1)[0]:
            assert b"\r\nretry-after: 1\r\n" in answer and b'"code":"overloaded"' in answer
    # At most BUDGET of bodies buffered, and one parsed at a time (about twice its size more): 8 bodies
    # buffered at once, as without the budget, would be 128 MiB before any parsing.
    assert peak < BUDGET + 2 * MAX_BODY + 24 * MIB, f"peak RSS grew by {peak / MIB:.0f} MiB"
