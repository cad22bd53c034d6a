"""A client that disconnects cancels its upstream request, over real sockets: a slow aiohttp upstream notes
when the gateway dropped its connection, for a whole answer and for a stream still waiting for its headers."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiohttp import web

from tests.integration.conftest import GatewayThread, backend

HOLD_S = 6.0  # how long the upstream keeps a request unless the gateway lets go


class Slow:
    """Holds each request up to HOLD_S, then records how long the gateway kept the connection open."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.held: list[float] = []
        self.arrived = threading.Event()
        self.port = 0
        self._ready = threading.Event()
        threading.Thread(target=self._run, daemon=True).start()
        self._ready.wait(5)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._hold)
        runner = web.AppRunner(app, access_log=None)
        self.loop.run_until_complete(runner.setup())
        site = web.TCPSite(runner, "127.0.0.1", 0)
        self.loop.run_until_complete(site.start())
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self._ready.set()
        self.loop.run_forever()

    async def _hold(self, request: web.Request) -> web.Response:
        await request.read()
        started = time.monotonic()
        self.arrived.set()
        while time.monotonic() - started < HOLD_S:
            transport = request.transport
            if transport is None or transport.is_closing():
                break
            await asyncio.sleep(0.02)
        self.held.append(time.monotonic() - started)
        return web.json_response({"error": {"message": "too late"}}, status=500)


@pytest.fixture(scope="module")
def slow() -> Slow:
    return Slow()


@pytest.fixture(scope="module")
def gw(slow: Slow, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayThread]:
    policy: dict[str, Any] = {
        "backends": {"slow": backend(f"http://127.0.0.1:{slow.port}/v1", {"m": {"id": "up-m"}})},
        "routes": [
            {
                "name": "default",
                "match": {"model": "*"},
                "max_attempts": 1,
                "timeouts": {"first_token_s": 20, "idle_s": 20, "total_s": 20, "connect_s": 1},
                "probe_interval_s": 0,
            }
        ],
    }
    with GatewayThread(policy, Path(tmp_path_factory.mktemp("gone")), reload_policies=False) as gateway:
        yield gateway


@pytest.mark.parametrize("stream", [False, True])
def test_a_client_that_leaves_cancels_the_upstream_request(
    slow: Slow, gw: GatewayThread, stream: bool
) -> None:
    slow.held.clear()
    slow.arrived.clear()
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "stream": stream}
    with pytest.raises(httpx.ReadTimeout):
        # The client gives up after 0.5 s and closes its connection.
        httpx.post(gw.base_url + "/chat/completions", json=body, timeout=httpx.Timeout(5, read=0.5))
    assert slow.arrived.is_set()
    deadline = time.monotonic() + HOLD_S + 2
    while not slow.held and time.monotonic() < deadline:
        time.sleep(0.02)
    assert slow.held, "the upstream never finished the request"
    # Before the fix the upstream kept the request its whole HOLD_S.
    assert slow.held[0] < 2.5
    # The gateway still serves (the cancelled request left nothing stuck).
    assert httpx.get(gw.root + "/healthz", timeout=5).status_code == 200
