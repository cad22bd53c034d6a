"""Run several simulated providers: on the current event loop, forever for the CLI, or in a thread."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import signal
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx
from aiohttp import web

from gateway.sim import vertex
from gateway.sim.profiles import Profile
from gateway.sim.server import create_app

log = logging.getLogger(__name__)

# Hung and stalled handlers never finish on their own; do not let them hold shutdown for a minute.
SHUTDOWN_TIMEOUT_S = 1.0


@dataclass
class RunningSim:
    """One started server; `port` is the bound port even when 0 was asked for."""

    profile: Profile
    runner: web.AppRunner
    host: str
    port: int

    @property
    def root(self) -> str:
        host = "127.0.0.1" if self.host in ("0.0.0.0", "") else self.host
        return f"http://{host}:{self.port}"

    @property
    def url(self) -> str:
        """OpenAI base URL, ready for `openai.OpenAI(base_url=...)`."""
        return f"{self.root}/v1"

    async def stop(self) -> None:
        await self.runner.cleanup()


async def _start_one(profile: Profile, host: str, port: int) -> RunningSim:
    # Handler cancellation is what lets a hung or stalled request see its client give up.
    runner = web.AppRunner(
        create_app(profile),
        handler_cancellation=True,
        access_log=None,
        shutdown_timeout=SHUTDOWN_TIMEOUT_S,
    )
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
    except BaseException:
        await runner.cleanup()
        raise
    bound = int(runner.addresses[0][1])
    log.info("sim %s (%s) listening on %s:%d", profile.name, profile.hardware, host, bound)
    return RunningSim(profile, runner, host, bound)


async def start_fleet(
    profiles: list[Profile], host: str = "127.0.0.1", ports: list[int] | None = None
) -> list[RunningSim]:
    """Start one server per profile on `ports` (default: each profile's own port; 0 = ephemeral)."""
    chosen = ports if ports is not None else [profile.port for profile in profiles]
    if len(chosen) != len(profiles):
        raise ValueError(f"{len(profiles)} profiles but {len(chosen)} ports")
    started: list[RunningSim] = []
    try:
        for profile, port in zip(profiles, chosen, strict=True):
            started.append(await _start_one(profile, host, port))
    except BaseException:
        await stop_fleet(started)
        raise
    return started


async def stop_fleet(servers: Iterable[RunningSim]) -> None:
    for server in servers:
        await server.stop()


async def serve_fleet_forever(
    profiles: list[Profile],
    host: str = "127.0.0.1",
    ports: list[int] | None = None,
    on_started: Callable[[list[RunningSim]], None] | None = None,
) -> None:
    """Serve until SIGINT or SIGTERM (then return normally, servers stopped) or until cancelled."""
    servers = await start_fleet(profiles, host, ports)
    if on_started is not None:
        on_started(servers)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    watched: list[signal.Signals] = []
    if threading.current_thread() is threading.main_thread():
        # Both signals mean "stop now": a terminal's Ctrl-C reaches the demo's sim child too, and the
        # demo ends it with SIGTERM; either way a quiet exit, not a CancelledError traceback.
        for signum in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(signum, stop.set)
                watched.append(signum)
    try:
        await stop.wait()
    finally:
        for signum in watched:
            loop.remove_signal_handler(signum)
        await stop_fleet(servers)


def write_service_account(servers: Iterable[RunningSim], path: Path, host: str | None = None) -> bool:
    """Mints a service account on the first server that speaks Vertex and writes its key file to `path`
    (owner-only, atomically), its token_uri that server at `host` (default: its own address). False when
    none speaks Vertex or the file cannot be written (logged): the simulators serve on either way."""
    server = next((s for s in servers if s.profile.vertex is not None), None)
    if server is None:
        return False
    where = host or server.root.split("//", 1)[1].rsplit(":", 1)[0]
    info = vertex.mint_service_account(
        server.runner.app[vertex.VERTEX], f"http://{where}:{server.port}/token"
    )
    partial = path.with_name(path.name + ".partial")
    try:
        partial.touch(mode=0o600)
        partial.write_text(json.dumps(info))
        partial.replace(path)  # whole or absent, for a reader polling for it
    except OSError as exc:
        log.error("cannot write the Vertex service account to %s: %s", path, exc.strerror or exc)
        return False
    return True


class SimThread:
    """Profiles served from a daemon thread with its own event loop; a context manager for tests.

    Control and stats go over HTTP like any other client would use them, so nothing is shared
    between threads except the started/stopped signals.
    """

    def __init__(
        self, profiles: Profile | Iterable[Profile], host: str = "127.0.0.1", ports: list[int] | None = None
    ) -> None:
        self.profiles = [profiles] if isinstance(profiles, Profile) else list(profiles)
        names = [profile.name for profile in self.profiles]
        if len(set(names)) != len(names):
            raise ValueError(f"profile names must be unique, got {names}")
        self.host = host
        self._ports = ports
        self.servers: dict[str, RunningSim] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread: threading.Thread | None = None
        self._http = httpx.Client(timeout=10.0, trust_env=False)

    @property
    def urls(self) -> dict[str, str]:
        """Profile name to OpenAI base URL (`http://127.0.0.1:PORT/v1`)."""
        return {name: server.url for name, server in self.servers.items()}

    @property
    def ports(self) -> dict[str, int]:
        return {name: server.port for name, server in self.servers.items()}

    def start(self) -> SimThread:
        self._thread = threading.Thread(target=self._run, name="routeway-sim", daemon=True)
        self._thread.start()
        self._ready.wait(timeout=30.0)
        if self._error is not None:
            raise RuntimeError("simulator failed to start") from self._error
        if not self._ready.is_set():
            raise RuntimeError("simulator did not start within 30 s")
        return self

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:  # noqa: BLE001 - handed to the starting thread, which re-raises it
            self._error = exc
            self._ready.set()

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        servers = await start_fleet(self.profiles, self.host, self._ports)
        self.servers = {server.profile.name: server for server in servers}
        self._ready.set()
        try:
            await self._stop.wait()
        finally:
            await stop_fleet(servers)

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None and not self._loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop may have closed since the check
                self._loop.call_soon_threadsafe(self._stop.set)
        if self._thread is not None:
            self._thread.join(timeout=10.0)
        self._http.close()

    def __enter__(self) -> SimThread:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def _root(self, name: str) -> str:
        return self.servers[name].root

    def control(self, name: str, **knobs: Any) -> dict[str, Any]:
        """Change knobs of one server, e.g. `sim.control("groq-lpu", error_rate=1.0)`; returns all knobs."""
        return self._call("POST", f"{self._root(name)}/sim/control", knobs)

    def knobs(self, name: str) -> dict[str, Any]:
        return self._call("GET", f"{self._root(name)}/sim/control")

    def stats(self, name: str) -> dict[str, Any]:
        return self._call("GET", f"{self._root(name)}/sim/stats")

    def reset(self, name: str | None = None) -> None:
        """Restore profile defaults and clear stats of one server, or of all when `name` is None."""
        for each in [name] if name is not None else list(self.servers):
            self._call("POST", f"{self._root(each)}/sim/reset")

    def _call(self, method: str, url: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        response = self._http.request(method, url, json=body)
        response.raise_for_status()
        result: dict[str, Any] = response.json()
        return result
