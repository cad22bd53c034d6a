"""Who is calling: the principal a key resolves to (client keys for /v1, the admin key for /admin)."""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from gateway.access.keys import VirtualKey, looks_virtual
from gateway.errors import AuthenticationFailed, PermissionDenied
from gateway.exposure import is_loopback
from gateway.settings import Settings

PrincipalKind = Literal["client", "admin", "anonymous"]


@dataclass(frozen=True, slots=True)
class Principal:
    """A caller as guards, logs and the dashboard see it: a label, never the key itself.

    A client key is named by its 1-based position in ROUTEWAY_API_KEYS (`key-2`), so an operator can tell
    callers apart without any log or answer holding a key. A virtual key's principal is labelled with the
    key's id and carries its record (team, models, limits) for the guards."""

    kind: PrincipalKind
    label: str
    key: VirtualKey | None = None

    @property
    def team(self) -> str | None:
        return self.key.team if self.key is not None else None


ANONYMOUS = Principal("anonymous", "anonymous")  # the gateway runs open: no client keys configured
ADMIN = Principal("admin", "admin")


@dataclass(frozen=True, slots=True)
class Keys:
    """The configured keys, encoded once so that a request only compares bytes, each with its principal."""

    client: tuple[bytes, ...] = field(repr=False)
    admin: bytes | None = field(repr=False)
    # No key of any kind and a loopback address: the admin routes are as open as the others.
    open_admin: bool
    principals: tuple[Principal, ...] = ()  # principals[i] is client[i]'s

    @classmethod
    def from_settings(cls, settings: Settings) -> Keys:
        # In the operator's order (duplicates dropped), so that `key-N` names the N-th key they listed.
        ordered = dict.fromkeys(k.strip() for k in settings.api_keys.split(",") if k.strip())
        client = tuple(k.encode() for k in ordered)
        admin = settings.admin_key.strip().encode() or None
        principals = tuple(Principal("client", f"key-{i}") for i in range(1, len(client) + 1))
        return cls(client, admin, not client and admin is None and is_loopback(settings.host), principals)


def bearer(headers: Mapping[str, str]) -> bytes | None:
    """The Bearer token, or None when absent or not printable ASCII (no key can match those)."""
    scheme, _, token = headers.get("authorization", "").partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token or not token.isascii() or not token.isprintable():
        return None
    return token.encode("ascii")


def x_api_key(headers: Mapping[str, str]) -> bytes | None:
    """The key of an `x-api-key` header (Anthropic's SDKs send the key there), under the same rules."""
    token = headers.get("x-api-key", "").strip()
    if not token or not token.isascii() or not token.isprintable():
        return None
    return token.encode("ascii")


def _match(token: bytes, keys: tuple[bytes, ...]) -> int:
    """The index of the key that matches, or -1; every key is compared, so which one matched is not timed."""
    found = -1
    for i, key in enumerate(keys):
        if hmac.compare_digest(token, key):
            found = i
    return found


def client(keys: Keys, headers: Mapping[str, str]) -> Principal:
    """The caller of a /v1 route: the client key's principal, or anonymous when the gateway runs open."""
    if not keys.client:
        return ANONYMOUS
    token = bearer(headers) or x_api_key(headers)
    found = _match(token, keys.client) if token is not None else -1
    if found < 0:
        raise AuthenticationFailed("Missing or invalid API key in the Authorization (or x-api-key) header")
    return keys.principals[found]


def admin(keys: Keys, headers: Mapping[str, str]) -> Principal:
    """The caller of an /admin route: only the admin key (or anyone on loopback when no key exists at all)."""
    if keys.admin is None:
        if keys.open_admin:
            return ANONYMOUS
        raise PermissionDenied(
            "The admin routes are disabled: set ROUTEWAY_ADMIN_KEY and send it as "
            "'Authorization: Bearer <admin key>'"
        )
    token = bearer(headers)
    if token is not None and hmac.compare_digest(token, keys.admin):
        return ADMIN
    if token is not None and (looks_virtual(token) or _match(token, keys.client) >= 0):
        raise PermissionDenied("A client key cannot call the admin routes: use the admin key")
    raise AuthenticationFailed("Missing or invalid admin key in the Authorization header")
