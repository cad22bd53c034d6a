"""SigV4 as a credential provider: credentials from the standard AWS chain, signed with botocore's signer
last on every attempt, refreshed in the background before they expire, never logged."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest

from gateway.providers.base import ProviderError, UpstreamRequest
from gateway.secret import Secret
from gateway.settings import aws_credentials

log = logging.getLogger("routeway.credentials")

# botocore refreshes by itself inside its advisory window (15 min before expiry); the background task asks
# it 14 minutes ahead, and the fast path stops signing with credentials 5 minutes from expiry.
_REFRESH_AHEAD_S = 14 * 60
_STALE_AHEAD_S = 5 * 60
_RETRY_S = 30.0  # after a failed background refresh


def sign(request: UpstreamRequest, frozen: Any, service: str, region: str) -> None:
    """Adds SigV4's headers for the request as it will be sent (URL, headers so far, body bytes)."""
    aws = AWSRequest(method=request.method, url=request.url, data=request.body, headers=request.headers)
    SigV4Auth(frozen, service, region).add_auth(aws)
    request.headers["authorization"] = aws.headers["Authorization"]
    request.headers["x-amz-date"] = aws.headers["X-Amz-Date"]
    if frozen.token:
        request.headers["x-amz-security-token"] = frozen.token


class SigV4Credentials:
    """One backend's AWS credentials (service `bedrock` or `sagemaker`, one region).

    `authorize_now` signs while the credentials are fresh (no I/O: botocore's signer is HMACs); otherwise
    `authorize` fetches them in a thread first (the chain may call the instance metadata service or STS).
    Credentials without an expiry (keys in the environment or a profile) are fetched once."""

    __slots__ = (
        "service",
        "region",
        "_load",
        "_clock",
        "_source",
        "_frozen",
        "_secret",
        "_stale_at",
        "_task",
        "_lock",
    )

    def __init__(
        self,
        service: str,
        region: str,
        load: Callable[[], Any] = aws_credentials,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.service = service
        self.region = region
        self._load = load
        self._clock = clock
        self._source: Any = None  # botocore Credentials (maybe refreshable), held once found
        self._frozen: Any = None  # ReadOnlyCredentials: access key, secret key, token
        self._secret: Secret | None = None
        self._stale_at = 0.0
        self._task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()

    @property
    def secret(self) -> Secret | None:
        return self._secret

    def authorize_now(self, request: UpstreamRequest) -> bool:
        if self._frozen is None or self._clock() >= self._stale_at:
            return False
        sign(request, self._frozen, self.service, self.region)
        return True

    async def authorize(self, request: UpstreamRequest) -> UpstreamRequest:
        if self._frozen is None or self._clock() >= self._stale_at:
            await self.refresh()
        if self._frozen is None:
            raise ProviderError("auth", "no AWS credentials found in the standard chain")
        sign(request, self._frozen, self.service, self.region)
        return request

    async def start(self) -> None:
        try:
            await self.refresh()
        except Exception as exc:  # noqa: BLE001 - the first request retries; named by type only
            log.warning("AWS credentials unavailable at start", extra={"exc_type": type(exc).__name__})
        if self._task is None:
            self._task = asyncio.create_task(self._keep_fresh(), name=f"sigv4-refresh-{self.service}")

    async def refresh(self, *, force: bool = False) -> None:
        """Fetches (or has botocore renew) the credentials; without `force`, only when they are stale."""
        async with self._lock:
            if not force and self._frozen is not None and self._clock() < self._stale_at:
                return  # another caller refreshed while this one waited
            frozen, expiry = await asyncio.to_thread(self._fetch)
            self._frozen = frozen
            self._secret = Secret(frozen.secret_key) if frozen is not None else None
            self._stale_at = float("inf") if expiry is None else expiry - _STALE_AHEAD_S

    def _fetch(self) -> tuple[Any, float | None]:
        if self._source is None:
            self._source = self._load()
        if self._source is None:
            return None, None
        frozen = self._source.get_frozen_credentials()  # a refreshable one renews itself when due
        expiry = getattr(self._source, "_expiry_time", None)  # RefreshableCredentials only
        return frozen, expiry.timestamp() if isinstance(expiry, datetime) else None

    def next_refresh_in(self) -> float | None:
        """Seconds until the background refresh, None when the credentials never expire."""
        if self._frozen is None:
            return _RETRY_S
        if self._stale_at == float("inf"):
            return None
        remaining = self._stale_at + _STALE_AHEAD_S - _REFRESH_AHEAD_S - self._clock()
        return remaining if remaining > 0 else _RETRY_S  # overdue: botocore kept the old ones; try again

    async def _keep_fresh(self) -> None:
        while (wait := self.next_refresh_in()) is not None:
            await asyncio.sleep(wait)
            try:
                await self.refresh(force=True)
            except Exception as exc:  # noqa: BLE001 - keep trying; requests fall back to authorize()
                log.warning("AWS credential refresh failed", extra={"exc_type": type(exc).__name__})

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def __repr__(self) -> str:
        return f"SigV4Credentials({self.service}, {self.region})"
