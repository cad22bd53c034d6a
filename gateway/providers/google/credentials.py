"""Google OAuth access tokens from Application Default Credentials, fetched off the event loop and renewed in
the background before they expire: a request only reads the current token."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar, cast

import google.auth
import google.auth.credentials
import google.auth.transport.requests
import requests
from google.oauth2 import service_account

from gateway.providers.base import ProviderError, UpstreamRequest
from gateway.redact import scrub
from gateway.secret import Secret

log = logging.getLogger("routeway.credentials")

CLOUD_PLATFORM = "https://www.googleapis.com/auth/cloud-platform"
HTTP_TIMEOUT_S = 10.0  # one call to the token endpoint or the metadata server
MAX_TOKEN_RESPONSE_BYTES = 64 * 1024  # a token answer is a few hundred bytes
MAX_CREDENTIALS_FILE_BYTES = 1024 * 1024  # a key file is a few KiB
DEFAULT_LIFETIME_S = 3600.0  # credentials that report no expiry are renewed hourly anyway
START_WAIT_S = 15.0  # how long start() waits for the first token before serving without it
MIN_RENEW_S = 1.0  # a 401 does not renew a token fetched less than this ago (a storm of 401s: one fetch)
BACKOFF_S = (1.0, 2.0, 5.0, 10.0, 30.0)  # between failed fetches

T = TypeVar("T")
Loader = Callable[[], google.auth.credentials.Credentials]
Runner = Callable[[Callable[[], T]], Awaitable[T]]


def adc_loader(path: Path | None = None) -> Loader:
    """Application Default Credentials with the cloud-platform scope: the file at `path` (settings'
    GOOGLE_APPLICATION_CREDENTIALS: a service account, an authorized user or a workload identity
    federation config), else google-auth's own search (gcloud's ADC file, then the metadata server of
    GCE, GKE workload identity, Cloud Run)."""

    def load() -> google.auth.credentials.Credentials:
        if path is None:
            creds: google.auth.credentials.Credentials = google.auth.default(scopes=[CLOUD_PLATFORM])[0]
            return creds
        return _from_file(path)

    return load


def _from_file(path: Path) -> google.auth.credentials.Credentials:
    """A service account's key file by its own loader (google-auth deprecates the generic one for files it
    cannot vouch for); any other kind (authorized user, workload identity federation) by the generic one.
    google-auth's loaders and refresh are not annotated: the ignores in this module are for that only."""
    with path.open("rb") as file:
        raw = file.read(MAX_CREDENTIALS_FILE_BYTES + 1)
    if len(raw) > MAX_CREDENTIALS_FILE_BYTES:
        raise ValueError(f"{path} is larger than a credentials file")
    info = json.loads(raw)
    if isinstance(info, dict) and info.get("type") == "service_account":
        account = service_account.Credentials.from_service_account_info(info, scopes=[CLOUD_PLATFORM])  # type: ignore[no-untyped-call]
        return cast(google.auth.credentials.Credentials, account)
    found = google.auth.load_credentials_from_file(str(path), scopes=[CLOUD_PLATFORM])  # type: ignore[no-untyped-call]
    return cast(google.auth.credentials.Credentials, found[0])


def refresh_in(lifetime_s: float) -> float:
    """Seconds after a fetch when the next one starts: a quarter of the lifetime before expiry, and never
    more than five minutes before (an hour-long token is renewed at 55 minutes)."""
    return max(0.0, lifetime_s - min(300.0, lifetime_s / 4))


def usable_for(lifetime_s: float) -> float:
    """Seconds after a fetch during which the token is sent: it must still be valid when the upstream reads
    it, so the last tenth of its life (at most 30 s) is not used."""
    return max(0.0, lifetime_s - min(30.0, lifetime_s / 10))


def backoff(failures: int) -> float:
    return BACKOFF_S[min(failures, len(BACKOFF_S)) - 1]


class _BoundedSession(requests.Session):
    """requests' session with every answer read to at most MAX_TOKEN_RESPONSE_BYTES (decompressed), no
    redirect followed (a signed assertion goes only where the credentials say), and no proxy or .netrc
    taken from the environment, as the upstream transport (upstream.py)."""

    def __init__(self) -> None:
        super().__init__()
        self.trust_env = False

    def request(self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any) -> requests.Response:
        kwargs["stream"] = True
        kwargs["allow_redirects"] = False
        response = super().request(method, url, *args, **kwargs)
        with response:
            data = response.raw.read(MAX_TOKEN_RESPONSE_BYTES + 1, decode_content=True)
        if len(data) > MAX_TOKEN_RESPONSE_BYTES:
            raise requests.exceptions.ContentDecodingError("token endpoint answer too large")
        response._content = data  # what .content, .text and .json() read
        return response


class _Request(google.auth.transport.requests.Request):
    """google-auth's requests transport with each call's timeout capped (its default is 120 s)."""

    def __call__(self, url: str, method: str = "GET", body: Any = None, headers: Any = None,
                 timeout: float | None = None, **kwargs: Any) -> Any:  # fmt: skip
        capped = HTTP_TIMEOUT_S if timeout is None else min(timeout, HTTP_TIMEOUT_S)
        return super().__call__(url, method, body, headers, capped, **kwargs)  # type: ignore[no-untyped-call]


@dataclass(frozen=True, slots=True)
class _Token:
    value: str
    lifetime_s: float
    quota_project: str | None


class GoogleCredentials:
    """A CredentialProvider (providers/credentials.py) for one Vertex backend.

    `start` fetches the first token and starts the loop that renews it `refresh_in` before expiry (and
    retries failed fetches with backoff while the current token is still good). google-auth's refresh is
    blocking HTTP, so each fetch runs in a thread; at most one at a time, shared by every caller. A request
    takes the fast path (`authorize_now`: a fresh token is set from memory); only when none is fresh does it
    await the fetch in flight. `rejected` is called on a 401: the token is dropped and renewed at once."""

    def __init__(
        self,
        backend: str,
        load: Loader,
        *,
        clock: Callable[[], float] = time.monotonic,
        run: Runner[_Token] | None = None,
        min_renew_s: float = MIN_RENEW_S,
    ) -> None:
        self.backend = backend
        self._load = load
        self._clock = clock
        self._run: Runner[_Token] = run or asyncio.to_thread
        self._min_renew_s = min_renew_s
        self._creds: google.auth.credentials.Credentials | None = None
        self._lock = threading.Lock()  # a fetch abandoned by its caller may still run in its thread
        self._session = _BoundedSession()
        self._http = _Request(self._session)
        self._secret: Secret | None = None
        self._header: str | None = None
        self._quota: str | None = None
        self._fresh_until = -math.inf
        self._next_at = -math.inf
        self._fetched_at = -math.inf
        self._failures = 0
        self._retry_at = -math.inf
        self._inflight: asyncio.Future[None] | None = None
        self._loop: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self.fetches = 0  # tokens fetched: explain-free evidence for tests and operators

    @property
    def secret(self) -> Secret | None:
        return self._secret

    def authorize_now(self, request: UpstreamRequest) -> bool:
        if self._header is None or self._clock() >= self._fresh_until:
            return False
        request.headers["authorization"] = self._header
        if self._quota is not None:
            request.headers["x-goog-user-project"] = self._quota  # bills a user credential's quota project
        return True

    async def authorize(self, request: UpstreamRequest) -> UpstreamRequest:
        if self.authorize_now(request):
            return request
        if self._failures and self._clock() < self._retry_at:
            raise ProviderError(
                "auth", "no Google access token (the last fetch failed)", backend=self.backend
            )
        async with asyncio.timeout(START_WAIT_S):
            await self.refresh()
        if not self.authorize_now(request):
            raise ProviderError("auth", "no fresh Google access token", backend=self.backend)
        return request

    async def start(self) -> None:
        if self._loop is None:
            self._loop = asyncio.get_running_loop().create_task(self._keep_fresh())
        # The loop fetches at once; serving may begin without a token (the backend then fails over), and
        # the loop logs and retries a failure.
        with contextlib.suppress(Exception):
            async with asyncio.timeout(START_WAIT_S):
                await self.refresh()

    async def refresh(self) -> None:
        """Fetches a token, or joins the fetch in flight; raises what the fetch raised."""
        fetch = self._inflight
        if fetch is None:
            fetch = self._inflight = asyncio.ensure_future(self._fetch())
        await asyncio.shield(fetch)

    def rejected(self) -> None:
        """The backend answered 401 to a token of ours: stop sending it and fetch another now, unless one is
        being fetched or was fetched less than `min_renew_s` ago (the 401 was for the token before it)."""
        now = self._clock()
        if self._inflight is not None or now - self._fetched_at < self._min_renew_s:
            return
        self._fresh_until = self._next_at = now
        self._wake.set()

    async def close(self) -> None:
        tasks = [t for t in (self._loop, self._inflight) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._loop = self._inflight = None
        self._session.close()  # its pooled connections; a fetch still in its thread fails and is dropped

    async def _keep_fresh(self) -> None:
        while True:
            self._wake.clear()
            wait = (self._retry_at if self._failures else self._next_at) - self._clock()
            if wait > 0:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(wait):
                        await self._wake.wait()
                continue
            try:
                await self.refresh()
            except Exception as exc:  # noqa: BLE001 - logged by type; retried after a backoff
                log.warning(
                    "google access token fetch failed; retrying in %.0fs",
                    backoff(self._failures),
                    extra={"backend": self.backend, "exc_type": type(exc).__name__,
                           "error": scrub(str(exc), self._secret, limit=200)},
                )  # fmt: skip

    async def _fetch(self) -> None:
        try:
            token = await self._run(self._fetch_blocking)
        except BaseException:
            self._failures += 1
            self._retry_at = self._clock() + backoff(self._failures)
            raise
        finally:
            self._inflight = None
        now = self._clock()
        self._secret = Secret(token.value)
        self._header = f"Bearer {token.value}"
        self._quota = token.quota_project
        self._fresh_until = now + usable_for(token.lifetime_s)
        self._next_at = now + max(self._min_renew_s, refresh_in(token.lifetime_s))  # never a busy loop
        self._fetched_at = now
        self._failures = 0
        self.fetches += 1
        self._wake.set()  # the loop waits for the new expiry

    def _fetch_blocking(self) -> _Token:
        """In a worker thread: load the credentials once, then refresh them (one HTTP call, or a few when
        google-auth retries a 5xx)."""
        with self._lock:
            if self._creds is None:
                self._creds = self._load()
            creds = self._creds
            creds.refresh(self._http)  # type: ignore[no-untyped-call]
            token = creds.token
            if not isinstance(token, str) or not token:
                raise ValueError("the credentials gave no access token")
            expiry = creds.expiry  # naive UTC, as google-auth keeps it
            now = datetime.now(UTC).replace(tzinfo=None)
            lifetime = (expiry - now).total_seconds() if isinstance(expiry, datetime) else DEFAULT_LIFETIME_S
            quota = getattr(creds, "quota_project_id", None)
            return _Token(token, max(0.0, lifetime), quota if isinstance(quota, str) and quota else None)

    def __repr__(self) -> str:
        return f"GoogleCredentials({self.backend!r}, token={'**********' if self._secret else None})"
