"""Where virtual keys live: Redis when the gateway shares state, else a local SQLite file (`routeway.db`).

Redis layout (prefix `routeway:keys:v1`; on a Cluster both keys carry one hash tag, so one slot):
`{prefix}:keys` hash id → the key's record (JSON, with the SHA-256 of its secret, never the secret), and
`{prefix}:hashes` hash sha256 → id, the lookup index. Each write is one Lua script, so a rotation swaps the
index entry atomically. SQLite holds the same record in one table, indexed by id and by hash.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

from gateway.access.keys import VirtualKey
from gateway.errors import ServiceUnavailable
from gateway.settings import Settings
from gateway.telemetry import redis_client

_LOOKUP = """
local id = redis.call('HGET', KEYS[2], ARGV[1])
if not id then return false end
return redis.call('HGET', KEYS[1], id)
"""
_PUT = """
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
if ARGV[4] ~= '' and ARGV[4] ~= ARGV[3] then redis.call('HDEL', KEYS[2], ARGV[4]) end
redis.call('HSET', KEYS[2], ARGV[3], ARGV[1])
return 1
"""


class KeyStoreUnavailable(ServiceUnavailable):
    """The key store did not answer (Redis down or too slow): a 503 wherever it reaches a client."""

    def __init__(self, cause: str) -> None:
        super().__init__("The key store is unreachable; try again shortly", headers={"retry-after": "1"})
        self.cause = cause


class KeyStore(Protocol):
    async def start(self) -> None: ...
    async def close(self) -> None: ...
    async def by_hash(self, hash_: str) -> VirtualKey | None: ...
    async def get(self, key_id: str) -> VirtualKey | None: ...
    async def put(self, key: VirtualKey, old_hash: str | None = None) -> None: ...
    async def all(self) -> list[VirtualKey]: ...


class RedisKeyStore:
    """Keys shared by every replica through Redis (one server or a Cluster)."""

    def __init__(self, url: str, *, prefix: str, cluster: bool, timeout_s: float) -> None:
        self._client = redis_client.connect(url, timeout_s, cluster)
        self._cluster = cluster
        self._keys, self._hashes = redis_client.store_keys(prefix, ("keys", "hashes"), cluster)
        self._lookup = self._client.register_script(_LOOKUP)
        self._put = self._client.register_script(_PUT)
        self._discovered = False
        self._discovery = asyncio.Lock()  # one cluster discovery at a time

    @property
    def client(self) -> redis_client.Client:
        return self._client

    async def start(self) -> None:
        """Learns a cluster's slots now rather than on the first request (no I/O for one server)."""
        try:
            await self._ready()
        except redis_client.FAILURES:
            pass  # the first lookup tries again

    async def close(self) -> None:
        await redis_client.close(self._client)

    async def _ready(self) -> None:
        if self._discovered:
            return
        async with self._discovery:
            if not self._discovered:
                await redis_client.discover(self._client, refresh=False)
                self._discovered = True

    async def by_hash(self, hash_: str) -> VirtualKey | None:
        try:
            await self._ready()
            raw = await self._lookup(keys=[self._keys, self._hashes], args=[hash_])
        except redis_client.FAILURES as exc:
            self._discovered = False
            raise KeyStoreUnavailable(type(exc).__name__) from None
        return VirtualKey.decode(raw) if raw else None

    async def get(self, key_id: str) -> VirtualKey | None:
        try:
            await self._ready()
            raw = await self._client.hget(self._keys, key_id)
        except redis_client.FAILURES as exc:
            self._discovered = False
            raise KeyStoreUnavailable(type(exc).__name__) from None
        return VirtualKey.decode(raw) if raw else None

    async def put(self, key: VirtualKey, old_hash: str | None = None) -> None:
        try:
            await self._ready()
            args: list[str | bytes] = [key.id, key.encode(), key.hash, old_hash or ""]
            await self._put(keys=[self._keys, self._hashes], args=args)
        except redis_client.FAILURES as exc:
            self._discovered = False
            raise KeyStoreUnavailable(type(exc).__name__) from None

    async def all(self) -> list[VirtualKey]:
        try:
            await self._ready()
            raw = await self._client.hgetall(self._keys)
        except redis_client.FAILURES as exc:
            self._discovered = False
            raise KeyStoreUnavailable(type(exc).__name__) from None
        return sorted((VirtualKey.decode(v) for v in raw.values()), key=lambda k: k.created_at)


_SCHEMA = """
CREATE TABLE IF NOT EXISTS keys (
    id TEXT PRIMARY KEY,
    hash TEXT NOT NULL UNIQUE,
    record BLOB NOT NULL
)
"""


class SqliteKeyStore:
    """Keys in a local SQLite file, for a gateway without Redis (the embedded default).

    Each call opens its own short connection in a worker thread: SQLite serialises writers across the
    processes of `--workers`, and a lookup is a single indexed read. Lookups are cached by the caller.
    """

    def __init__(self, path: Path) -> None:
        self.path = path

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, timeout=5.0)
        conn.execute(_SCHEMA)
        return conn

    async def start(self) -> None:
        return None  # the file is made by the first key written, not by every start

    async def close(self) -> None:
        return None

    def _run(self, sql: str, params: Sequence[object]) -> list[tuple[object, ...]]:
        if sql.startswith("SELECT") and not self.path.exists():
            return []  # no key was ever made here
        conn = self._connect()
        try:
            with conn:
                return conn.execute(sql, params).fetchall()
        finally:
            conn.close()

    async def _one(self, sql: str, params: Sequence[object]) -> VirtualKey | None:
        rows = await asyncio.to_thread(self._run, sql, params)
        return VirtualKey.decode(rows[0][0]) if rows else None  # type: ignore[arg-type]

    async def by_hash(self, hash_: str) -> VirtualKey | None:
        return await self._one("SELECT record FROM keys WHERE hash = ?", (hash_,))

    async def get(self, key_id: str) -> VirtualKey | None:
        return await self._one("SELECT record FROM keys WHERE id = ?", (key_id,))

    async def put(self, key: VirtualKey, old_hash: str | None = None) -> None:
        sql = "INSERT OR REPLACE INTO keys (id, hash, record) VALUES (?, ?, ?)"
        await asyncio.to_thread(self._run, sql, (key.id, key.hash, key.encode()))

    async def all(self) -> list[VirtualKey]:
        rows = await asyncio.to_thread(self._run, "SELECT record FROM keys", ())
        return sorted((VirtualKey.decode(r[0]) for r in rows), key=lambda k: k.created_at)  # type: ignore[arg-type]


def make_keystore(settings: Settings) -> KeyStore:
    """The store the server and the CLI share: Redis when ROUTEWAY_REDIS_URL is set, else SQLite."""
    if settings.redis_url:
        return RedisKeyStore(
            settings.redis_url,
            prefix=settings.keys_redis_prefix,
            cluster=settings.redis_cluster,
            timeout_s=max(settings.redis_timeout_ms / 1000, 0.25),
        )
    return SqliteKeyStore(settings.keys_db)
