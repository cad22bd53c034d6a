"""Decayed windows, TTFT percentiles, AIMD and the Stats derived from them, on an injected clock."""

from __future__ import annotations

from dataclasses import fields, replace

import pytest

from gateway.telemetry.headroom import Headroom
from gateway.telemetry.window import (
    HIST0,
    HIST_BUCKETS,
    OUTCOMES,
    WIDTH,
    Aimd,
    Sample,
    Stats,
    Window,
    bucket,
    make_stats,
    percentile,
)

H = 30.0
OK = Sample("ok", ttft_s=0.5, duration_s=2.5, output_tokens=200)


def stats_at(win: Window, now: float) -> Stats:
    return make_stats(win.vector(now), 0, 0, None, None, None, None)


def test_weight_halves_every_half_life() -> None:
    win = Window(H, now=0.0)
    win.add(OK, 0.0)
    assert stats_at(win, 0.0).samples == pytest.approx(1.0)
    assert stats_at(win, 30.0).samples == pytest.approx(0.5)
    assert stats_at(win, 90.0).samples == pytest.approx(0.125)
    assert stats_at(win, 600.0).samples < 1e-5  # old data stops counting


def test_means_weight_recent_samples_more() -> None:
    win = Window(H, now=0.0)
    win.add(Sample("ok", ttft_s=1.0, duration_s=1.0), 0.0)
    win.add(Sample("ok", ttft_s=3.0, duration_s=3.0), 30.0)
    s = stats_at(win, 30.0)
    assert s.ttft_s == pytest.approx((0.5 * 1.0 + 3.0) / 1.5)
    assert s.latency_s == pytest.approx((0.5 * 1.0 + 3.0) / 1.5)
    assert s.ttft_samples == pytest.approx(1.5)
    # Uniform decay leaves a mean alone.
    assert stats_at(win, 300.0).ttft_s == pytest.approx(s.ttft_s)


def test_rebase_keeps_values_after_a_long_time() -> None:
    win = Window(H, now=0.0)
    win.add(OK, 0.0)
    far = 100 * 64 * H  # many rebases' worth: weights must not overflow
    win.add(OK, far)
    win.add(OK, far + H)
    s = stats_at(win, far + H)
    assert s.samples == pytest.approx(1.5)
    assert s.tokens_per_s == pytest.approx(100.0)


def test_tokens_per_s_from_generation_time_only() -> None:
    win = Window(H, now=0.0)
    win.add(Sample("ok", ttft_s=0.5, duration_s=2.5, output_tokens=200), 0.0)  # 200 / 2 s
    win.add(Sample("ok", ttft_s=1.0, duration_s=2.0, output_tokens=300), 0.0)  # 300 / 1 s
    assert stats_at(win, 0.0).tokens_per_s == pytest.approx(500 / 3)


@pytest.mark.parametrize(
    "sample",
    [
        Sample("ok", ttft_s=None, duration_s=2.0, output_tokens=200),  # not a stream
        Sample("ok", ttft_s=1.0, duration_s=1.0, output_tokens=200),  # no generation time
        Sample("ok", ttft_s=0.1, duration_s=1.0, output_tokens=1),
        Sample("ok", ttft_s=0.1, duration_s=1.0, output_tokens=None),
        Sample("timeout", ttft_s=0.1, duration_s=10.0, output_tokens=50),
    ],
)
def test_tokens_per_s_only_when_meaningful(sample: Sample) -> None:
    win = Window(H, now=0.0)
    win.add(sample, 0.0)
    assert stats_at(win, 0.0).tokens_per_s is None


def test_outcomes_and_rates() -> None:
    win = Window(H, now=0.0)
    for outcome in ["ok"] * 6 + ["rate_limited"] * 2 + ["server", "weird-new-kind", "client", "cancelled"]:
        win.add(Sample(outcome, ttft_s=0.2, duration_s=1.0), 0.0)
    s = stats_at(win, 0.0)
    assert set(s.outcomes) == set(OUTCOMES)
    assert s.outcomes["error"] == pytest.approx(1.0)
    assert s.samples == pytest.approx(10.0)  # client errors and cancellations say nothing of the backend
    assert s.failure_rate == pytest.approx(0.4)
    assert s.rate_limited_rate == pytest.approx(0.2)
    assert s.ttft_samples == pytest.approx(6.0)  # failures carry no latency


def test_no_data() -> None:
    s = make_stats([0.0] * WIDTH, 0, 0, None, None, None, None)
    assert s.samples == 0 and s.failure_rate == 0.0
    assert s.ttft_s is s.ttft_p95_s is s.tokens_per_s is s.latency_s is None


def test_percentiles_track_the_distribution() -> None:
    win = Window(H, now=0.0)
    values = [0.1 + 0.9 * i / 999 for i in range(1000)]  # uniform over 0.1..1.0 s
    for v in values:
        win.add(Sample("ok", ttft_s=v, duration_s=v), 0.0)
    s = stats_at(win, 0.0)
    assert s.ttft_p50_s == pytest.approx(0.55, rel=0.1)
    assert s.ttft_p95_s == pytest.approx(0.955, rel=0.1)


def test_percentile_edges() -> None:
    hist = [0.0] * HIST_BUCKETS
    assert percentile(hist, 0.5) is None
    hist[0] = 1.0
    assert percentile(hist, 0.5) == pytest.approx(0.01)
    hist = [0.0] * HIST_BUCKETS
    hist[-1] = 1.0  # beyond the last edge: reports the open bucket's floor
    assert percentile(hist, 0.95) == pytest.approx(percentile(hist, 0.01) or 0.0)
    assert bucket(0.0) == 0 and bucket(1e6) == HIST_BUCKETS - 1
    assert bucket(0.02) == 1


def test_histogram_sits_inside_the_vector() -> None:
    win = Window(H, now=0.0)
    win.add(Sample("ok", ttft_s=0.3, duration_s=0.3), 0.0)
    vec = win.vector(0.0)
    assert sum(vec[HIST0:]) == pytest.approx(1.0)
    assert len(vec) == WIDTH


def test_aimd_learns_only_after_a_rate_limit() -> None:
    aimd = Aimd()
    aimd.on_success(in_flight=50)
    assert aimd.limit is None
    aimd.on_rate_limited(in_flight=10, now=0.0)
    assert aimd.limit == pytest.approx(5.0)
    aimd.on_rate_limited(in_flight=10, now=0.5)  # the same burst: one cut per hold period
    assert aimd.limit == pytest.approx(5.0)
    aimd.on_rate_limited(in_flight=20, now=2.0)  # never cuts from above what it had
    assert aimd.limit == pytest.approx(2.5)


def test_aimd_additive_increase_while_in_use() -> None:
    aimd = Aimd()
    aimd.on_rate_limited(in_flight=8, now=0.0)
    assert aimd.limit == pytest.approx(4.0)
    for _ in range(4):
        aimd.on_success(in_flight=4)
    assert aimd.limit == pytest.approx(5.0, rel=0.05)  # about +1 per limit's worth of successes
    before = aimd.limit
    aimd.on_success(in_flight=0)  # idle: no evidence the limit could be higher
    assert aimd.limit == before


def test_aimd_floor_is_one() -> None:
    aimd = Aimd()
    for i in range(10):
        aimd.on_rate_limited(in_flight=1, now=10.0 * i)
    assert aimd.limit == 1.0


def test_saturation_and_projection() -> None:
    hr = Headroom(requests_remaining=0, requests_limit=100, requests_reset_s=10.0)
    s = make_stats([0.0] * WIDTH, 3, 2, 2.0, hr, 1000.0, 1005.0)
    assert s.requests_remaining(1004.0) == 0
    assert s.requests_remaining(1010.0) == 100
    assert s.tokens_remaining(1004.0) is None
    assert s.saturated(1004.0)
    free = make_stats([0.0] * WIDTH, 3, 1, 2.0, hr, 1000.0, 1005.0)
    assert free.saturated(1004.0)  # Retry-After and an empty window
    assert not free.saturated(1011.0)
    busy = make_stats([0.0] * WIDTH, 3, 2, 2.0, None, None, None)
    assert busy.saturated(0.0)  # at the learned concurrency limit


def test_with_live_replaces_only_the_live_figures() -> None:
    win = Window(H, 0.0)
    for i in range(5):
        win.add(Sample("ok", ttft_s=0.1 * (i + 1), duration_s=2.0, output_tokens=100), 0.0)
    win.add(Sample("rate_limited"), 0.0)
    s = make_stats(win.vector(0.0), 1, 1, 4.0, None, None, None)
    hr = Headroom(requests_remaining=2, requests_limit=10)
    live = {
        "in_flight": 7, "local_in_flight": 3, "concurrency_limit": 2.5, "headroom": hr, "headroom_at": 9.0,
        "retry_at": 11.0,
    }  # fmt: skip
    got = s.with_live(7, 3, 2.5, hr, 9.0, 11.0)
    assert got == replace(s, **live)  # type: ignore[arg-type]
    assert {f.name for f in fields(Stats) if getattr(got, f.name) != getattr(s, f.name)} == set(live)
