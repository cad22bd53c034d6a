"""The HTTP edge over real sockets: head limits (431), slow heads, idle keep-alive, overload 503s."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from gateway.sim import SimThread
from tests.integration.conftest import GatewayThread, default_policy

Start = Callable[..., GatewayThread]


@pytest.fixture
def start(sims: SimThread, tmp_path: Path) -> Iterator[Callable[..., GatewayThread]]:
    """Starts a gateway with the given settings (small limits, so each test is fast)."""
    with contextlib.ExitStack() as stack:

        def started(**settings: Any) -> GatewayThread:
            gw = GatewayThread(default_policy(sims), tmp_path, reload_policies=False, **settings)
            return stack.enter_context(gw)

        yield started


def connect(port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=5)


def read_response(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """One HTTP/1.1 response with a content-length, read off a raw socket."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"connection closed before a response: {data!r}"
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    size = int(headers["content-length"])
    while len(rest) < size:
        chunk = sock.recv(65536)
        assert chunk
        rest += chunk
    return int(lines[0].split()[1]), headers, rest


def closed_by_peer(sock: socket.socket, within_s: float) -> bool:
    sock.settimeout(within_s)
    try:
        return sock.recv(1024) == b""
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


def assert_openai_error(body: bytes, code: str) -> None:
    error = orjson.loads(body)["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["code"] == code


def test_a_60_mib_header_gets_431_at_once_and_the_loop_stays_responsive(start: Start) -> None:
    edge = start()
    results: list[tuple[int, bytes, float]] = []

    def attack() -> None:
        for _ in range(3):
            with connect(edge.port) as sock:
                started = time.monotonic()
                sock.sendall(b"GET /healthz HTTP/1.1\r\nhost: x\r\nx-big: ")
                sent = 0
                try:
                    while sent < 60 * 1024 * 1024:
                        sock.sendall(b"a" * 65536)
                        sent += 65536
                except OSError:
                    pass  # refused mid-send: the server stopped reading
                try:
                    status, _, body = read_response(sock)
                except (OSError, AssertionError):
                    status, body = 0, b""
                results.append((status, body, time.monotonic() - started))

    attacker = threading.Thread(target=attack)
    attacker.start()
    worst = 0.0
    with httpx.Client(base_url=edge.root, timeout=10) as client:
        while attacker.is_alive():
            started = time.monotonic()
            assert client.get("/healthz").status_code == 200
            worst = max(worst, time.monotonic() - started)
    attacker.join()
    assert worst < 0.5, f"/healthz took {worst:.2f}s while a huge header was sent"
    assert len(results) == 3
    # The server closes after its answer; the client may see the reset before reading it, but every answer
    # read is a JSON 431, and each attempt ended long before 60 MiB would take to buffer.
    assert any(status == 431 for status, _, _ in results), results
    print(results and [(s, round(t, 3)) for s, _, t in results])
    for status, body, took in results:
        assert status in (431, 0) and took < 2.0
        if status == 431:
            assert_openai_error(body, "request_headers_too_large")


def test_a_head_over_the_limit_in_one_read_and_too_many_headers_get_431(start: Start) -> None:
    edge = start()
    with httpx.Client(base_url=edge.root, timeout=5) as client:
        many = client.get("/healthz", headers={f"x-h{i}": "v" for i in range(120)})
        assert many.status_code == 431
        assert_openai_error(many.content, "request_headers_too_large")
        assert "100" in many.json()["error"]["message"]
        large = client.get("/healthz", headers={"x-long": "v" * 70_000})
        assert large.status_code == 431
        assert_openai_error(large.content, "request_headers_too_large")
        # Below both limits, and a body larger than the head limit: served as usual.
        fine = client.get("/healthz", headers={f"x-h{i}": "v" * 500 for i in range(90)})
        assert fine.status_code == 200
        content = "word " * 40_000  # 200 kB: the body does not count as head
        chat = client.post(
            "/v1/chat/completions",
            json={"model": "fast-only", "messages": [{"role": "user", "content": content}], "max_tokens": 2},
        )
        assert chat.status_code == 200, chat.text


def test_a_garbled_request_gets_an_openai_shaped_400(start: Start) -> None:
    edge = start()
    with connect(edge.port) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nbad header line\r\n\r\n")
        status, headers, body = read_response(sock)
    assert status == 400 and headers["content-type"] == "application/json"
    assert orjson.loads(body)["error"]["type"] == "invalid_request_error"


def test_500_half_sent_heads_are_closed_after_the_header_timeout(start: Start) -> None:
    edge = start(header_timeout_s=1.0)
    held = [connect(edge.port) for _ in range(500)]
    try:
        for sock in held:
            sock.sendall(b"GET /heal")
        started = time.monotonic()
        assert httpx.get(edge.root + "/healthz", timeout=2).status_code == 200
        assert time.monotonic() - started < 1.0  # served while the 500 are held
        deadline = time.monotonic() + 5
        for sock in held:
            assert closed_by_peer(sock, max(0.01, deadline - time.monotonic())), "a slow head was kept"
        assert time.monotonic() - started < 5
    finally:
        for sock in held:
            sock.close()


def test_a_head_dripped_byte_by_byte_is_closed_even_after_a_first_request(start: Start) -> None:
    edge = start(header_timeout_s=1.0)
    with connect(edge.port) as fresh, connect(edge.port) as reused:
        reused.sendall(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n")
        assert read_response(reused)[0] == 200
        started = time.monotonic()
        closed = {"fresh": False, "reused": False}
        for byte in b"GET /healthz HTTP/1.1\r\nhost: x\r\nx-slow: yes":
            for name, sock in (("fresh", fresh), ("reused", reused)):
                if not closed[name]:
                    try:
                        sock.sendall(bytes([byte]))
                    except OSError:
                        closed[name] = True
            if all(closed.values()) or time.monotonic() - started > 4:
                break
            time.sleep(0.1)
        for name, sock in (("fresh", fresh), ("reused", reused)):
            assert closed[name] or closed_by_peer(sock, 4 - (time.monotonic() - started)), name
        assert time.monotonic() - started < 4


def test_an_idle_keep_alive_connection_is_closed_after_the_timeout(start: Start) -> None:
    edge = start(keep_alive_timeout_s=1)
    with connect(edge.port) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n")
        assert read_response(sock)[0] == 200
        time.sleep(0.3)
        sock.sendall(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n")  # still open within the timeout
        assert read_response(sock)[0] == 200
        started = time.monotonic()
        assert closed_by_peer(sock, 4)
        assert 0.5 < time.monotonic() - started < 3


def _hold_requests(port: int, n: int) -> list[socket.socket]:
    """Requests in flight: heads sent, bodies never, so each handler waits for its body."""
    held = []
    for _ in range(n):
        sock = connect(port)
        sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-length: 100\r\n\r\n")
        held.append(sock)
    return held


def test_beyond_the_in_flight_cap_a_request_gets_a_json_503_with_retry_after(start: Start) -> None:
    edge = start(max_inflight=2)
    held = _hold_requests(edge.port, 2)
    try:
        time.sleep(0.2)
        refused = httpx.get(edge.base_url + "/models", timeout=5)
        assert refused.status_code == 503
        assert refused.headers["retry-after"] == "1"
        assert_openai_error(refused.content, "overloaded")
        # In the client's own shape: Anthropic's SDKs (and Claude Code) back off on an overloaded_error.
        anthropic = httpx.post(edge.base_url + "/messages", json={}, timeout=5)
        assert anthropic.status_code == 503 and anthropic.headers["retry-after"] == "1"
        assert anthropic.json()["type"] == "error" and anthropic.json()["error"]["type"] == "overloaded_error"
        assert httpx.get(edge.root + "/healthz", timeout=5).status_code == 200  # liveness still answers
    finally:
        for sock in held:
            sock.close()
    deadline = time.monotonic() + 5
    while httpx.get(edge.base_url + "/models", timeout=5).status_code != 200:
        assert time.monotonic() < deadline, "the cap was not released"
        time.sleep(0.05)


def test_beyond_the_connection_cap_a_request_gets_a_json_503(start: Start) -> None:
    edge = start(max_connections=3)
    idle = [connect(edge.port) for _ in range(3)]
    try:
        time.sleep(0.2)
        refused = httpx.get(edge.root + "/readyz", timeout=5)
        assert refused.status_code == 503 and refused.headers["retry-after"] == "1"
        assert_openai_error(refused.content, "overloaded")
    finally:
        for sock in idle:
            sock.close()
    time.sleep(0.2)
    assert httpx.get(edge.root + "/readyz", timeout=5).status_code == 200
