"""RedisStore across two replicas on a real redis-server: sharing, cooldowns, an outage and the recovery."""

from __future__ import annotations

import asyncio
import logging
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from gateway.telemetry import RedisStore, Sample, Snapshot

KEY = ("groq", "llama-3.3-70b-versatile")
OK = Sample("ok", ttft_s=0.2, duration_s=1.2, output_tokens=100)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def start_redis(port: int, workdir: Path) -> subprocess.Popen[bytes]:
    exe = shutil.which("redis-server")
    if exe is None:
        pytest.fail("redis-server is not installed")
    args = [exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    proc = subprocess.Popen(
        [*args, "--dir", str(workdir)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 10
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return proc
        except OSError:
            if time.monotonic() > deadline or proc.poll() is not None:
                proc.kill()
                pytest.fail("redis-server did not start")
            time.sleep(0.02)


def pair(url: str, replica_ttl_s: float = 3.0) -> tuple[RedisStore, RedisStore]:
    prefix = f"test:{uuid.uuid4().hex[:8]}"  # tests sharing the session's server stay apart
    return (
        RedisStore(url, replica_id="a", prefix=prefix, replica_ttl_s=replica_ttl_s),
        RedisStore(url, replica_id="b", prefix=prefix, replica_ttl_s=replica_ttl_s),
    )


async def within(seconds: float, store: RedisStore, check: Callable[[Snapshot], bool]) -> float:
    """Seconds until `check(store.snapshot())` holds; fails after `seconds`."""
    start = time.monotonic()
    while not check(store.snapshot()):
        if time.monotonic() - start > seconds:
            pytest.fail(f"replica {store.replica_id} did not see the change within {seconds}s")
        await asyncio.sleep(0.02)
    return time.monotonic() - start


def replica(record: logging.LogRecord) -> str:
    args = record.args if isinstance(record.args, tuple) else ()
    return str(args[0]) if args else ""


class Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def logs() -> Iterator[Collect]:
    # A handler on the logger itself: other tests may have turned propagation to the root off.
    logger = logging.getLogger("routeway.telemetry")
    handler, level = Collect(), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    yield handler
    logger.removeHandler(handler)
    logger.setLevel(level)


def test_replicas_share_telemetry_and_cooldowns(redis_url: str) -> None:
    async def scenario() -> None:
        a, b = pair(redis_url)
        await a.start()
        await b.start()
        try:
            a.record(KEY, OK)
            a.add_in_flight(KEY, 1)
            await within(1.0, b, lambda s: KEY in s and s[KEY].in_flight == 1)
            seen = b.snapshot()[KEY]
            assert seen.samples == pytest.approx(1.0, rel=0.05)
            assert seen.ttft_s == pytest.approx(0.2) and seen.tokens_per_s == pytest.approx(100.0)
            assert seen.local_in_flight == 0

            b.record(KEY, OK)  # both replicas' data add up on each side
            await within(1.0, a, lambda s: s[KEY].samples > 1.9)
            await within(1.0, b, lambda s: s[KEY].samples > 1.9)

            until = time.time() + 30
            a.set_cooldown("groq", until)
            assert a.snapshot().cooling("groq", time.time())  # at once on the replica that opened it
            await within(1.0, b, lambda s: s.cooldown_until("groq") == pytest.approx(until))
            b.set_cooldown("groq", until - 10)  # only ever extends
            await asyncio.sleep(0.4)
            assert a.snapshot().cooldown_until("groq") == pytest.approx(until)
            a.clear_cooldown("groq")
            await within(1.0, b, lambda s: not s.cooling("groq", time.time()))
            assert a.connected and b.connected
        finally:
            await a.close()
        # A replica that leaves takes its in-flight count with it at once.
        await within(1.0, b, lambda s: s[KEY].in_flight == 0)
        await b.close()

    asyncio.run(scenario())


def test_outage_falls_back_to_local_and_resyncs(tmp_path: Path, logs: Collect) -> None:
    port = free_port()
    url = f"redis://127.0.0.1:{port}/0"
    proc = start_redis(port, tmp_path)

    async def scenario() -> subprocess.Popen[bytes]:
        nonlocal proc
        a, b = pair(url, replica_ttl_s=1.0)
        await a.start()
        await b.start()
        try:
            a.record(KEY, OK)
            a.add_in_flight(KEY, 1)
            await within(1.0, b, lambda s: KEY in s and s[KEY].in_flight == 1)

            proc.kill()
            proc.wait()
            end = time.monotonic() + 1.5
            while time.monotonic() < end:  # every call keeps working while Redis is gone
                a.record(KEY, Sample("server"))
                a.set_cooldown("nim", time.time() + 60)
                assert a.snapshot()[KEY].local_in_flight == 1
                b.snapshot()
                await asyncio.sleep(0.05)
            assert not a.connected and not b.connected
            assert a.snapshot()[KEY].outcomes["server"] > 5  # routing on local telemetry
            assert KEY not in b.snapshot()  # A's data aged out of B's view: no stale in-flight counts
            warnings = [r for r in logs.records if r.levelno >= logging.WARNING]
            assert sorted(replica(r) for r in warnings) == ["a", "b"], warnings  # one per replica

            proc = start_redis(port, tmp_path)
            # Sharing resumes, and what A learned during the outage reaches B (the full resync).
            await within(3.0, b, lambda s: KEY in s and s[KEY].outcomes["server"] > 5)
            await within(1.0, b, lambda s: s.cooling("nim", time.time()))
            a.record(KEY, Sample("timeout"))
            await within(1.0, b, lambda s: s[KEY].outcomes["timeout"] > 0.9)
            assert b.snapshot()[KEY].in_flight == 1
            infos = [r for r in logs.records if r.levelno == logging.INFO and "again" in r.getMessage()]
            assert len(infos) == 2
            assert len([r for r in logs.records if r.levelno >= logging.WARNING]) == 2
        finally:
            await a.close()
            await b.close()
        return proc

    try:
        proc = asyncio.run(scenario())
    finally:
        proc.kill()
        proc.wait()


def test_start_without_redis_keeps_working(logs: Collect) -> None:
    async def scenario() -> None:
        store = RedisStore(f"redis://127.0.0.1:{free_port()}/0", replica_id="lonely")
        await store.start()
        store.record(KEY, OK)
        await asyncio.sleep(0.3)
        assert store.snapshot()[KEY].samples == pytest.approx(1.0, rel=0.05)
        assert not store.connected
        await store.close()

    asyncio.run(scenario())
    assert len([r for r in logs.records if r.levelno >= logging.WARNING]) == 1
