"""Virtual keys: the record a key store holds (never the key itself), new secrets, and their hashes."""

from __future__ import annotations

import fnmatch
import hashlib
import secrets
import time
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import orjson

# Every virtual key starts with this, so a token can be told apart from a static key without a lookup
# (an admin route refuses it as a client key; open mode does not treat it as anonymous).
PREFIX = "rwk-"
_SECRET_BYTES = 32  # 256 random bits: a plain SHA-256 is a safe store of them (no password stretching)


def new_secret() -> str:
    return PREFIX + secrets.token_urlsafe(_SECRET_BYTES)


def new_id() -> str:
    return "vk_" + secrets.token_hex(6)


def digest(token: str | bytes) -> str:
    """What the store keeps and looks keys up by: the SHA-256 of the whole key, hex."""
    raw = token.encode() if isinstance(token, str) else token
    return hashlib.sha256(raw).hexdigest()


def looks_virtual(token: bytes | None) -> bool:
    return token is not None and token.startswith(PREFIX.encode())


@dataclass(frozen=True, slots=True)
class Limits:
    """A key's limits; None means none of that kind. Budgets are US dollars per UTC day / month."""

    rpm: int | None = None
    tpm: int | None = None
    daily_usd: float | None = None
    monthly_usd: float | None = None

    def any(self) -> bool:
        return any(v is not None for v in (self.rpm, self.tpm, self.daily_usd, self.monthly_usd))


@dataclass(frozen=True, slots=True)
class VirtualKey:
    """One virtual key as stored: its id, the hash of its secret, who it is for and what it may do."""

    id: str
    name: str
    hash: str = field(repr=False)
    hint: str  # the key's first characters, so a person can tell their keys apart in a list
    team: str = "default"
    models: tuple[str, ...] = ()  # globs over the requested model; empty: any model
    limits: Limits = Limits()
    expires_at: float | None = None  # epoch seconds
    created_at: float = 0.0
    revoked_at: float | None = None

    def allows(self, model: str) -> bool:
        return not self.models or any(fnmatch.fnmatchcase(model, g) for g in self.models)

    def expired(self, now: float) -> bool:
        return self.expires_at is not None and now >= self.expires_at

    def usable(self, now: float) -> bool:
        return self.revoked_at is None and not self.expired(now)

    def public(self) -> dict[str, Any]:
        """The key as the admin API and the CLI show it: everything but its hash."""
        doc = asdict(self)
        del doc["hash"]
        doc["models"] = list(self.models)
        doc["status"] = "revoked" if self.revoked_at is not None else _status(self, time.time())
        return doc

    def encode(self) -> bytes:
        return orjson.dumps(asdict(self))

    @classmethod
    def decode(cls, raw: bytes | str) -> VirtualKey:
        doc = orjson.loads(raw)
        limits = Limits(**doc.pop("limits", {}))
        doc["models"] = tuple(doc.get("models", ()))
        return cls(limits=limits, **doc)

    def rotated(self, hash_: str, hint: str) -> VirtualKey:
        return replace(self, hash=hash_, hint=hint)


def _status(key: VirtualKey, now: float) -> str:
    return "expired" if key.expired(now) else "active"


def create(
    name: str,
    *,
    team: str = "default",
    models: tuple[str, ...] = (),
    limits: Limits = Limits(),
    expires_at: float | None = None,
    now: float | None = None,
) -> tuple[VirtualKey, str]:
    """A new key record and its secret; the secret is shown once and never stored."""
    secret = new_secret()
    key = VirtualKey(
        id=new_id(),
        name=name,
        hash=digest(secret),
        hint=secret[: len(PREFIX) + 4],
        team=team,
        models=models,
        limits=limits,
        expires_at=expires_at,
        created_at=time.time() if now is None else now,
    )
    return key, secret
