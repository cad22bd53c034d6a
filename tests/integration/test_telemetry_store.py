"""RedisStore across two replicas on a real redis-server and on a real Redis Cluster: sharing, cooldowns,
an outage and the recovery, and the cluster's one hash slot."""

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
from redis import Redis

from gateway.telemetry import RedisStore, Sample, Snapshot
from tests.redis_cluster import BOTH, LocalCluster, SharedRedis

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


def pair(redis: SharedRedis, replica_ttl_s: float = 3.0, prefix: str = "") -> tuple[RedisStore, RedisStore]:
    """Two replicas; on a cluster each starts from its own node, and at least one is not the slot's owner."""
    prefix = prefix or f"test:{uuid.uuid4().hex[:8]}"  # tests sharing the session's server stay apart
    return (
        RedisStore(
            redis.url(0), replica_id="a", prefix=prefix, replica_ttl_s=replica_ttl_s, cluster=redis.cluster
        ),
        RedisStore(
            redis.url(1), replica_id="b", prefix=prefix, replica_ttl_s=replica_ttl_s, cluster=redis.cluster
        ),
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


@BOTH
def test_replicas_share_telemetry_and_cooldowns(shared_redis: SharedRedis) -> None:
    """On a cluster the two replicas start from different nodes and still meet in the one slot."""

    async def scenario() -> None:
        a, b = pair(shared_redis)
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


class Killable:
    """A Redis of the test's own that it can kill and bring back: a server, or the node serving the slot."""

    PREFIX = "{outage}:telemetry"  # a prefix with its own hash tag: on a cluster, kept as it is

    def __init__(self, kind: str, workdir: Path) -> None:
        self.cluster = LocalCluster(workdir) if kind == "cluster" else None
        if self.cluster is None:
            self.port = free_port()
            self.proc: subprocess.Popen[bytes] | None = start_redis(self.port, workdir)
            self.redis = SharedRedis((f"redis://127.0.0.1:{self.port}/0",), cluster=False)
        else:
            self.port = self.cluster.owner(f"{self.PREFIX}:replicas")
            self.proc = None
            self.redis = self.cluster.shared()
        self.workdir = workdir

    def kill(self) -> None:
        if self.cluster is not None:
            self.cluster.kill(self.port)
        elif self.proc is not None:
            self.proc.kill()
            self.proc.wait()

    def restart(self) -> None:
        if self.cluster is not None:
            self.cluster.start_node(self.port)  # its nodes.conf makes it rejoin with its slots
        else:
            self.proc = start_redis(self.port, self.workdir)

    def stop(self) -> None:
        if self.cluster is not None:
            self.cluster.stop()
        elif self.proc is not None:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture(params=["single", "cluster"])
def killable(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Killable]:
    redis = Killable(request.param, tmp_path)
    yield redis
    redis.stop()


def test_outage_falls_back_to_local_and_resyncs(killable: Killable, logs: Collect) -> None:
    """On a cluster the outage is the slot's master dying (no replica to fail over to) and coming back."""

    async def scenario() -> None:
        a, b = pair(killable.redis, replica_ttl_s=1.0, prefix=Killable.PREFIX)
        await a.start()
        await b.start()
        try:
            a.record(KEY, OK)
            a.add_in_flight(KEY, 1)
            await within(1.0, b, lambda s: KEY in s and s[KEY].in_flight == 1)
            # Count from here: two replicas in one event loop can time each other out at start (one
            # parsing the cluster's COMMAND table holds the loop), which the next tick recovers from.
            logs.records.clear()

            killable.kill()
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

            killable.restart()
            # Sharing resumes, and what A learned during the outage reaches B (the full resync).
            # A cluster also waits for the rejoined master to see its peers again (node timeout: 1 s).
            resync_s = 6.0 if killable.cluster else 3.0
            took = await within(resync_s, b, lambda s: KEY in s and s[KEY].outcomes["server"] > 5)
            print(f"resynced {took:.2f} s after the restart")
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

    asyncio.run(scenario())


@pytest.mark.parametrize("cluster", [False, True], ids=["single", "cluster"])
def test_start_without_redis_keeps_working(cluster: bool, logs: Collect) -> None:
    async def scenario() -> None:
        store = RedisStore(f"redis://127.0.0.1:{free_port()}/0", replica_id="lonely", cluster=cluster)
        await store.start()
        store.record(KEY, OK)
        await asyncio.sleep(0.3)
        assert store.snapshot()[KEY].samples == pytest.approx(1.0, rel=0.05)
        assert not store.connected
        await store.close()

    asyncio.run(scenario())
    assert len([r for r in logs.records if r.levelno >= logging.WARNING]) == 1


def test_on_a_cluster_every_key_lands_in_one_slot_on_one_node(redis_cluster: LocalCluster) -> None:
    """What the hash tag is for: the round trip and the scripts never cross slots (no CROSSSLOT)."""
    prefix = f"test:slot:{uuid.uuid4().hex[:8]}"

    async def scenario() -> None:
        a, b = pair(redis_cluster.shared(), prefix=prefix)
        await a.start()
        await b.start()
        try:
            a.record(KEY, OK)
            b.set_cooldown("groq", time.time() + 30)  # the cooldowns hash exists only with one in it
            await within(1.0, a, lambda s: s.cooling("groq", time.time()))
            await within(1.0, b, lambda s: KEY in s)
            held = keys_by_node(redis_cluster, prefix)  # while both replicas are in the hash
        finally:
            await a.close()
            await b.close()
        tagged = f"{{{prefix}}}"
        assert list(held.values()) == [[f"{tagged}:cooldowns".encode(), f"{tagged}:replicas".encode()]]

    asyncio.run(scenario())


def keys_by_node(cluster: LocalCluster, prefix: str) -> dict[int, list[bytes]]:
    """Each master's keys under `prefix`, checking with CLUSTER KEYSLOT that a node's keys share one slot."""
    held: dict[int, list[bytes]] = {}
    for port in cluster.ports:
        with Redis(port=port) as node:
            if keys := sorted(node.scan_iter(match=f"*{prefix}*")):
                held[port] = keys
                slots = {node.execute_command("CLUSTER KEYSLOT", k) for k in keys}
                assert len(slots) == 1, slots
    return held


def test_a_cluster_failover_is_an_outage_then_sharing_resumes_on_the_promoted_replica(
    tmp_path: Path, logs: Collect
) -> None:
    """The slot's master dies and its replica takes over: the stores ask the nodes for the slot map again."""
    cluster = LocalCluster(tmp_path)
    try:
        master = cluster.owner(f"{Killable.PREFIX}:replicas")
        replica = cluster.add_replica(master)

        async def scenario() -> None:
            a, b = pair(cluster.shared(), replica_ttl_s=1.0, prefix=Killable.PREFIX)
            await a.start()
            await b.start()
            try:
                a.record(KEY, OK)
                await within(1.0, b, lambda s: KEY in s)
                cluster.kill(master)
                a.set_cooldown("nim", time.time() + 60)  # queued while the slot has no master
                took = await within(15.0, b, lambda s: s.cooling("nim", time.time()))
                print(f"shared again {took:.2f} s after the master died")
                assert cluster.owner(f"{Killable.PREFIX}:replicas") == replica
                a.record(KEY, Sample("timeout"))
                await within(1.0, b, lambda s: s[KEY].outcomes["timeout"] > 0.9)
            finally:
                await a.close()
                await b.close()

        asyncio.run(scenario())
    finally:
        cluster.stop()
    assert any("again" in r.getMessage() for r in logs.records)  # the outage was seen and ended


def test_replicas_agree_on_the_newest_load_signal(redis_url: str) -> None:
    """A self-hosted server scraped by one replica is seen by the other (telemetry/loadsignals.py), and
    when both scrape it the newest scrape wins on both sides."""
    from gateway.telemetry.loadsignals import LoadSignal

    async def scenario() -> None:
        a, b = pair(SharedRedis((redis_url,), cluster=False))
        await a.start()
        await b.start()
        try:
            now = time.time()
            full = LoadSignal(now, 6.0, 8.0, 0.97, None, "vllm")
            a.set_load("local-vllm", full)
            await within(1.0, b, lambda s: s.loads.get("local-vllm") == full)
            drained = LoadSignal(now + 0.5, 0.0, 2.0, 0.2, None, "vllm")
            b.set_load("local-vllm", drained)  # b's own scrape, newer
            await within(1.0, a, lambda s: s.loads.get("local-vllm") == drained)
            assert b.snapshot().loads["local-vllm"] == drained
        finally:
            await a.close()
            await b.close()

    asyncio.run(scenario())
