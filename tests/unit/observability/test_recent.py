"""The dashboard's Recent observer on hand-made records: the ring, the buckets, failovers versus hedges."""

from __future__ import annotations

import pytest

from gateway.events import AttemptRecord, Observers, RequestRecord
from gateway.observability.recent import (
    BUCKET_S,
    COST,
    ERRORS,
    FAILOVERS,
    HEDGES,
    JOULES,
    REQUESTS,
    TOKENS_OUT,
    Recent,
    extra_attempts,
)
from tests.unit.targets import target

T0 = 1_800_000_000.0  # a bucket boundary (divisible by BUCKET_S)


def finished(
    at: float,
    *,
    route: str | None = "r",
    backend: str | None = "a",
    status: int = 200,
    attempts: list[AttemptRecord] | None = None,
    cost: float | None = None,
    tokens: tuple[int, int] = (0, 0),
) -> RequestRecord:
    req = RequestRecord("id", "chat", "/v1/chat/completions", started_wall=at, route=route)
    req.backend, req.status, req.duration_s, req.cost_usd = backend, status, 0.5, cost
    req.input_tokens, req.output_tokens = tokens
    req.attempts = attempts if attempts is not None else []
    return req


def attempt(
    backend: str, started: float, duration: float, outcome: str = "ok", hw: str | None = None
) -> AttemptRecord:
    att = AttemptRecord(target(backend=backend, hardware=hw), 1, started=started)
    att.duration_s, att.outcome = duration, outcome
    return att


def test_ring_keeps_the_last_n_records_themselves() -> None:
    recent = Recent(decisions=3)
    reqs = [finished(T0 + i) for i in range(5)]
    for req in reqs:
        recent.request_finished(req)
    assert list(recent.decisions) == reqs[2:]  # the same objects, not copies
    assert recent.decisions[-1] is reqs[-1]


def test_buckets_sum_per_route_and_backend_over_a_window() -> None:
    recent = Recent()
    recent.request_finished(finished(T0 + 1, cost=0.5, tokens=(100, 10)))
    recent.request_finished(finished(T0 + 2, backend="b", status=503))
    recent.request_finished(finished(T0 + BUCKET_S + 1, cost=0.25, tokens=(0, 5)))
    recent.request_finished(finished(T0 + 3, route=None, backend=None, status=404))

    both = recent.totals(60, now=T0 + BUCKET_S + 2)
    assert both[("r", "a")][REQUESTS] == 2 and both[("r", "a")][COST] == 0.75
    assert both[("r", "a")][TOKENS_OUT] == 15
    assert both[("r", "b")][ERRORS] == 1
    assert both[("-", "-")][REQUESTS] == 1 and both[("-", "-")][ERRORS] == 0  # a client error
    assert recent.totals(BUCKET_S, now=T0 + BUCKET_S + 2)[("r", "a")][REQUESTS] == 1  # only the newest bucket
    assert recent.totals(60, now=T0 + 3600) == {}  # all older than the window


def test_series_has_a_zero_for_every_quiet_bucket() -> None:
    recent = Recent()
    recent.request_finished(finished(T0 + 1))
    recent.request_finished(finished(T0 + 3 * BUCKET_S + 1))
    recent.request_finished(finished(T0 + 3 * BUCKET_S + 2))
    times, counts = recent.series(60, now=T0 + 5 * BUCKET_S)
    assert times == [T0 + i * BUCKET_S for i in range(0, 6)]
    assert counts == {("r", "a"): [1, 0, 0, 2, 0, 0]}


def test_a_late_finisher_counts_in_the_newest_bucket() -> None:
    recent = Recent()
    recent.request_finished(finished(T0 + 2 * BUCKET_S))
    recent.request_finished(finished(T0))  # its wall clock says earlier (a clock step): no older bucket
    assert len(recent.buckets) == 1 and recent.buckets[0].rows[("r", "a")][REQUESTS] == 2


def test_hour_horizon_is_bounded() -> None:
    recent = Recent()
    for i in range(1000):
        recent.request_finished(finished(T0 + i * BUCKET_S))
    assert len(recent.buckets) == 3600 // BUCKET_S + 1


def test_failover_and_hedge_are_told_apart_by_overlap() -> None:
    failover = [attempt("a", 0.0, 1.0, "server"), attempt("b", 1.2, 0.5)]
    hedge = [attempt("a", 0.0, 3.0, "cancelled"), attempt("b", 0.5, 0.4)]
    assert extra_attempts(failover) == (1, 0)
    assert extra_attempts(hedge) == (0, 1)
    assert extra_attempts(failover[:1]) == (0, 0)

    recent = Recent()
    recent.request_finished(finished(T0, backend="b", attempts=failover))
    recent.request_finished(finished(T0, backend="b", attempts=hedge))
    row = recent.totals(60, now=T0 + 1)[("r", "b")]
    assert (row[FAILOVERS], row[HEDGES]) == (1, 1)


def test_energy_uses_the_serving_backends_hardware() -> None:
    recent = Recent()
    served = [attempt("a", 0.0, 1.0, "server", hw="groq-lpu"), attempt("b", 1.1, 1.0, hw="nvidia-h100")]
    recent.request_finished(finished(T0, backend="b", attempts=served, tokens=(1000, 100)))
    # nvidia-h100 is 0.4 J per output token; a prompt token counts for a tenth of one
    assert recent.totals(60, now=T0 + 1)[("r", "b")][JOULES] == pytest.approx(0.4 * (100 + 100))


def test_observers_call_only_request_finished() -> None:
    recent = Recent()
    observers = Observers([recent])
    req = finished(T0)
    observers.request_started(req)
    assert not recent.decisions
    observers.request_finished(req)
    assert list(recent.decisions) == [req]
