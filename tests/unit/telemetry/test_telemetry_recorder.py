"""TelemetryRecorder as an observer: in-flight accounting and the sample each attempt becomes."""

from __future__ import annotations

import math

import pytest

from gateway.events import AttemptRecord, Observers, RequestRecord
from gateway.telemetry import MemoryStore, Sample, TelemetryRecorder
from gateway.telemetry.headroom import Headroom
from gateway.telemetry.store import Key
from tests.unit.targets import target

TARGET = target(
    backend="groq", model="llama", model_id="llama-3.3-70b-versatile", input_price=0.0, output_price=0.0
)
KEY = ("groq", "llama-3.3-70b-versatile")


class Spy(MemoryStore):
    def __init__(self) -> None:
        super().__init__(clock=lambda: 500.0)
        self.samples: list[tuple[Key, Sample, int]] = []

    def record(self, key: Key, sample: Sample) -> None:
        self.samples.append((key, sample, self.snapshot()[key].in_flight if key in self.snapshot() else 0))
        super().record(key, sample)


def run(stream: bool, att_setup: dict[str, object]) -> Spy:
    store = Spy()
    observers = Observers([TelemetryRecorder(store, clock=lambda: 500.0)])
    req = RequestRecord("r1", "chat", "/v1/chat/completions", stream=stream)
    observers.request_started(req)
    att = AttemptRecord(TARGET, 1)
    observers.attempt_started(req, att, {})
    assert store.snapshot()[KEY].in_flight == 1
    for name, value in att_setup.items():
        setattr(att, name, value)
    observers.attempt_finished(req, att)
    observers.request_finished(req)
    return store


def test_stream_attempt() -> None:
    store = run(
        True,
        {
            "outcome": "ok",
            "ttft_s": 0.3,
            "duration_s": 2.3,
            "output_tokens": 100,
            "headers": {"x-ratelimit-remaining-requests": "9", "x-ratelimit-limit-requests": "10"},
        },
    )
    [(key, sample, in_flight)] = store.samples
    assert key == KEY and in_flight == 1  # recorded while still counted, for AIMD
    headroom = Headroom(requests_remaining=9, requests_limit=10)
    assert sample == Sample("ok", 0.3, 2.3, 100, headroom, stream=True)
    s = store.snapshot()[KEY]
    assert s.in_flight == 0 and s.tokens_per_s == pytest.approx(50.0)
    assert s.headroom_at == 500.0


def test_buffered_attempt_has_no_ttft() -> None:
    store = run(False, {"outcome": "ok", "ttft_s": 1.9, "duration_s": 2.0, "output_tokens": 100})
    [(_, sample, _)] = store.samples
    assert sample.ttft_s is None and sample.duration_s == 2.0
    assert store.snapshot()[KEY].latency_s == 2.0


def test_rate_limited_attempt_keeps_adapter_retry_after() -> None:
    store = run(
        False,
        {"outcome": "rate_limited", "status": 429, "retry_after": 3.0, "headers": {"content-type": "x"}},
    )
    [(_, sample, _)] = store.samples
    assert sample.headroom == Headroom(retry_after_s=3.0)
    s = store.snapshot()[KEY]
    assert s.retry_at == 503.0 and s.concurrency_limit == 1.0


def test_header_retry_after_wins() -> None:
    store = run(False, {"outcome": "rate_limited", "retry_after": 3.0, "headers": {"retry-after-ms": "250"}})
    assert store.samples[0][1].headroom == Headroom(retry_after_s=0.25)


def test_finish_without_start_does_not_go_negative() -> None:
    store = MemoryStore()
    rec = TelemetryRecorder(store)
    req = RequestRecord("r1", "chat", "/x")
    att = AttemptRecord(TARGET, 1, outcome="ok")
    rec.attempt_finished(req, att)
    rec.attempt_finished(req, att)
    assert store.snapshot()[KEY].in_flight == 0


@pytest.mark.parametrize(
    ("stream", "setup", "waited"),
    [
        (True, {"outcome": "cancelled", "duration_s": 0.8}, 0.8),  # hedged away before its first token
        (False, {"outcome": "timeout", "duration_s": 2.0}, 2.0),  # its per-try deadline fired
        (True, {"outcome": "cancelled", "ttft_s": 0.1, "duration_s": 0.8}, None),  # answered: not censored
        (False, {"outcome": "server", "duration_s": 0.01}, None),  # the backend's verdict: a failure
    ],
)
def test_an_attempt_ended_without_a_first_byte_is_a_censored_figure(
    stream: bool, setup: dict[str, object], waited: float | None
) -> None:
    store = run(stream, setup)
    [(_, sample, _)] = store.samples
    assert sample.waited_s == waited and sample.stream is stream


@pytest.mark.parametrize(
    ("stream", "end", "ttft_at_first_byte", "failure_rises_at_end"),
    [
        (True, "ok", True, False),  # learned at the first event; the clean end adds no second TTFT
        (True, "protocol", True, True),  # cut after the first event: its end still counts as a failure
        (False, "ok", False, False),  # a buffered body's first byte is its end: nothing learned early
    ],
)
def test_a_streams_ttft_is_learned_once_at_its_first_event(
    stream: bool, end: str, ttft_at_first_byte: bool, failure_rises_at_end: bool
) -> None:
    now = [500.0]
    store = MemoryStore(clock=lambda: now[0], window_every_s=0)
    observers = Observers([TelemetryRecorder(store, clock=lambda: now[0])])
    first = AttemptRecord(TARGET, 1, outcome="server", ttft_s=1.0, duration_s=1.0)
    req = RequestRecord("r0", "chat", "/v1/chat/completions", stream=True)
    observers.attempt_started(req, first, {})
    first.outcome = "ok"
    observers.attempt_finished(req, first)  # an earlier stream: TTFT 1 s, at 500
    before = store.snapshot()[KEY].est
    assert before is not None and before.ttft.value == 1.0
    req = RequestRecord("r1", "chat", "/v1/chat/completions", stream=stream)
    att = AttemptRecord(TARGET, 1)
    observers.attempt_started(req, att, {})
    now[0] = 500.5
    att.ttft_s = 0.2
    observers.attempt_answered(req, att)
    est = store.snapshot()[KEY].est
    assert est is not None
    early = est.ttft.value
    assert (early != 1.0) is ttft_at_first_byte
    if ttft_at_first_byte:  # moved toward 0.2 by the weight of 0.5 s since the last sample
        assert early == pytest.approx(1.0 - 0.8 * (1 - math.exp(-0.5)))
    now[0] = 500.6
    att.outcome, att.duration_s, att.output_tokens = end, 0.3, 10
    observers.attempt_finished(req, att)
    est = store.snapshot()[KEY].est
    assert est is not None and est.failure.value is not None
    if stream:
        assert est.ttft.value == pytest.approx(early)  # not learned a second time at the end
    assert (est.failure.value > 0.0) is failure_rises_at_end
