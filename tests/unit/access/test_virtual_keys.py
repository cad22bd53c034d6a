"""Pure parts of tenancy: key records, the lookup cache's revocation bound, periods, the local limiter."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.access import keys as vkeys
from gateway.access.identity import Identity
from gateway.access.keyadmin import expiry_epoch, parse_spec
from gateway.access.keys import Limits, VirtualKey
from gateway.access.keystore import KeyStoreUnavailable
from gateway.access.ledger import LedgerRangeError, days
from gateway.access.limits import NANO, LocalLimiter, Periods
from gateway.access.principal import ADMIN, Keys
from gateway.access.principal import admin as check_admin
from gateway.errors import AuthenticationFailed, BadRequest, BudgetExceeded, PermissionDenied, RateLimited
from gateway.settings import Settings


class DictStore:
    """An in-memory key store (the real ones are exercised over Redis and SQLite in integration tests)."""

    def __init__(self) -> None:
        self.by_id: dict[str, VirtualKey] = {}
        self.lookups = 0
        self.down = False

    async def start(self) -> None: ...
    async def close(self) -> None: ...

    async def by_hash(self, hash_: str) -> VirtualKey | None:
        self.lookups += 1
        if self.down:
            raise KeyStoreUnavailable("down")
        return next((k for k in self.by_id.values() if k.hash == hash_), None)

    async def get(self, key_id: str) -> VirtualKey | None:
        return self.by_id.get(key_id)

    async def put(self, key: VirtualKey, old_hash: str | None = None) -> None:
        self.by_id[key.id] = key

    async def all(self) -> list[VirtualKey]:
        return list(self.by_id.values())


def test_a_record_round_trips_and_never_holds_its_secret() -> None:
    key, secret = vkeys.create("n", team="t", models=("gpt-*",), limits=Limits(rpm=3, daily_usd=1.5))
    assert secret.startswith(vkeys.PREFIX) and len(secret) > 40
    assert VirtualKey.decode(key.encode()) == key
    assert secret.encode() not in key.encode() and key.hash == vkeys.digest(secret)
    assert "hash" not in key.public() and "hash=" not in repr(key)


@given(st.text(min_size=1, max_size=30))
def test_globs_match_case_sensitively_and_empty_means_any(model: str) -> None:
    assert VirtualKey("i", "n", "h", "x").allows(model)
    only = VirtualKey("i", "n", "h", "x", models=("gpt-4*", "llama-?"))
    assert only.allows(model) == (
        model.startswith("gpt-4") or (model.startswith("llama-") and len(model) == 7)
    )


def headers(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


def test_a_revoked_key_stops_within_the_cache_bound() -> None:
    store = DictStore()
    now = [0.0]
    identity = Identity(Keys.from_settings(Settings()), store, cache_s=2.0, clock=lambda: now[0])
    key, secret = vkeys.create("n")
    store.by_id[key.id] = key

    async def run() -> None:
        assert (await identity.client(headers(secret))).key == key
        await asyncio.gather(*(identity.client(headers(secret)) for _ in range(10)))
        assert store.lookups == 1  # cached
        store.by_id[key.id] = VirtualKey.decode(
            key.encode().replace(b'"revoked_at":null', b'"revoked_at":5.0')
        )
        now[0] = 1.9
        await identity.client(headers(secret))  # still cached: within the bound
        now[0] = 2.0
        with pytest.raises(AuthenticationFailed) as info:
            await identity.client(headers(secret))
        assert info.value.code == "key_revoked"

    asyncio.run(run())


def test_store_down_serves_cached_keys_and_503s_unseen_ones() -> None:
    store = DictStore()
    now = [0.0]
    identity = Identity(Keys.from_settings(Settings()), store, cache_s=1.0, clock=lambda: now[0])
    key, secret = vkeys.create("n")
    store.by_id[key.id] = key

    async def run() -> None:
        await identity.client(headers(secret))
        store.down, now[0] = True, 10.0
        assert (await identity.client(headers(secret))).key == key  # stale, but the store cannot say
        with pytest.raises(KeyStoreUnavailable) as info:
            await identity.client(headers(vkeys.new_secret()))
        assert info.value.status == 503

    asyncio.run(run())


def test_open_mode_stays_open_for_other_tokens_but_not_for_bad_virtual_keys() -> None:
    identity = Identity(Keys.from_settings(Settings()), DictStore())
    closed = Identity(Keys.from_settings(Settings()), DictStore(), require_keys=True)

    async def run() -> None:
        assert (await identity.client({})).kind == "anonymous"
        assert (await identity.client(headers("whatever"))).kind == "anonymous"
        with pytest.raises(AuthenticationFailed):
            await identity.client(headers(vkeys.new_secret()))
        with pytest.raises(AuthenticationFailed):
            await closed.client({})

    asyncio.run(run())


def test_a_virtual_key_on_an_admin_route_is_403() -> None:
    keys = Keys.from_settings(Settings(admin_key="rw-admin"))
    with pytest.raises(PermissionDenied):
        check_admin(keys, headers(vkeys.new_secret()))
    assert check_admin(keys, headers("rw-admin")) == ADMIN


def test_periods_and_their_resets() -> None:
    p = Periods.at(datetime(2026, 12, 31, 23, 59, 30, tzinfo=UTC).timestamp())
    assert (p.day, p.month) == ("20261231", "202612")
    assert p.minute_left_s == pytest.approx(30) and p.day_left_s == pytest.approx(30)
    assert p.month_left_s == pytest.approx(30)
    feb = Periods.at(datetime(2028, 2, 28, 0, 0, tzinfo=UTC).timestamp())  # a leap year
    assert feb.month_left_s == pytest.approx(2 * 86400)


def test_local_limiter_reserves_then_reconciles() -> None:
    lim = LocalLimiter()
    key = VirtualKey("vk_1", "n", "h", "x", limits=Limits(rpm=3, daily_usd=1.0))
    p = Periods.at(datetime(2026, 5, 1, 12, tzinfo=UTC).timestamp())

    async def run() -> None:
        res = await lim.admit(key, "a", 10, NANO // 2, p)
        with pytest.raises(BudgetExceeded):
            await lim.admit(key, "b", 10, NANO // 2 + 1, p)
        await lim.settle(key, res, 10, NANO // 4, None)  # it cost a quarter
        await lim.admit(key, "b", 10, NANO // 2 + 1, p)
        await lim.admit(key, "c", 1, 0, p)  # the third request this minute
        with pytest.raises(RateLimited) as info:
            await lim.admit(key, "d", 1, 0, p)
        assert "RPM" in info.value.message and not isinstance(info.value, BudgetExceeded)
        await lim.settle(key, res, 10, NANO // 4, None)  # twice: no effect

    asyncio.run(run())


def test_the_fallback_share_rounds_down_but_admits_at_least_one() -> None:
    lim = LocalLimiter()
    key = VirtualKey("vk_1", "n", "h", "x", limits=Limits(rpm=5))
    p = Periods.at(0)
    admitted = 0
    for i in range(5):
        try:
            lim.take(key, f"r{i}", 1, 0, p, share=1 / 3)
            admitted += 1
        except RateLimited:
            pass
    assert admitted == 1


def test_usage_ranges() -> None:
    today = datetime(2026, 3, 2, tzinfo=UTC).date()
    assert days("2026-02-27", "2026-03-01", today) == ["20260227", "20260228", "20260301"]
    assert len(days(None, None, today)) == 30
    for bad in (("2026-03-02", "2026-03-01"), ("x", None), ("2024-01-01", "2026-01-01")):
        with pytest.raises(LedgerRangeError):
            days(*bad, today)


def test_key_specs() -> None:
    assert expiry_epoch("2027-01-31") == datetime(2027, 1, 31, tzinfo=UTC).timestamp()
    assert expiry_epoch("2027-01-31T10:00:00+02:00") == datetime(2027, 1, 31, 8, tzinfo=UTC).timestamp()
    assert parse_spec({"name": "a", "models": ["x*"], "rpm": 5}).rpm == 5
    for bad in ({"name": "a", "tpm": -1}, {"name": "a\n"}, {"name": "a", "expires": "tomorrow"}, []):
        with pytest.raises(BadRequest):
            parse_spec(bad)
