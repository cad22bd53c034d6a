"""MemoryStore on an injected clock: recording, in-flight counts, cooldowns, snapshot caching and merging."""

from __future__ import annotations

import asyncio

import pytest

from gateway.settings import Settings
from gateway.telemetry import MemoryStore, Sample, make_store
from gateway.telemetry.headroom import Headroom
from gateway.telemetry.redis_store import RedisStore
from gateway.telemetry.store import Remote, RemoteView
from gateway.telemetry.window import WIDTH, Window

KEY = ("groq", "llama-3.3-70b-versatile")
OTHER = ("nim", "meta/llama-3.3-70b-instruct")


class Clock:
    def __init__(self, now: float = 1_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def make() -> tuple[MemoryStore, Clock]:
    clock = Clock()
    return MemoryStore(30.0, clock=clock, max_age_s=0.25), clock


def test_record_and_decay() -> None:
    store, clock = make()
    assert store.snapshot().get(KEY) is None
    store.record(KEY, Sample("ok", ttft_s=0.2, duration_s=1.2, output_tokens=100))
    s = store.snapshot()[KEY]
    assert s.samples == pytest.approx(1.0)
    assert s.ttft_s == pytest.approx(0.2)
    assert s.tokens_per_s == pytest.approx(100.0)
    clock.now += 30.0
    assert store.snapshot()[KEY].samples == pytest.approx(0.5)


def test_in_flight_never_negative() -> None:
    store, _ = make()
    store.add_in_flight(KEY, 1)
    store.add_in_flight(KEY, 1)
    assert store.snapshot()[KEY].in_flight == 2
    for _ in range(3):
        store.add_in_flight(KEY, -1)
    s = store.snapshot()[KEY]
    assert s.in_flight == s.local_in_flight == 0


def test_snapshot_is_cached_until_something_changes() -> None:
    store, clock = make()
    store.record(KEY, Sample("ok"))
    store.record(OTHER, Sample("ok"))
    first = store.snapshot()
    assert store.snapshot() is first
    clock.now += 0.1
    assert store.snapshot() is first  # younger than max_age and nothing new
    store.add_in_flight(KEY, 1)
    second = store.snapshot()
    assert second is not first
    assert second[OTHER] is first[OTHER]  # unchanged keys are not recomputed
    assert second[KEY].in_flight == 1 and first[KEY].in_flight == 0  # snapshots are immutable
    clock.now += 1.0
    assert store.snapshot()[OTHER] is not first[OTHER]  # decay refreshes every key


def test_aimd_and_headroom_through_the_store() -> None:
    store, clock = make()
    for _ in range(6):
        store.add_in_flight(KEY, 1)
    store.record(KEY, Sample("rate_limited", headroom=Headroom(retry_after_s=2.0)))
    store.record(
        KEY, Sample("ok", headroom=Headroom(requests_remaining=5, requests_limit=60, requests_reset_s=4))
    )
    s = store.snapshot()[KEY]
    assert s.concurrency_limit == pytest.approx(3.0 + 1 / 3)
    assert s.retry_at == pytest.approx(clock.now + 2.0)
    assert s.headroom is not None and s.headroom.requests_remaining == 5
    assert s.headroom_at == clock.now
    assert s.saturated(clock.now)  # both the Retry-After and the learned limit say so
    assert s.requests_remaining(clock.now + 5) == 60
    # A Retry-After alone does not wipe the rate windows seen before it.
    store.record(KEY, Sample("rate_limited", headroom=Headroom(retry_after_s=1.0)))
    assert store.snapshot()[KEY].headroom == s.headroom


def test_cooldowns_only_extend_and_expire() -> None:
    store, clock = make()
    store.set_cooldown("groq", clock.now + 10)
    store.set_cooldown("groq", clock.now + 5)
    snap = store.snapshot()
    assert snap.cooldown_until("groq") == clock.now + 10
    assert snap.cooling("groq", clock.now) and not snap.cooling("nim", clock.now)
    clock.now += 11
    assert store.snapshot().cooldown_until("groq") is None
    store.set_cooldown("nim", clock.now + 1)
    store.clear_cooldown("nim")
    assert store.snapshot().cooldowns == {}


def test_remote_view_merges_with_local() -> None:
    store, clock = make()
    store.record(KEY, Sample("ok", ttft_s=1.0, duration_s=1.0))
    store.add_in_flight(KEY, 1)
    other = Window(30.0, clock.now - 30.0)
    other.add(Sample("ok", ttft_s=3.0, duration_s=3.0), clock.now - 30.0)  # one half-life before the view
    newer = Headroom(requests_remaining=1, requests_limit=2)
    remote = {
        KEY: Remote(other.vector(clock.now - 30.0), 4, newer, clock.now + 1, None),
        OTHER: Remote([0.0] * WIDTH, 2),
    }
    store._set_remote(RemoteView(clock.now - 30.0, remote), {"groq": clock.now + 3})
    snap = store.snapshot()
    s = snap[KEY]
    assert s.samples == pytest.approx(1.0 + 0.5)  # the remote vector is decayed from when it was read
    assert s.ttft_s == pytest.approx((1.0 + 0.5 * 3.0) / 1.5)
    assert (s.in_flight, s.local_in_flight) == (5, 1)
    assert s.headroom == newer
    assert snap[OTHER].in_flight == 2 and snap[OTHER].samples == 0
    assert snap.cooling("groq", clock.now)


def test_make_store_picks_by_settings() -> None:
    assert isinstance(make_store(Settings(redis_url=None)), MemoryStore)
    store = make_store(Settings(redis_url="redis://127.0.0.1:1/0", telemetry_half_life_s=10))
    assert isinstance(store, RedisStore) and store.half_life_s == 10


def test_memory_store_lifecycle() -> None:
    store, _ = make()

    async def scenario() -> None:
        await store.start()
        store.record(KEY, Sample("ok"))
        await store.close()

    asyncio.run(scenario())
    assert store.snapshot()[KEY].samples == pytest.approx(1.0)


def test_busy_key_does_not_freeze_the_others() -> None:
    store, clock = make()
    store.record(OTHER, Sample("ok"))
    for _ in range(40):  # a change every 0.1 s, so every snapshot is a partial rebuild
        clock.now += 0.1
        store.add_in_flight(KEY, 1)
        store.snapshot()
    assert store.snapshot()[OTHER].samples == pytest.approx(2 ** (-4 / 30), rel=0.01)
