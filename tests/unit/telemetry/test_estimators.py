"""Peak-sensitive, recency-weighted estimates: pure functions of samples and explicit times (no clock)."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.telemetry.estimators import Estimates, Ewma, PeakEwma

T0 = 1_000_000.0


def fed(*samples: tuple[float, float]) -> PeakEwma:
    """A PeakEwma fed (seconds after T0, value) pairs in order."""
    e = PeakEwma()
    for dt, x in samples:
        e.add(x, T0 + dt)
    return e


@pytest.mark.parametrize(
    ("samples", "expected"),
    [
        ([(0, 0.25)], 0.25),  # the first sample is the estimate
        ([(0, 0.25), (0.01, 0.9)], 0.9),  # a worse sample replaces it at once (the peak)
        ([(0, 0.9), (0.01, 0.25)], 0.9 + (0.25 - 0.9) * (1 - math.exp(-0.01))),  # a better one: a step
        ([(0, 0.9), (60, 0.25)], 0.25 + 0.65 * math.exp(-60)),  # after a long gap one sample is all
    ],
)
def test_peak_reacts_at_once_and_forgives_on_evidence(
    samples: list[tuple[float, float]], expected: float
) -> None:
    assert fed(*samples).value == pytest.approx(expected)


def test_steady_good_samples_bring_a_peak_down_by_e_each_tau() -> None:
    e = fed((0, 0.25))
    e.add(0.9, T0 + 0.01)
    for i in range(1, 301):  # 3 s of samples at 100/s: 3 taus
        e.add(0.25, T0 + 0.01 + i * 0.01)
    assert e.value == pytest.approx(0.25 + 0.65 * math.exp(-3), rel=1e-3)


def test_one_fresh_sample_outweighs_old_ones_after_a_gap() -> None:
    """Issue 14's 'slow to forgive': one probe measuring the recovered backend fast is enough."""
    e = PeakEwma()
    for i in range(200):
        e.add(0.9, T0 + i * 0.01)  # slow for 2 s of traffic
    e.add(0.05, T0 + 10.0)  # one probe, 8 s later
    assert e.value == pytest.approx(0.05, abs=1e-3)


@pytest.mark.parametrize(
    ("age_s", "prior", "expected"),
    [
        (0.0, None, 0.9),  # just measured: the peak stands
        (1.0, None, 0.25 + 0.65 / 2),  # one half-life: half the excess over the last-good figure is gone
        (10.0, None, 0.25 + 0.65 / 1024),
        (1.0, 0.1, 0.1 + 0.8 / 2),  # a lower declared figure is the floor it decays toward
        (1.0, 0.5, 0.25 + 0.65 / 2),  # a higher declared one is not: the last-good figure was measured
    ],
)
def test_an_unrefreshed_peak_decays_with_age_toward_the_last_good_figure(
    age_s: float, prior: float | None, expected: float
) -> None:
    e = fed((0, 0.25), (0.01, 0.9))
    # (the last-good figure rose by a hair with the 0.9 s sample: tau 30 s)
    assert e.view(T0 + 0.01 + age_s, prior, half_life_s=1.0) == pytest.approx(expected, abs=1e-3)
    assert e.view(T0 + 0.01 + age_s, prior, half_life_s=None) == pytest.approx(0.9)  # no forgiving


def test_the_last_good_figure_drops_at_once_and_rises_slowly() -> None:
    e = fed((0, 0.25), (0.01, 0.9))
    assert e.good == pytest.approx(0.25 + 0.65 * (1 - math.exp(-0.01 / 30)))
    e.add(0.1, T0 + 0.02)
    assert e.good == 0.1


def test_censored_wait_raises_the_peak_only() -> None:
    e = fed((0, 0.25))
    e.censor(0.1, T0 + 1)  # gave up after 0.1 s: says nothing new
    assert (e.value, e.at) == (0.25, T0)
    e.censor(2.0, T0 + 2)  # hedged away after 2 s without a first token: at least 2 s now
    assert (e.value, e.good, e.at) == (2.0, 0.25, T0 + 2)
    empty = PeakEwma()
    empty.censor(1.5, T0)
    assert empty.value == 1.5 and empty.good is None


@pytest.mark.parametrize(
    ("waited", "project", "peak"),
    [
        (0.45, True, 0.65),  # hedged away 0.2 s past its 0.25 s estimate: due about 0.2 s later still
        (0.45, False, 0.45),  # our own deadline: at least the wait, no more
        (0.20, True, 0.25),  # before the estimate: says nothing new
    ],
)
def test_a_cancelled_wait_keeps_the_live_projection(waited: float, project: bool, peak: float) -> None:
    e = fed((0, 0.25))
    e.censor(waited, T0 + 1, project=project)
    assert e.value == pytest.approx(peak) and e.good == 0.25


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -1.0])
def test_bad_samples_are_ignored(bad: float) -> None:
    e = fed((0, 0.25))
    e.add(bad, T0 + 1)
    e.censor(bad, T0 + 1)
    assert (e.value, e.at) == (0.25, T0)


def test_failure_share_recency_weighted() -> None:
    f = Ewma()
    for i in range(100):
        f.add(1.0, T0 + i * 0.01)  # failing fast for a second
    assert f.value == 1.0
    f.add(0.0, T0 + 5.0)  # a trial seconds later succeeds: most of the failure is forgotten
    assert f.value is not None and f.value < 0.02


def test_merge_keeps_the_freshest_and_round_trips_through_the_blob() -> None:
    a, b = Estimates.empty(), Estimates.empty()
    a.ttft.add(0.9, T0)
    b.ttft.add(0.05, T0 + 3)  # another replica's probe, later
    a.failure.add(1.0, T0 + 5)
    merged = a.merge(b)
    assert merged.ttft.value == 0.05 and merged.failure.value == 1.0
    assert merged.at == T0 + 5
    back = Estimates.from_list(merged.to_list())
    assert back.to_list() == merged.to_list()
    assert Estimates.empty().at is None


@pytest.mark.parametrize("raw", [[1, 2], ["x"] * 8, [float("nan")] * 8, [True] * 8, "12345678"])
def test_a_malformed_blob_is_a_value_error(raw: object) -> None:
    with pytest.raises(ValueError, match="estimates"):
        Estimates.from_list(raw)  # type: ignore[arg-type]


samples = st.lists(
    st.tuples(st.floats(0, 100, allow_nan=False), st.floats(0, 60, allow_nan=False)), min_size=1, max_size=50
)


@given(samples)
def test_estimate_stays_within_what_was_seen_and_above_the_last_good(seq: list[tuple[float, float]]) -> None:
    e = PeakEwma()
    now = T0
    for gap, x in seq:
        now += gap
        e.add(x, now)
    xs = [x for _, x in seq]
    assert e.value is not None and e.good is not None
    assert min(xs) - 1e-9 <= e.good <= e.value + 1e-9 <= max(xs) + 2e-9
    assert e.value == max(xs) or e.value <= max(xs)
    assert xs[-1] <= e.value + 1e-9  # never below the latest sample: a worsening shows at once
    # Forgiving never goes below the last-good figure, never above the peak, and is monotone in age.
    views = [e.view(now + age, None, 1.0) for age in (0.0, 0.5, 2.0, 30.0)]
    assert all(v is not None for v in views)
    assert all(e.good - 1e-9 <= v <= e.value + 1e-9 for v in views if v is not None)
    assert views == sorted(views, reverse=True)
