"""The disconnect watch: a client that leaves while the upstream call runs cancels the request's task, through
the edge protocol's hook or, under another server, a task waiting on receive()."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from gateway.api.disconnect import DISCONNECT_HOOK, DisconnectWatch


async def _body() -> bytes:
    return b"{}"


def serve(scope: dict[str, Any], leave: bool) -> tuple[str, DisconnectWatch]:
    """Runs one request that waits on a slow upstream; the client leaves after 20 ms if `leave`."""
    left = asyncio.Event()

    async def receive() -> dict[str, Any]:
        await left.wait()
        return {"type": "http.disconnect"}

    async def request(gone: DisconnectWatch) -> str:
        try:
            await gone.read()
            await asyncio.sleep(0.2)  # the upstream call
            return "answered"
        except asyncio.CancelledError:
            if gone.absorbed():
                return "cancelled by the watch"
            raise
        finally:
            gone.stop()

    async def main() -> tuple[str, DisconnectWatch]:
        gone = DisconnectWatch(scope, receive, _body)  # type: ignore[arg-type]
        task = asyncio.ensure_future(request(gone))
        await asyncio.sleep(0.02)
        if leave:
            hook = scope.get(DISCONNECT_HOOK)
            if hook is not None:
                hook()  # what api/server.EdgeProtocol does on connection_lost
            left.set()
        return await task, gone

    return asyncio.run(main())


@pytest.mark.parametrize("hooked", [True, False])
def test_a_client_that_leaves_cancels_the_request(hooked: bool) -> None:
    scope: dict[str, Any] = {DISCONNECT_HOOK: None} if hooked else {}
    outcome, gone = serve(scope, leave=True)
    assert outcome == "cancelled by the watch" and gone.gone
    assert scope.get(DISCONNECT_HOOK) is None  # stopped: a later lost connection calls nothing


@pytest.mark.parametrize("hooked", [True, False])
def test_a_client_that_stays_gets_its_answer(hooked: bool) -> None:
    scope: dict[str, Any] = {DISCONNECT_HOOK: None} if hooked else {}
    outcome, gone = serve(scope, leave=False)
    assert outcome == "answered" and not gone.gone and not gone.absorbed()
