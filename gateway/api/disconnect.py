"""Cancels a request's upstream work when its client disconnects before the answer starts."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from starlette.types import Receive


class DisconnectWatch:
    """Once the body has been read, one small task waits on `receive()`: the server answers it only when the
    client goes away, and then the request's task is cancelled (the attempt in flight drops its upstream
    connection). Stopped before the answer is sent; a stream's own response watches from there on."""

    __slots__ = ("_receive", "_task", "_watcher", "gone")

    def __init__(self, receive: Receive) -> None:
        self._receive = receive
        self._task: asyncio.Task[object] | None = None
        self._watcher: asyncio.Task[None] | None = None
        self.gone = False

    def after(
        self, read_body: Callable[[], Awaitable[bytes | bytearray]]
    ) -> Callable[[], Awaitable[bytes | bytearray]]:
        """`read_body`, arming the watch once the body is whole (reading it is `receive`'s job until then)."""

        async def read() -> bytes | bytearray:
            raw = await read_body()
            self._task = asyncio.current_task()
            self._watcher = asyncio.get_running_loop().create_task(self._watch())
            return raw

        return read

    async def _watch(self) -> None:
        while (await self._receive())["type"] != "http.disconnect":
            pass
        self.gone = True
        if self._task is not None:
            self._task.cancel()

    def stop(self) -> None:
        if self._watcher is not None and not self._watcher.done():
            self._watcher.cancel()
        self._watcher = None

    def absorbed(self) -> bool:
        """True when a cancellation came from this watch (the client left): the request ends quietly."""
        if not self.gone or self._task is None:
            return False
        self._task.uncancel()
        return True
