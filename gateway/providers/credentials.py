"""Backend credentials as providers, and the authorize step that signs each attempt's request last."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from gateway.providers.base import ProviderError, Target, UpstreamRequest
from gateway.secret import Secret

if TYPE_CHECKING:
    from gateway.policy.model import Backend

log = logging.getLogger("routeway.credentials")


class CredentialProvider(Protocol):
    """How one backend's requests are authorized; one instance per backend, held by the runtime.

    `authorize` runs once per attempt, after the adapter built the request and after the observers added
    their headers (`traceparent`), so it sees the final URL, headers and body bytes: SigV4 signs them,
    an OAuth provider sets its current token, a static key sets one header. `authorize_now` is the fast
    path: it authorizes in place and returns True when it needs no I/O (a static key, a token that is
    still fresh); on False the caller awaits `authorize`. A failure raises ProviderError("auth") so the
    router fails over. The runtime drives `start` (first fetch, background refresh), `refresh` (on demand)
    and `close`. `secret` is what to scrub from texts that leave the process (the current token)."""

    @property
    def secret(self) -> Secret | None: ...

    def authorize_now(self, request: UpstreamRequest) -> bool: ...

    async def authorize(self, request: UpstreamRequest) -> UpstreamRequest: ...

    async def start(self) -> None: ...

    async def refresh(self) -> None: ...

    async def close(self) -> None: ...


class StaticKey:
    """A key read once from the env var a policy names (`api_key_env`), sent as a Bearer token."""

    __slots__ = ("_secret", "_header")

    def __init__(self, secret: Secret) -> None:
        self._secret = secret
        # Built once, kept as a plain str in a slot (no __dict__; repr hidden below): one dict assignment
        # per attempt, without even a method call.
        self._header = f"Bearer {secret.reveal()}"

    @property
    def secret(self) -> Secret:
        return self._secret

    def authorize_now(self, request: UpstreamRequest) -> bool:
        request.headers["authorization"] = self._header
        return True

    async def authorize(self, request: UpstreamRequest) -> UpstreamRequest:
        self.authorize_now(request)
        return request

    async def start(self) -> None:
        """Nothing to fetch: the key was read with the policy."""

    async def refresh(self) -> None:
        """A static key does not expire; a new one arrives with a policy reload."""

    async def close(self) -> None:
        """Nothing held open."""

    def __repr__(self) -> str:
        return "StaticKey(**********)"


@runtime_checkable
class Renewable(Protocol):
    """A provider whose credential can be renewed (an OAuth token): told when the backend rejected it."""

    def rejected(self) -> None: ...


def renew_rejected(target: Target) -> bool:
    """After a 401: asks the target's credential to renew itself; False when it cannot (a static key)."""
    cred = target.credential
    if not isinstance(cred, Renewable):
        return False
    cred.rejected()
    return True


def providers_for(
    secrets: Mapping[str, Secret | None],
    backends: Mapping[str, Backend] | None = None,
    *,
    google_credentials: Path | None = None,
) -> dict[str, CredentialProvider]:
    """One provider per backend that has a credential; the only place that picks a provider's kind.
    A key named by `api_key_env` is a Bearer token (Bedrock API keys too); an AWS backend without one
    signs with SigV4 from the standard AWS credential chain; a vertex backend gets OAuth tokens from
    Application Default Credentials (`google_credentials`: settings' GOOGLE_APPLICATION_CREDENTIALS, else
    google-auth's own search)."""
    from gateway.providers.registry import sigv4_service, uses_google_adc  # late: imports every adapter

    out: dict[str, CredentialProvider] = {
        name: StaticKey(secret) for name, secret in secrets.items() if secret
    }
    for name, backend in (backends or {}).items():
        service = sigv4_service(backend.provider)
        if name not in out and service is not None and backend.region is not None:
            from gateway.providers.aws.sigv4 import SigV4Credentials  # late: imports botocore

            out[name] = SigV4Credentials(service, backend.region)
        elif uses_google_adc(backend.provider):
            from gateway.providers.google.credentials import GoogleCredentials, adc_loader  # google-auth

            out[name] = GoogleCredentials(name, adc_loader(google_credentials))
    return out


async def start_all(providers: Iterable[CredentialProvider]) -> None:
    await asyncio.gather(*(p.start() for p in providers))


async def close_all(providers: Iterable[CredentialProvider]) -> None:
    """Closes every provider; one that fails is logged and the others still close."""
    results = await asyncio.gather(*(p.close() for p in providers), return_exceptions=True)
    for result in results:
        if isinstance(result, Exception):
            log.warning("credential provider failed to close", extra={"exc_type": type(result).__name__})


def authorize_now(request: UpstreamRequest, target: Target) -> bool:
    """True when the request is ready to send (authorized in place, or the backend needs no credential)."""
    cred = target.credential
    return cred is None or cred.authorize_now(request)


async def authorize(request: UpstreamRequest, target: Target) -> UpstreamRequest:
    """The slow path: a provider that must fetch or refresh first. Any failure is an 'auth' failure of this
    backend (the next one is tried), named by type only: its text may hold a credential."""
    cred = target.credential
    assert cred is not None  # authorize_now answered True otherwise
    try:
        return await cred.authorize(request)
    except ProviderError:
        raise
    except Exception as exc:  # noqa: BLE001 - any provider bug or fetch error fails this backend over
        raise ProviderError(
            "auth", f"credentials unavailable ({type(exc).__name__})", backend=target.backend
        ) from None
