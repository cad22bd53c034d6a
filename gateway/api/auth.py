"""Who may call what: client keys for the /v1 routes, the admin key for /admin/*, compared as bytes."""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from dataclasses import dataclass

from gateway.errors import AuthenticationFailed, PermissionDenied
from gateway.exposure import is_loopback
from gateway.settings import Settings


@dataclass(frozen=True, slots=True)
class Keys:
    """The configured keys, encoded once so that a request only compares bytes."""

    client: tuple[bytes, ...]
    admin: bytes | None
    # No key of any kind and a loopback address: the admin routes are as open as the others.
    open_admin: bool

    @classmethod
    def from_settings(cls, settings: Settings) -> Keys:
        client = tuple(sorted(k.encode() for k in settings.client_keys()))
        admin = settings.admin_key.strip().encode() or None
        return cls(client, admin, not client and admin is None and is_loopback(settings.host))


def bearer(headers: Mapping[str, str]) -> bytes | None:
    """The Bearer token, or None when absent or not printable ASCII (no key can match those)."""
    scheme, _, token = headers.get("authorization", "").partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token or not token.isascii() or not token.isprintable():
        return None
    return token.encode("ascii")


def _matches(token: bytes, keys: tuple[bytes, ...]) -> bool:
    found = False
    for key in keys:  # every key compared: which one matched is not timed either
        found |= hmac.compare_digest(token, key)
    return found


def check_client(keys: Keys, headers: Mapping[str, str]) -> None:
    if not keys.client:
        return
    token = bearer(headers)
    if token is None or not _matches(token, keys.client):
        raise AuthenticationFailed("Missing or invalid API key in the Authorization header")


def check_admin(keys: Keys, headers: Mapping[str, str]) -> None:
    if keys.admin is None:
        if keys.open_admin:
            return
        raise PermissionDenied(
            "The admin routes are disabled: set ROUTEWAY_ADMIN_KEY and send it as "
            "'Authorization: Bearer <admin key>'"
        )
    token = bearer(headers)
    if token is not None and hmac.compare_digest(token, keys.admin):
        return
    if token is not None and _matches(token, keys.client):
        raise PermissionDenied("A client key cannot call the admin routes: use the admin key")
    raise AuthenticationFailed("Missing or invalid admin key in the Authorization header")
