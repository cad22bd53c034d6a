"""RedisStore: a MemoryStore whose aggregates and cooldowns every replica shares through Redis.

Data layout (prefix `routeway:telemetry:v1` by default):

- `{prefix}:replicas`, a hash: field = replica id, value = that replica's whole local aggregate as one orjson
  blob `{"t": epoch_s, "k": [[backend, model_id, in_flight, retry_at, headroom_at, headroom, vector,
  estimates, stuck_since], ...], "l": {backend: load}}`
  where each vector holds that replica's decayed sums brought to `t`, and `"l"` the replica's latest scrape
  of each self-hosted server's metrics page (LoadSignal.to_list). A replica only ever overwrites its own
  field, so a write is idempotent: a retry cannot double-count, and after an outage the next write is the
  full resync. A reader decays every other replica's vectors from its `t` to now and adds them (decayed
  sums are additive), sums the in-flight counts, takes the newest headroom, the latest Retry-After and the
  newest load signal per backend, and ignores blobs older than `replica_ttl_s` (a dead replica stops
  counting). The recency-weighted estimates (telemetry/estimators.py, fed last wins: a probe's result
  reaches every replica) and the start of the oldest attempt overdue for its first byte (stuck_since, the
  earliest wins: a backend that hangs is demoted on every replica) ride in the same entry. The AIMD limit
  is per replica and not shared: every replica runs its own AIMD against the common upstream, as TCP flows
  share a link.
- `{prefix}:cooldowns`, a hash: field = breaker name, value = until (epoch s). Set through a Lua script that
  only extends, so concurrent openers agree on the latest deadline; cleared with HDEL.

One background task does all the I/O: every `flush_s` one pipelined round trip writes this replica's blob
(when it changed, and as a heartbeat) and queued cooldown operations, and every `refresh_s` reads both
hashes in the same round trip. Every call has a socket timeout of tens of ms. While Redis is unreachable
the store keeps serving its local telemetry (remote data is dropped once it is older than the replica TTL),
logs one warning per outage and one info line when Redis answers again.

On a Redis Cluster (`cluster=True`) both keys carry one hash tag (`{routeway:telemetry:v1}:replicas` unless
the prefix has its own), so the round trip and each script touch one slot, on one node; any failure there
(a node down, failing over, a slot moving) is an outage like any other, after which the client asks the
nodes for the slot map again (redis_client.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections import deque
from collections.abc import Callable
from typing import Any

import orjson

from gateway.telemetry import redis_client
from gateway.telemetry.estimators import Estimates
from gateway.telemetry.headroom import Headroom
from gateway.telemetry.loadsignals import LoadSignal
from gateway.telemetry.store import Key, MemoryStore, Remote, RemoteView
from gateway.telemetry.window import WIDTH, Sample

log = logging.getLogger("routeway.telemetry")

_EXTEND = """
local cur = redis.call('HGET', KEYS[1], ARGV[1])
if (not cur) or tonumber(cur) < tonumber(ARGV[2]) then
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
end
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return 0
"""
_DELETE_IF_BEFORE = """
local cur = redis.call('HGET', KEYS[1], ARGV[1])
if cur and tonumber(cur) < tonumber(ARGV[2]) then return redis.call('HDEL', KEYS[1], ARGV[1]) end
return 0
"""
_PRUNE_AFTER_S = 60.0  # fields this much older than now are deleted, not merely ignored
_KEY_TTL_MS = 3_600_000  # both hashes vanish an hour after the last replica wrote
_MAX_PENDING_OPS = 1024
_DOWN_RETRY_S = 0.5
READY_WITHOUT_REDIS_S = 10.0
_RedisFailure = redis_client.FAILURES


class RedisStore(MemoryStore):
    """Local telemetry plus every other replica's, read from a snapshot the background task refreshes."""

    def __init__(
        self,
        url: str,
        *,
        half_life_s: float = 30.0,
        flush_s: float = 0.1,
        refresh_s: float = 0.25,
        timeout_s: float = 0.05,
        replica_ttl_s: float = 3.0,
        prefix: str = "routeway:telemetry:v1",
        replica_id: str | None = None,
        cluster: bool = False,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(half_life_s, clock=clock, max_age_s=refresh_s)
        self.replica_id = replica_id or uuid.uuid4().hex[:12]
        self._url, self._cluster = url, cluster
        self._flush_s, self._refresh_s, self._timeout_s = flush_s, refresh_s, timeout_s
        self._ttl_s = replica_ttl_s
        self._replicas_key, self._cooldowns_key = redis_client.store_keys(
            prefix, ("replicas", "cooldowns"), cluster
        )
        self._ops: deque[tuple[str, float | None]] = deque(maxlen=_MAX_PENDING_OPS)  # None = clear
        self._prune_replicas: list[bytes] = []
        self._prune_cooldowns: list[bytes] = []
        self._dirty = True
        self._last_write = self._last_read = self._last_try = -float("inf")
        self._down = self._stale = False
        self._down_since = float("inf")
        self._redis: redis_client.Client | None = None
        self._task: asyncio.Task[None] | None = None

    # Live replicas (this one included) at the last read: sets the key limits' per-replica share while
    # Redis is down.
    replicas: int = 1

    @property
    def connected(self) -> bool:
        """Whether the last exchange with Redis succeeded (False before the first one)."""
        return not self._down and self._last_read > -float("inf")

    @property
    def synced(self) -> bool:
        """Whether the other replicas' telemetry has been read at least once (it stays True if Redis goes).

        Also True once Redis has been unreachable for READY_WITHOUT_REDIS_S: then every replica routes on
        its own telemetry anyway, and a pod that never became ready could not replace a lost one.
        """
        if self._last_read > -float("inf"):
            return True
        return self._down and self._clock() - self._down_since >= READY_WITHOUT_REDIS_S

    def record(self, key: Key, sample: Sample) -> None:
        super().record(key, sample)
        self._dirty = True

    def first_byte(self, key: Key, ttft_s: float) -> None:
        super().first_byte(key, ttft_s)
        self._dirty = True

    def recovered(self, key: Key) -> None:
        super().recovered(key)
        self._dirty = True

    def add_in_flight(self, key: Key, delta: int) -> None:
        super().add_in_flight(key, delta)
        self._dirty = True

    def set_load(self, backend: str, signal: LoadSignal) -> None:
        super().set_load(backend, signal)
        self._dirty = True

    def set_cooldown(self, name: str, until: float) -> None:
        # Not later than what this replica already knows (from Redis or still queued): nothing to send.
        if until > self._cooldowns.get(name, 0.0):
            super().set_cooldown(name, until)
            self._ops.append((name, until))

    def clear_cooldown(self, name: str) -> None:
        super().clear_cooldown(name)
        self._ops.append((name, None))

    async def start(self) -> None:
        if self._task is not None:
            return
        self._redis = redis_client.connect(self._url, self._timeout_s, self._cluster)
        self._task = asyncio.create_task(self._run(), name="telemetry-redis")

    async def close(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.wait({task}, timeout=redis_client.CLOSE_S)  # bounded, whatever Redis does
        client, self._redis = self._redis, None
        if client is None:
            return
        if not self._down:
            # Leave now rather than after the TTL, so others stop counting this replica's in-flight.
            with contextlib.suppress(*_RedisFailure):
                async with asyncio.timeout(self._timeout_s * 4):
                    await client.hdel(self._replicas_key, self.replica_id)
        await redis_client.close(client)

    async def _run(self) -> None:
        while True:
            now = self._clock()
            if not self._down or now - self._last_try >= _DOWN_RETRY_S:
                self._last_try = now
                try:
                    await self._tick(now)
                except _RedisFailure as exc:
                    self._failed(now, exc)
                except Exception as exc:  # noqa: BLE001 - the loop must outlive a bad reply
                    self._failed(now, exc, unexpected=True)
                else:
                    if self._down:
                        self._down = False
                        log.info("telemetry %s: Redis is reachable again; sharing resumed", self.replica_id)
            await asyncio.sleep(self._flush_s)

    def _failed(self, now: float, exc: BaseException, unexpected: bool = False) -> None:
        self._dirty = True  # the next successful write is the resync
        self._stale = True  # on a cluster: a node may have failed over, ask for the slot map again
        if not self._down:
            self._down = True
            self._down_since = now
            log.warning(
                "telemetry %s: Redis unavailable (%s: %s); routing on local telemetry until it is back",
                self.replica_id,
                type(exc).__name__,
                exc,
                exc_info=unexpected,
            )
        if self._remote is not None and now - self._last_read > self._ttl_s:
            self._set_remote(None)

    async def _tick(self, now: float) -> None:
        assert self._redis is not None
        await redis_client.discover(self._redis, self._stale)  # before anything is taken off the queue
        self._stale = False
        # While an attempt is stuck, every flush carries it: other replicas demote the backend within one.
        stuck = self.stuck is not None and bool(self.stuck())
        write = self._dirty or stuck or now - self._last_write >= self._ttl_s / 3
        read = now - self._last_read >= self._refresh_s
        ops = list(self._ops)
        self._ops.clear()
        if not (write or read or ops or self._prune_replicas or self._prune_cooldowns):
            return
        pipe = self._redis.pipeline(transaction=False)
        if write:
            self._dirty = False
            pipe.hset(self._replicas_key, self.replica_id, self._encode(now))
            pipe.pexpire(self._replicas_key, _KEY_TTL_MS)
        for name, until in ops:
            if until is None:
                pipe.hdel(self._cooldowns_key, name)
            else:
                pipe.eval(_EXTEND, 1, self._cooldowns_key, name, repr(until), str(_KEY_TTL_MS))
        if self._prune_replicas:
            pipe.hdel(self._replicas_key, *self._prune_replicas)
            self._prune_replicas = []
        for name_b in self._prune_cooldowns:
            pipe.eval(_DELETE_IF_BEFORE, 1, self._cooldowns_key, name_b, repr(now - _PRUNE_AFTER_S))
        self._prune_cooldowns = []
        if read:
            pipe.hgetall(self._replicas_key)
            pipe.hgetall(self._cooldowns_key)
        try:
            async with asyncio.timeout(self._timeout_s * 4):
                results: list[Any] = await pipe.execute()
        except BaseException:
            # Back in order, ahead of any queued since; past the cap the oldest go first.
            self._ops = deque([*ops, *self._ops], maxlen=_MAX_PENDING_OPS)
            raise
        if write:
            self._last_write = now
        if read:
            self._last_read = now
            self._absorb(results[-2], results[-1], now)

    def _encode(self, now: float) -> bytes:
        entries = [
            [key[0], key[1], in_flight, retry_at, hr_at, _hr_list(hr), vec, est.to_list(), stuck]
            for key, vec, in_flight, hr, hr_at, retry_at, est, stuck in self._local_entries(now)
        ]
        loads = {backend: signal.to_list() for backend, signal in self._loads.items()}
        return orjson.dumps({"t": now, "k": entries, "l": loads})

    def _absorb(self, blobs: dict[bytes, bytes], cooldowns: dict[bytes, bytes], now: float) -> None:
        me = self.replica_id.encode()
        keys: dict[Key, Remote] = {}
        loads: dict[str, LoadSignal] = {}
        live = 1
        for rid, blob in blobs.items():
            if rid == me:
                continue
            try:
                doc = orjson.loads(blob)
                t = float(doc["t"])
                if now - t > self._ttl_s:
                    if now - t > _PRUNE_AFTER_S:
                        self._prune_replicas.append(rid)
                    continue
                _merge(keys, doc["k"], 2.0 ** (-max(0.0, now - t) / self.half_life_s))
                _newest_loads(loads, doc.get("l"))
                live += 1
            except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, IndexError):
                continue  # another version's or a damaged blob: skip it rather than stop sharing
        shared: dict[str, float] = {}
        for name_b, until_b in cooldowns.items():
            try:
                until = float(until_b)
            except ValueError:
                continue
            if until > now:
                shared[name_b.decode(errors="replace")] = until
            elif until < now - _PRUNE_AFTER_S:
                self._prune_cooldowns.append(name_b)
        for name, op in self._ops:  # queued since this round trip began: not in Redis yet
            if op is None:
                shared.pop(name, None)
            elif op > shared.get(name, 0.0):
                shared[name] = op
        self._set_remote(RemoteView(now, keys, loads), shared)
        self.replicas = live


def _merge(keys: dict[Key, Remote], entries: list[Any], factor: float) -> None:
    for entry in entries:
        backend, model_id, in_flight, retry_at, hr_at, hr, vec = entry[:7]
        if len(vec) != WIDTH:
            continue
        est = Estimates.from_list(entry[7]) if len(entry) > 7 else None
        stuck = float(entry[8]) if len(entry) > 8 and entry[8] is not None else None
        key = (str(backend), str(model_id))
        part = keys.get(key)
        if part is None:
            part = keys[key] = Remote([0.0] * WIDTH)
        acc = part.vec
        for i, x in enumerate(vec):
            acc[i] += x * factor
        part.in_flight += int(in_flight)
        if hr is not None and hr_at is not None and (part.headroom_at is None or hr_at > part.headroom_at):
            part.headroom, part.headroom_at = Headroom(*hr), float(hr_at)
        if retry_at is not None and (part.retry_at is None or retry_at > part.retry_at):
            part.retry_at = float(retry_at)
        if est is not None:
            part.est = est if part.est is None else part.est.merge(est)
        if stuck is not None and (part.stuck_since is None or stuck < part.stuck_since):
            part.stuck_since = stuck


def _newest_loads(loads: dict[str, LoadSignal], shared: Any) -> None:
    """Adds one replica's load signals, keeping the newest per backend; skips what does not parse."""
    if not isinstance(shared, dict):
        return
    for backend, raw in shared.items():
        signal = LoadSignal.from_list(raw)
        if signal is not None and (backend not in loads or signal.at > loads[backend].at):
            loads[str(backend)] = signal


def _hr_list(hr: Headroom | None) -> list[float | int | None] | None:
    if hr is None:
        return None
    return [
        hr.requests_remaining,
        hr.requests_limit,
        hr.requests_reset_s,
        hr.tokens_remaining,
        hr.tokens_limit,
        hr.tokens_reset_s,
        hr.retry_after_s,
    ]
