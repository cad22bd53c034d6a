"""Managing virtual keys, for the admin API and the CLI alike: create, list, show, revoke, rotate."""

from __future__ import annotations

import time
from dataclasses import replace
from datetime import UTC, date, datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError, field_validator

from gateway.access import keys as vkeys
from gateway.access.keys import Limits, VirtualKey
from gateway.access.keystore import KeyStore
from gateway.errors import BadRequest, NotFound

Label = Annotated[str, StringConstraints(min_length=1, max_length=128, pattern=r"^[\w.@:/ -]+$")]
Glob = Annotated[str, StringConstraints(min_length=1, max_length=256)]


class KeySpec(BaseModel):
    """What a new key is for and may do (the admin API's body, the CLI's options)."""

    model_config = ConfigDict(extra="forbid")

    name: Label
    team: Label = "default"
    models: list[Glob] = Field(default_factory=list, max_length=100)
    rpm: int | None = Field(default=None, gt=0)
    tpm: int | None = Field(default=None, gt=0)
    daily_budget: float | None = Field(default=None, gt=0, le=1e9)
    monthly_budget: float | None = Field(default=None, gt=0, le=1e9)
    expires: str | None = Field(default=None, max_length=64)

    @field_validator("expires")
    @classmethod
    def _expires(cls, value: str | None) -> str | None:
        if value is not None:
            expiry_epoch(value)
        return value


def expiry_epoch(value: str) -> float:
    """An ISO date (the key expires at its first second, UTC) or date-time (naive means UTC), as epoch s."""
    try:
        if len(value) == 10:
            return datetime.combine(date.fromisoformat(value), datetime.min.time(), UTC).timestamp()
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError("expires must be an ISO date (2027-01-31) or date-time") from None
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


def parse_spec(doc: object) -> KeySpec:
    try:
        return KeySpec.model_validate(doc)
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or None
        raise BadRequest(f"Invalid key: {where}: {first['msg']}", param=where) from None


async def create(store: KeyStore, spec: KeySpec) -> tuple[VirtualKey, str]:
    limits = Limits(spec.rpm, spec.tpm, spec.daily_budget, spec.monthly_budget)
    expires = expiry_epoch(spec.expires) if spec.expires else None
    key, secret = vkeys.create(
        spec.name, team=spec.team, models=tuple(spec.models), limits=limits, expires_at=expires
    )
    await store.put(key)
    return key, secret


async def get(store: KeyStore, key_id: str) -> VirtualKey:
    key = await store.get(key_id) if len(key_id) <= 64 else None
    if key is None:
        raise NotFound(f"No virtual key with id '{key_id[:64]}'", code="key_not_found")
    return key


async def revoke(store: KeyStore, key_id: str) -> VirtualKey:
    key = await get(store, key_id)
    if key.revoked_at is None:
        key = replace(key, revoked_at=time.time())
        await store.put(key, old_hash=key.hash)
    return key


async def rotate(store: KeyStore, key_id: str) -> tuple[VirtualKey, str, str]:
    """A new secret for the same key (same id, limits and spend); the old secret stops working.

    Returns the new record, the new secret and the old hash (to drop from a lookup cache)."""
    key = await get(store, key_id)
    if key.revoked_at is not None:
        raise BadRequest(f"The key '{key_id}' is revoked: create a new one", code="key_revoked")
    secret = vkeys.new_secret()
    rotated = key.rotated(vkeys.digest(secret), secret[: len(vkeys.PREFIX) + 4])
    await store.put(rotated, old_hash=key.hash)
    return rotated, secret, key.hash
