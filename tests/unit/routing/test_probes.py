"""Attempts waiting for a first token, and bounded per-backend probing (injected clock, no sleeping)."""

from __future__ import annotations

import pytest

from gateway.routing.probes import PROBE_CREDIT_CAP, PROBE_PACE, Watch, patience_s, trial_patience_s
from gateway.routing.scoring import Constraints, Estimate, rank
from tests.unit.targets import target

A, B, C = (target(backend=n, ttft_ms=100, tokens_per_s=100) for n in "abc")
EST = Estimate(input_tokens=100, output_tokens=10)


class Clock:
    def __init__(self) -> None:
        self.t = 50.0

    def __call__(self) -> float:
        return self.t


def test_oldest_waiting_attempt_is_reported_until_answered() -> None:
    clock = Clock()
    w = Watch(clock)
    w.started(A, 1)
    clock.t += 0.2
    w.started(A, 2)
    clock.t += 0.3
    assert w.waiting_ms() == {("a", "m"): pytest.approx(500.0)}
    w.answered(A, 1)
    assert w.waiting_ms() == {("a", "m"): pytest.approx(300.0)}
    w.answered(A, 2)
    assert w.waiting_ms() == {}


def test_probe_goes_to_the_least_recently_tried_once_per_interval() -> None:
    clock = Clock()
    w = Watch(clock)
    clock.t += 10
    assert w.pick_probe([B, C], 10) is B  # never tried: due an interval after the watch began
    assert w.pick_probe([B, C], 10) is C
    assert w.pick_probe([B, C], 10) is None  # both claimed
    clock.t += 10
    w.started(C, 7)
    assert w.pick_probe([B, C], 10) is B
    assert w.pick_probe([B, C], 0) is None  # 0 turns probing off


@pytest.mark.parametrize(
    ("after_s", "tried", "due"),
    [
        (0.0, set(), None),  # a fresh gateway: nothing that could not win is probed at once
        (9.9, set(), None),
        (10.0, set(), "b"),  # never tried: as if tried when the watch began
        (10.0, {"b"}, "c"),  # b was tried just now (at 10 s): c, never tried, is due
        (15.0, {"b", "c"}, None),  # both tried at 10 s: not again before 20 s
        (20.0, {"b", "c"}, "b"),
    ],
)
def test_a_never_tried_backend_that_could_not_win_waits_an_interval(
    after_s: float, tried: set[str], due: str | None
) -> None:
    clock = Clock()
    w = Watch(clock)
    clock.t += min(after_s, 10.0)
    for n, t in enumerate(x for x in (B, C) if x.backend in tried):
        w.started(t, n)
    clock.t += after_s - min(after_s, 10.0)
    picked = w.pick_probe([B, C], 10)
    assert (picked.backend if picked is not None else None) == due


def test_waiting_attempt_makes_a_backend_slow_now_and_probeable() -> None:
    c = Constraints(max_ttft_ms=400)
    ranked, dropped = rank([A, B], "cheapest", EST, constraints=c, waiting_ms={("a", "m"): 900.0})
    assert [s.target.backend for s in ranked] == ["b"]
    # 800 ms late on its 100 ms: expected about as much later again (2 x 900 - 100)
    assert dropped[0].backend == "a" and "1700 ms" in dropped[0].reason
    assert dropped[0].probe is not None and dropped[0].probe.target is A


def test_static_constraints_are_not_probeable() -> None:
    c = Constraints(hardware_deny=frozenset({"x"}))
    _, dropped = rank([target(backend="a", hardware="x")], "cheapest", EST, constraints=c)
    assert dropped[0].probe is None


def test_answered_backends_leave_the_waiting_list() -> None:
    clock = Clock()
    w = Watch(clock)
    w.started(A, 1)
    w.started(B, 2)
    w.answered(A, 1)
    w.answered(A, 99)  # unknown: no effect
    clock.t += 0.1
    assert w.waiting_ms() == {("b", "m"): pytest.approx(100.0)}
    w.answered(B, 2)
    assert w._waiting == {}  # nothing left to walk per request
    w.started(B, 3)
    assert w.waiting_ms() == {("b", "m"): 0.0}


def test_an_attempt_is_stuck_once_well_past_its_expected_duration() -> None:
    clock = Clock()
    w = Watch(clock)
    w.started(A, 1, expected_s=0.5)  # due after max(1 s, 4 x 0.5 s) = 2 s
    w.started(B, 2, expected_s=0.1)  # due after the 1 s floor
    w.started(C, 3)  # no expectation: never stuck
    clock.t += 1.5
    assert w.stuck_ms() == {("b", "m"): pytest.approx(1500.0)}
    clock.t += 1.0
    assert w.stuck_ms() == {("a", "m"): pytest.approx(2500.0), ("b", "m"): pytest.approx(2500.0)}
    w.answered(A, 1)
    w.answered(B, 2)
    assert w.stuck_ms() == {}


def test_a_later_attempt_due_sooner_is_found_stuck_and_an_answered_one_is_not() -> None:
    """`stuck_ms` skips a backend until its earliest due time: that bound follows every attempt."""
    clock = Clock()
    w = Watch(clock)
    w.started(A, 1, expected_s=5.0)  # due after 20 s
    clock.t += 0.2
    w.started(A, 2, expected_s=0.1)  # started later, due sooner: after 1 s
    clock.t += 1.5
    assert w.stuck_ms() == {("a", "m"): pytest.approx(1500.0)}
    w.answered(A, 2)
    assert w.stuck_ms() == {}  # the one left is due at 20 s
    clock.t += 18.5
    assert w.stuck_ms() == {("a", "m"): pytest.approx(20200.0)}
    w.answered(A, 1)
    w.started(A, 3, expected_s=0.1)
    assert w.stuck_ms() == {}
    clock.t += 1.0
    assert w.stuck_ms() == {("a", "m"): pytest.approx(1000.0)}


def test_probe_allowance_saves_up_a_share_per_request_or_one_per_interval() -> None:
    clock = Clock()
    w = Watch(clock)
    assert not any(w.may_probe("r", 0.01, 10.0) for _ in range(99))  # a newcomer's first requests
    assert w.may_probe("r", 0.01, 10.0) is True  # the 100th: 1% of requests
    w.spend("r")
    assert w.may_probe("r", 0.01, 10.0) is False
    clock.t += 10
    assert w.may_probe("r", 0.0, 10.0) is True  # a quiet route still renews its figures once per interval


def test_spending_the_allowance_bounds_probes_to_the_share() -> None:
    clock = Clock()
    w = Watch(clock)
    probes = 0
    for _ in range(10_000):  # 100 s at 100 req/s
        clock.t += 0.01
        if w.may_probe("r", 0.01, 10.0):
            w.spend("r")
            probes += 1
    assert 99 <= probes <= 101  # 1% of requests, plus at most the interval's allowance
    assert w.may_probe("other", 0.01, 10.0) is False  # routes are budgeted apart


def test_a_quiet_stretch_saves_up_probes_for_a_fault_spent_at_twice_the_share() -> None:
    """At 100 req/s, 1%: a quiet stretch saves up PROBE_CREDIT_CAP probes; a fault then gets one every 50
    requests (PROBE_PACE x the share) until the savings are gone, then one per 100 again."""
    clock = Clock()
    w = Watch(clock)
    for _ in range(1_000):  # 10 s, nothing worth probing
        clock.t += 0.01
        w.may_probe("r", 0.01, 100.0)
    sent: list[int] = []
    for i in range(1_500):  # the next 15 s: a probe whenever one is allowed
        clock.t += 0.01
        if w.may_probe("r", 0.01, 100.0):
            w.spend("r")
            sent.append(i)
    gaps = [b - a for a, b in zip(sent, sent[1:], strict=False)]
    assert PROBE_CREDIT_CAP == 5 and PROBE_PACE == 2
    assert gaps[:8] == [50] * 8  # savings spent at twice the share: 9 probes in the first 4.5 s
    assert set(gaps[8:]) == {100}  # then the share itself
    assert len(sent) <= 1_500 * 0.01 + PROBE_CREDIT_CAP  # never more than the share plus the savings


def test_a_waiting_attempt_inflates_the_ranking_figures_but_not_what_an_attempt_should_take() -> None:
    calm, _ = rank([A], "cheapest", EST)
    waited, _ = rank([A], "cheapest", EST, waiting_ms={("a", "m"): 900.0})
    assert waited[0].ttft_ms == 1700.0 and calm[0].ttft_ms == 100.0
    assert (waited[0].expected_ttft_ms, waited[0].expected_ms) == (
        100.0,
        200.0,
    )  # 100 ms + 10 tokens at 100/s
    assert (calm[0].expected_ttft_ms, calm[0].expected_ms) == (100.0, 200.0)


@pytest.mark.parametrize(
    ("well_s", "deadline_s"),
    [
        (0.25, 0.75),  # 3x a stream's last-good TTFT: a trial into a hang is over in 0.75 s, not 1 s
        (0.33, 0.99),  # 3x a short answer's last-good duration
        (0.05, 0.25),  # the floor: a fast backend's trial still gets a quarter second
        (2.0, 6.0),  # a slow backend: 3x, still under when it would count as stuck (4x)
        (None, None),  # no expectation: the route's deadlines
    ],
)
def test_a_hung_backends_trial_waits_a_few_times_its_last_good_figure(
    well_s: float | None, deadline_s: float | None
) -> None:
    got = trial_patience_s(well_s)
    assert got == (None if deadline_s is None else pytest.approx(deadline_s))
    if got is not None:
        assert got <= patience_s(well_s)
