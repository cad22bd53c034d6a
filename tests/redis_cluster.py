"""A real three-master Redis Cluster on loopback, and the fixture that runs a test on one server or on it."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from redis.cluster import RedisCluster
from redis.crc import key_slot

from tests.conftest import free_port


@dataclass(frozen=True)
class SharedRedis:
    """Where replicas share state: one server, or a cluster's nodes (each a valid URL for the same data)."""

    urls: tuple[str, ...]
    cluster: bool

    def url(self, i: int = 0) -> str:
        return self.urls[i % len(self.urls)]

    def env(self, i: int = 0) -> dict[str, str]:
        return {"ROUTEWAY_REDIS_URL": self.url(i), "ROUTEWAY_REDIS_CLUSTER": str(self.cluster).lower()}


class LocalCluster:
    """Three `redis-server --cluster-enabled yes` masters, no replicas, joined by `redis-cli --cluster create`
    (Debian's redis-server package brings redis-cli, from redis-tools, with it).
    """

    def __init__(self, workdir: Path, node_timeout_ms: int = 1000) -> None:
        for tool in ("redis-server", "redis-cli"):
            if shutil.which(tool) is None:
                pytest.fail(f"{tool} is not installed: run `make system-packages` (Debian's redis-server)")
        self.workdir = workdir
        self.node_timeout_ms = node_timeout_ms
        self.ports = [free_port() for _ in range(3)]
        self._bus = {port: free_port() for port in self.ports}
        self._procs: dict[int, subprocess.Popen[bytes]] = {}
        try:
            for port in self.ports:
                self.start_node(port)
            nodes = [f"127.0.0.1:{p}" for p in self.ports]
            subprocess.run(
                ["redis-cli", "--cluster", "create", *nodes, "--cluster-replicas", "0", "--cluster-yes"],
                check=True,
                capture_output=True,
                timeout=30,
            )
            self.wait_ok()
        except BaseException:
            self.stop()
            raise

    @property
    def urls(self) -> tuple[str, ...]:
        return tuple(f"redis://127.0.0.1:{p}/0" for p in self.ports)

    def shared(self) -> SharedRedis:
        return SharedRedis(self.urls, cluster=True)

    def start_node(self, port: int) -> None:
        """Start (or restart, keeping its nodes.conf, so it rejoins) the node on `port`."""
        folder = self.workdir / str(port)
        folder.mkdir(exist_ok=True)
        args = ["--port", str(port), "--cluster-port", str(self._bus[port]), "--bind", "127.0.0.1"]
        args += ["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf"]
        args += ["--cluster-node-timeout", str(self.node_timeout_ms), "--save", "", "--appendonly", "no"]
        # A new replica syncs at once rather than after the default 5 s of waiting for others.
        args += ["--repl-diskless-sync-delay", "0", "--dir", str(folder)]
        self._procs[port] = subprocess.Popen(
            ["redis-server", *args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + 10
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                    return
            except OSError:
                if time.monotonic() > deadline or self._procs[port].poll() is not None:
                    pytest.fail(f"redis-server (cluster node) on port {port} did not start")
                time.sleep(0.02)

    def add_replica(self, master: int) -> int:
        """A fourth node, a replica of the master on `master`, in sync: what a failover promotes."""
        port = free_port()
        self._bus[port] = free_port()
        self.start_node(port)
        self.ports.append(port)
        master_id = self._cli(master, "cluster", "myid").strip()
        add = ["add-node", f"127.0.0.1:{port}", f"127.0.0.1:{master}"]
        subprocess.run(
            ["redis-cli", "--cluster", *add, "--cluster-slave", "--cluster-master-id", master_id],
            check=True,
            capture_output=True,
            timeout=30,
        )
        deadline = time.monotonic() + 20
        while "master_link_status:up" not in self._cli(port, "info", "replication"):
            if time.monotonic() > deadline:
                pytest.fail("the new replica never synced with its master")
            time.sleep(0.05)
        self.wait_ok()
        return port

    def _cli(self, port: int, *command: str) -> str:
        args = ["redis-cli", "-p", str(port), *command]
        return subprocess.run(args, capture_output=True, text=True, timeout=5).stdout

    def kill(self, port: int) -> None:
        proc = self._procs.pop(port)
        proc.kill()
        proc.wait(timeout=10)

    def wait_ok(self, timeout_s: float = 20) -> None:
        """Until every node reports `cluster_state:ok` (a fresh or rejoined cluster takes a moment)."""
        deadline = time.monotonic() + timeout_s
        while not all(self._info(port).get("cluster_state") == "ok" for port in self._procs):
            if time.monotonic() > deadline:
                pytest.fail("the Redis Cluster never reached cluster_state:ok")
            time.sleep(0.05)

    def _info(self, port: int) -> dict[str, str]:
        out = self._cli(port, "cluster", "info")
        return dict(line.strip().split(":", 1) for line in out.splitlines() if ":" in line)

    def client(self) -> RedisCluster:
        return RedisCluster.from_url(self.url_of(self.ports[0]))

    def url_of(self, port: int) -> str:
        return f"redis://127.0.0.1:{port}/0"

    def owner(self, key: str) -> int:
        """The port of the master that serves `key`'s slot."""
        with self.client() as rc:
            node = rc.nodes_manager.get_node_from_slot(key_slot(key.encode()))
            return int(node.port)

    def stop(self) -> None:
        for port in list(self._procs):
            self.kill(port)


# On a test: run it against one redis-server and against the cluster (the `shared_redis` fixture).
BOTH = pytest.mark.parametrize("shared_redis", ["single", "cluster"], indirect=True)


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    """The suite's Redis Cluster, started on first use (about a second) and shared by the session."""
    cluster = LocalCluster(tmp_path_factory.mktemp("redis-cluster"))
    yield cluster
    cluster.stop()


@pytest.fixture
def shared_redis(request: pytest.FixtureRequest) -> SharedRedis:
    """The session's redis-server, or with `BOTH` (parameter "cluster") the session's Redis Cluster."""
    if getattr(request, "param", "single") == "cluster":
        cluster: LocalCluster = request.getfixturevalue("redis_cluster")
        return cluster.shared()
    return SharedRedis((request.getfixturevalue("redis_url"),), cluster=False)
