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


OK_FAST = Sample("ok", ttft_s=0.1, duration_s=1.1, output_tokens=100)
OK_SLOW = Sample("ok", ttft_s=2.0, duration_s=3.0, output_tokens=100)


def throttled(every_s: float = 0.02) -> tuple[MemoryStore, Clock]:
    clock = Clock()
    return MemoryStore(30.0, clock=clock, max_age_s=0.25, window_every_s=every_s), clock


def test_in_flight_change_keeps_the_window_figures() -> None:
    store, clock = make()
    store.record(KEY, OK_FAST)
    first = store.snapshot()[KEY]
    clock.now += 0.1
    store.add_in_flight(KEY, 1)
    second = store.snapshot()[KEY]
    assert (second.in_flight, second.local_in_flight) == (1, 1)
    assert second.outcomes is first.outcomes  # carried over, not recomputed
    assert second.ttft_p50_s == first.ttft_p50_s and second.samples == first.samples


def test_successes_show_at_most_once_per_interval_and_always_once_it_passed() -> None:
    store, clock = throttled(0.02)
    shown = clock.now
    store.record(KEY, OK_FAST)
    assert store.snapshot()[KEY].ttft_samples == pytest.approx(1.0)  # the first after a lull: at once
    clock.now = shown + 0.005
    hr = Headroom(requests_remaining=3, requests_limit=10, requests_reset_s=60)
    store.record(KEY, Sample("ok", ttft_s=2.0, duration_s=3.0, output_tokens=100, headroom=hr))
    store.add_in_flight(KEY, 1)
    s = store.snapshot()[KEY]
    assert s.ttft_samples == pytest.approx(1.0, rel=1e-3)  # the quantiles wait...
    assert (s.in_flight, s.headroom, s.headroom_at) == (1, hr, clock.now)  # ...what may not wait does not
    clock.now = shown + 0.019
    assert store.snapshot()[KEY].ttft_samples == pytest.approx(1.0, rel=1e-3)
    clock.now = shown + 0.0201  # the interval has passed, and nothing new since: due all the same
    s = store.snapshot()[KEY]
    assert s.ttft_samples == pytest.approx(2.0, rel=1e-3) and s.ttft_p95_s is not None and s.ttft_p95_s > 1.5
    clock.now += 0.001
    store.record(KEY, OK_SLOW)
    assert store.snapshot()[KEY].ttft_samples == pytest.approx(2.0, rel=1e-3)  # the next interval began


def test_failures_and_rate_limits_show_at_once() -> None:
    store, clock = throttled(0.02)
    store.record(KEY, OK_FAST)
    store.snapshot()
    clock.now += 0.001
    store.record(KEY, Sample("server"))
    assert store.snapshot()[KEY].failure_rate == pytest.approx(0.5, rel=1e-3)
    clock.now += 0.001
    store.record(KEY, Sample("rate_limited", headroom=Headroom(retry_after_s=5.0)))
    s = store.snapshot()[KEY]
    assert s.rate_limited_rate == pytest.approx(1 / 3, rel=1e-3)
    assert s.retry_at == pytest.approx(clock.now + 5.0) and s.saturated(clock.now)


def test_a_neutral_outcome_may_wait_like_a_success() -> None:
    store, clock = throttled(0.02)
    store.record(KEY, OK_FAST)
    store.snapshot()
    clock.now += 0.001
    store.record(KEY, Sample("cancelled"))
    assert store.snapshot()[KEY].outcomes["cancelled"] == 0.0
    clock.now += 0.02
    assert store.snapshot()[KEY].outcomes["cancelled"] == pytest.approx(1.0, rel=1e-3)


def test_interval_zero_shows_every_sample() -> None:
    store, _ = throttled(0.0)
    store.record(KEY, OK_FAST)
    assert store.snapshot()[KEY].ttft_samples == pytest.approx(1.0)
    store.record(KEY, OK_SLOW)
    assert store.snapshot()[KEY].ttft_samples == pytest.approx(2.0)


def test_a_clock_that_steps_back_does_not_hold_samples_back() -> None:
    store, clock = throttled(0.02)
    store.record(KEY, OK_FAST)
    store.snapshot()
    clock.now -= 5.0
    assert store.snapshot().at == clock.now  # a snapshot "from the future" is rebuilt at once
    store.record(KEY, OK_SLOW)
    assert store.snapshot()[KEY].ttft_samples > 1.9


def test_in_flight_change_merges_the_remote_view() -> None:
    store, clock = make()
    store.record(KEY, Sample("ok", headroom=Headroom(requests_remaining=9, requests_limit=10)))
    newer = Headroom(requests_remaining=1, requests_limit=10)
    remote = {KEY: Remote([0.0] * WIDTH, 4, newer, clock.now + 1, clock.now + 2)}
    store._set_remote(RemoteView(clock.now, remote))
    store.snapshot()
    clock.now += 0.05
    store.add_in_flight(KEY, 2)
    s = store.snapshot()[KEY]
    assert (s.in_flight, s.local_in_flight) == (6, 2)
    assert (s.headroom, s.retry_at) == (newer, clock.now - 0.05 + 2)


def test_snapshot_lookups() -> None:
    store, _ = make()
    store.add_in_flight(KEY, 1)
    snap = store.snapshot()
    assert KEY in snap and OTHER not in snap
    assert snap.get(OTHER) is None and snap.get(OTHER, "none") == "none"
    assert snap.get(KEY) is snap[KEY]


# --- issue 14: recency-weighted estimates and stuck attempts ride with the telemetry ------------------------


@pytest.mark.parametrize(
    ("sample", "ttft", "latency", "failure"),
    [
        (Sample("ok", ttft_s=0.2, duration_s=1.0, stream=True), 0.2, None, 0.0),
        (Sample("ok", duration_s=0.7), None, 0.7, 0.0),  # a whole answer: its duration is its latency
        (Sample("server", duration_s=0.01), None, None, 1.0),
        (Sample("cancelled", duration_s=2.0, waited_s=2.0, stream=True), 2.0, None, None),  # censored
        (Sample("timeout", duration_s=2.0, waited_s=2.0), None, 2.0, 1.0),
        (Sample("client", duration_s=0.01), None, None, None),  # the caller's fault says nothing
    ],
)
def test_every_outcome_feeds_the_estimates_at_once(
    sample: Sample, ttft: float | None, latency: float | None, failure: float | None
) -> None:
    store, _ = make()
    store.record(KEY, sample)
    est = store.snapshot()[KEY].est
    assert est is not None
    assert (est.ttft.value, est.latency.value, est.failure.value) == (ttft, latency, failure)


def test_a_slow_sample_shows_in_the_next_snapshot_and_the_snapshot_keeps_its_copy() -> None:
    store, clock = make()
    store.record(KEY, Sample("ok", ttft_s=0.25, stream=True))
    before = store.snapshot()[KEY].est
    clock.now += 0.001  # well inside the window figures' throttle: the estimate does not wait
    store.record(KEY, Sample("ok", ttft_s=0.9, stream=True))
    after = store.snapshot()[KEY].est
    assert before is not None and after is not None
    assert (before.ttft.value, after.ttft.value) == (0.25, 0.9)


def test_snapshots_share_one_copy_of_the_estimates_until_the_next_sample() -> None:
    """An in-flight change makes a new snapshot but no new copy of unchanged estimates; a sample does, and
    the snapshots taken before it keep what they showed."""
    store, clock = make()
    store.record(KEY, Sample("ok", duration_s=0.2))
    first = store.snapshot()[KEY].est
    store.add_in_flight(KEY, 1)
    clock.now += 0.001
    second = store.snapshot()[KEY]
    assert second.in_flight == 1 and second.est is first  # nothing learned: the same copy
    store.record(KEY, Sample("ok", duration_s=1.0))  # slower: the peak rises at once
    third = store.snapshot()[KEY].est
    assert first is not None and third is not None and third is not first
    assert (first.latency.value, third.latency.value) == (0.2, 1.0)
    assert third.latency.at == clock.now and first.latency.at == clock.now - 0.001
    store.add_in_flight(KEY, -1)
    assert store.snapshot()[KEY].est is third


def test_remote_estimates_and_stuck_attempts_merge_into_the_stats() -> None:
    from gateway.telemetry.estimators import Estimates
    from gateway.telemetry.redis_store import _merge

    mine = Estimates.empty()
    mine.ttft.add(0.9, 1000.0)
    theirs = Estimates.empty()
    theirs.ttft.add(0.05, 1003.0)  # another replica's probe, later
    entry = ["groq", KEY[1], 1, None, None, None, [0.0] * WIDTH, theirs.to_list(), 1002.5]
    keys: dict[tuple[str, str], Remote] = {}
    _merge(keys, [entry, [*entry[:8], 1001.0], entry[:7]], 1.0)  # two replicas, one of an older version
    part = keys[KEY]
    assert part.stuck_since == 1001.0 and part.est is not None and part.est.ttft.value == 0.05
    store, clock = make()
    clock.now = 1004.0
    store.record(KEY, Sample("ok", ttft_s=0.9, stream=True))
    store._states[KEY].est = mine
    store._set_remote(RemoteView(clock.now, keys))
    s = store.snapshot()[KEY]
    assert s.est is not None and s.est.ttft.value == 0.05 and s.stuck_since == 1001.0
