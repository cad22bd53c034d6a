"""Stored responses for the Responses API: `store`, `previous_response_id`, GET/DELETE and input_items.

A stored response is one blob: its owner (the principal's label), the Response object, this turn's input
items and every item of the conversation before them. Continuing from it is one read, so the next turn may
go to any backend and any replica. Two backends behind one Protocol, like the telemetry store: Redis when
ROUTEWAY_REDIS_URL is set (shared by replicas, expired by Redis), else an in-process dict with the same TTL
and a byte budget. Only the owner may read, list, continue or delete; to anyone else a response does not
exist (404, never 403: ids are not confirmed to strangers).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import orjson

from gateway.errors import BadRequest, NotFound, ServiceUnavailable
from gateway.frontdoors.responses_request import Item
from gateway.settings import Settings
from gateway.telemetry import redis_client

log = logging.getLogger("routeway.responses")

MAX_ID_CHARS = 128
_MAX_LIMIT = 100


class ResponseStore(Protocol):
    """Blobs by response id, each kept for the store's TTL; failures raise, absence is None/False."""

    async def put(self, rid: str, blob: bytes) -> None: ...

    async def get(self, rid: str) -> bytes | None: ...

    async def delete(self, rid: str) -> bool: ...

    async def start(self) -> None: ...

    async def close(self) -> None: ...


class MemoryResponses:
    """The embedded store: oldest first out when past `max_bytes`, each entry gone after `ttl_s`."""

    def __init__(self, ttl_s: float, max_bytes: int, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._ttl, self._max, self._clock = ttl_s, max_bytes, clock
        self._entries: OrderedDict[str, tuple[float, bytes]] = OrderedDict()  # in expiry order (one TTL)
        self._bytes = 0

    async def put(self, rid: str, blob: bytes) -> None:
        self._drop(rid)
        self._entries[rid] = (self._clock() + self._ttl, blob)
        self._bytes += len(blob)
        self._evict()

    async def get(self, rid: str) -> bytes | None:
        self._evict()
        entry = self._entries.get(rid)
        return entry[1] if entry is not None else None

    async def delete(self, rid: str) -> bool:
        return self._drop(rid)

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None

    def _drop(self, rid: str) -> bool:
        entry = self._entries.pop(rid, None)
        if entry is None:
            return False
        self._bytes -= len(entry[1])
        return True

    def _evict(self) -> None:
        now = self._clock()
        while self._entries:
            rid, (expires, _) = next(iter(self._entries.items()))
            if expires > now and self._bytes <= self._max:
                break
            self._drop(rid)


class RedisResponses:
    """Stored responses in Redis (one server or a Cluster): SET with PX, GET, DEL; one key each."""

    def __init__(
        self, url: str, ttl_s: float, *, prefix: str, timeout_s: float, cluster: bool = False
    ) -> None:
        self._url, self._cluster, self._timeout = url, cluster, timeout_s
        self._ttl_ms = max(1, int(ttl_s * 1000))
        self._prefix = prefix
        self._redis: redis_client.Client | None = None

    async def start(self) -> None:
        if self._redis is None:
            self._redis = redis_client.connect(self._url, self._timeout, self._cluster)

    async def close(self) -> None:
        client, self._redis = self._redis, None
        await redis_client.close(client)

    async def put(self, rid: str, blob: bytes) -> None:
        await self._call(lambda r: r.set(self._key(rid), blob, px=self._ttl_ms))

    async def get(self, rid: str) -> bytes | None:
        value = await self._call(lambda r: r.get(self._key(rid)))
        return value if isinstance(value, bytes) else None

    async def delete(self, rid: str) -> bool:
        return bool(await self._call(lambda r: r.delete(self._key(rid))))

    def _key(self, rid: str) -> str:
        return f"{self._prefix}:{rid}"

    async def _call(self, op: Callable[[Any], Any]) -> Any:
        if self._redis is None:
            await self.start()
        assert self._redis is not None
        try:
            await redis_client.discover(self._redis, refresh=False)
            async with asyncio.timeout(self._timeout * 2):
                return await op(self._redis)
        except redis_client.FAILURES as exc:
            log.warning("response store: Redis failed (%s)", type(exc).__name__)
            raise ServiceUnavailable("The response store is unavailable; try again shortly") from None


@dataclass(slots=True)
class StoredResponse:
    owner: str
    response: dict[str, Any]
    items: list[Item]  # this turn's input items
    history: list[Item]  # every item of the conversation before them

    def context(self) -> list[Item]:
        """What the next turn starts from: the conversation so far, this turn's input and output."""
        return [*self.history, *self.items, *self.response.get("output", ())]

    def encode(self) -> bytes:
        return orjson.dumps(
            {"owner": self.owner, "response": self.response, "items": self.items, "history": self.history}
        )

    @classmethod
    def decode(cls, blob: bytes) -> StoredResponse | None:
        try:
            doc = orjson.loads(blob)
            return cls(str(doc["owner"]), doc["response"], list(doc["items"]), list(doc["history"]))
        except (orjson.JSONDecodeError, KeyError, TypeError):
            return None  # a damaged or foreign blob: as if it had expired


class Conversations:
    """The owner rule and the paging on top of a ResponseStore."""

    def __init__(self, store: ResponseStore, max_record_bytes: int) -> None:
        self.store = store
        self.max_record_bytes = max_record_bytes

    async def load(self, owner: str, rid: str) -> StoredResponse:
        _check_id(rid)
        blob = await self.store.get(rid)
        found = StoredResponse.decode(blob) if blob is not None else None
        if found is None or found.owner != owner:
            raise NotFound(f"No response found with id {rid!r}", param="response_id")
        return found

    def check_size(self, history: list[Item], items: list[Item]) -> None:
        """Refuse, before any upstream call, a conversation too large to store again."""
        size = len(orjson.dumps(history)) + len(orjson.dumps(items))
        if size > self.max_record_bytes:
            raise BadRequest(
                f"The conversation is {size} bytes, more than the {self.max_record_bytes} a stored response "
                "may hold: start a new conversation or pass store: false",
                param="previous_response_id",
                code="conversation_too_large",
            )

    async def save(self, record: StoredResponse) -> None:
        await self.store.put(str(record.response["id"]), record.encode())

    async def delete(self, owner: str, rid: str) -> dict[str, Any]:
        await self.load(owner, rid)
        await self.store.delete(rid)
        return {"id": rid, "object": "response", "deleted": True}

    async def input_items(
        self, owner: str, rid: str, *, limit: int = 20, order: str = "desc", after: str | None = None
    ) -> dict[str, Any]:
        """`GET /v1/responses/{id}/input_items`: this turn's input items, a page at a time."""
        if not 1 <= limit <= _MAX_LIMIT:
            raise BadRequest(f"'limit' must be between 1 and {_MAX_LIMIT}", param="limit")
        if order not in ("asc", "desc"):
            raise BadRequest("'order' must be asc or desc", param="order")
        items = list((await self.load(owner, rid)).items)
        if order == "desc":
            items.reverse()
        if after is not None:
            ids = [item.get("id") for item in items]
            if after not in ids:
                raise BadRequest(f"No input item with id {after!r} in this response", param="after")
            items = items[ids.index(after) + 1 :]
        page = items[:limit]
        return {
            "object": "list",
            "data": page,
            "has_more": len(items) > limit,
            "first_id": page[0]["id"] if page else "",
            "last_id": page[-1]["id"] if page else "",
        }


def _check_id(rid: str) -> None:
    if not (0 < len(rid) <= MAX_ID_CHARS and rid.isascii() and rid.isprintable()):
        raise NotFound("No response found with that id", param="response_id")


def in_memory() -> Conversations:
    """The embedded store with the default TTL and budgets (what a Runtime built by hand gets)."""
    defaults = Settings.model_construct()
    store = MemoryResponses(defaults.responses_ttl_s, defaults.responses_memory_max_bytes)
    return Conversations(store, defaults.responses_max_record_bytes)


def from_settings(settings: Settings) -> Conversations:
    """Redis when the process has a Redis URL (replicas share conversations), else the embedded store."""
    store: ResponseStore
    if settings.redis_url:
        store = RedisResponses(
            settings.redis_url,
            settings.responses_ttl_s,
            prefix=settings.responses_redis_prefix,
            timeout_s=settings.responses_store_timeout_ms / 1000,
            cluster=settings.redis_cluster,
        )
    else:
        store = MemoryResponses(settings.responses_ttl_s, settings.responses_memory_max_bytes)
    return Conversations(store, settings.responses_max_record_bytes)
