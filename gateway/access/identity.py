"""The client principal of a /v1 call: a static key, a virtual key (looked up, cached briefly), or anonymous.

A virtual key's record is cached in-process for at most `cache_s` (< 5 s), so a revocation written on one
replica stops the key on every replica within that bound while a busy key costs no store round trip. Lookups
of the same unseen key share one round trip; unknown keys are cached too (a flood of bad keys stays local).
When the store is unreachable a cached record keeps serving (a revocation cannot be written meanwhile
either) and an unseen key gets a 503.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping

from gateway.access.keys import VirtualKey, digest, looks_virtual
from gateway.access.keystore import KeyStore, KeyStoreUnavailable
from gateway.access.principal import ANONYMOUS, Keys, Principal, bearer
from gateway.access.principal import client as static_client
from gateway.errors import AuthenticationFailed

log = logging.getLogger("routeway.keys")

_MAX_CACHED = 100_000  # entries; past it the cache starts over (bounded whatever callers send)


class Identity:
    """Static keys first (constant-time compare), then the virtual key store through the cache."""

    def __init__(
        self,
        keys: Keys,
        store: KeyStore | None,
        *,
        cache_s: float = 2.0,
        require_keys: bool = False,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.keys = keys
        self.store = store
        self.cache_s = cache_s
        self.require_keys = require_keys
        self._clock, self._wall = clock, wall
        self._cache: dict[str, tuple[VirtualKey | None, float]] = {}
        self._pending: dict[str, asyncio.Task[VirtualKey | None]] = {}
        self._down = False

    async def client(self, headers: Mapping[str, str]) -> Principal:
        token = bearer(headers)
        if self.store is None or not looks_virtual(token):
            if not self.keys.client:  # no static keys: the gateway runs open, unless keys are required
                if self.require_keys:
                    raise AuthenticationFailed("Missing or invalid API key in the Authorization header")
                return ANONYMOUS
            return static_client(self.keys, headers)
        assert token is not None
        key = await self.lookup(digest(token))
        if key is None:
            raise AuthenticationFailed("Invalid API key in the Authorization header")
        if key.revoked_at is not None:
            raise AuthenticationFailed("This API key has been revoked", code="key_revoked")
        if key.expired(self._wall()):
            raise AuthenticationFailed("This API key has expired", code="key_expired")
        return Principal("client", key.id, key)

    async def lookup(self, hash_: str) -> VirtualKey | None:
        cached = self._cache.get(hash_)
        if cached is not None and self._clock() - cached[1] < self.cache_s:
            return cached[0]
        task = self._pending.get(hash_)
        if task is None:
            # A task of its own: a caller that leaves does not cut short the lookup others wait for.
            task = asyncio.get_running_loop().create_task(self._fetch(hash_, cached))
            self._pending[hash_] = task
            task.add_done_callback(lambda t: self._done(hash_, t))
        return await asyncio.shield(task)

    def _done(self, hash_: str, task: asyncio.Task[VirtualKey | None]) -> None:
        self._pending.pop(hash_, None)
        if not task.cancelled():
            task.exception()  # retrieved: the waiters re-raise it; none left is not an "unretrieved" error

    async def _fetch(self, hash_: str, cached: tuple[VirtualKey | None, float] | None) -> VirtualKey | None:
        assert self.store is not None
        try:
            key = await self.store.by_hash(hash_)
        except KeyStoreUnavailable as exc:
            if not self._down:
                self._down = True
                log.warning("key store unreachable: serving cached keys only", extra={"error": exc.cause})
            if cached is not None:
                return cached[0]
            raise
        if self._down:
            self._down = False
            log.info("key store reachable again")
        if len(self._cache) >= _MAX_CACHED:
            self._cache.clear()
        self._cache[hash_] = (key, self._clock())
        return key

    def forget(self, hash_: str) -> None:
        """Drops one cached entry (this replica's own admin writes take effect at once here)."""
        self._cache.pop(hash_, None)
