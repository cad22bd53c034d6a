"""Observers: which hooks run, in which order, and that a failing observer never fails the request."""

from __future__ import annotations

import logging

import pytest

from gateway.events import AttemptRecord, Observer, Observers, RequestRecord
from tests.unit.targets import target

EVENTS = ("request_started", "attempt_started", "attempt_finished", "request_finished")


class Full:
    """A structural observer (no Observer base): every hook is called, even one that does nothing."""

    def __init__(self, name: str, calls: list[str]) -> None:
        self.name, self.calls = name, calls

    def request_started(self, req: RequestRecord) -> None:
        self.calls.append(f"{self.name}.request_started")

    def attempt_started(self, req: RequestRecord, att: AttemptRecord, headers: dict[str, str]) -> None:
        self.calls.append(f"{self.name}.attempt_started")

    def attempt_finished(self, req: RequestRecord, att: AttemptRecord) -> None:
        self.calls.append(f"{self.name}.attempt_finished")

    def request_finished(self, req: RequestRecord) -> None:
        pass


class AttemptsOnly(Observer):
    __slots__ = ("calls",)

    def __init__(self, calls: list[str]) -> None:
        self.calls = calls

    def attempt_finished(self, req: RequestRecord, att: AttemptRecord) -> None:
        self.calls.append(f"attempts-only.attempt_finished:{att.outcome}")


class Broken(Observer):
    def request_started(self, req: RequestRecord) -> None:
        raise RuntimeError("boom")

    def attempt_started(self, req: RequestRecord, att: AttemptRecord, headers: dict[str, str]) -> None:
        raise RuntimeError("boom")

    def attempt_finished(self, req: RequestRecord, att: AttemptRecord) -> None:
        raise RuntimeError("boom")

    def request_finished(self, req: RequestRecord) -> None:
        raise RuntimeError("boom")


def fire(observers: Observers) -> tuple[RequestRecord, AttemptRecord]:
    req = RequestRecord("r1", "chat", "/v1/chat/completions")
    observers.request_started(req)
    att = AttemptRecord(target(), 1)
    req.attempts.append(att)
    observers.attempt_started(req, att, {})
    att.outcome = "ok"
    observers.attempt_finished(req, att)
    observers.request_finished(req)
    return req, att


def test_every_defined_hook_runs_in_the_order_observers_were_added() -> None:
    calls: list[str] = []
    observers = Observers([Full("a", calls), AttemptsOnly(calls)])
    observers.add(Full("b", calls))  # added later: the hook tuples are rebuilt
    fire(observers)
    assert calls == [
        "a.request_started",
        "b.request_started",
        "a.attempt_started",
        "b.attempt_started",
        "a.attempt_finished",
        "attempts-only.attempt_finished:ok",
        "b.attempt_finished",
    ]


def test_inherited_no_op_hooks_are_never_called(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[str] = []

    def spy(name: str) -> object:
        def hook(self: object, *args: object) -> None:
            seen.append(name)

        return hook

    for name in EVENTS:  # what an inheriting observer would run if Observers called its no-ops
        monkeypatch.setattr(Observer, name, spy(name))
    calls: list[str] = []
    fire(Observers([AttemptsOnly(calls)]))
    assert seen == []
    assert calls == ["attempts-only.attempt_finished:ok"]


def test_an_observer_that_raises_is_logged_and_skipped(caplog: pytest.LogCaptureFixture) -> None:
    calls: list[str] = []
    observers = Observers([Broken(), Full("after", calls)])
    with caplog.at_level(logging.ERROR, logger="routeway"):
        req, att = fire(observers)
    assert calls == ["after.request_started", "after.attempt_started", "after.attempt_finished"]
    assert [r.getMessage() for r in caplog.records] == [f"observer Broken failed in {e}" for e in EVENTS]
    assert all(r.exc_info is not None for r in caplog.records)
    assert att.duration_s is not None and req.duration_s is not None


def test_observer_subclasses_keep_their_slots() -> None:
    assert not hasattr(AttemptsOnly([]), "__dict__")


def test_finishing_fills_in_durations_even_without_observers() -> None:
    req, att = fire(Observers())
    assert att.duration_s is not None and att.duration_s >= 0.0
    assert req.duration_s is not None and req.duration_s >= att.duration_s


def test_upstream_time_adds_up_finished_attempts() -> None:
    req = RequestRecord("r1", "chat", "/x")
    assert req.upstream_s() == 0.0
    req.attempts += [
        AttemptRecord(target(), 1, duration_s=0.25),
        AttemptRecord(target(), 2),  # still running
        AttemptRecord(target(), 3, duration_s=0.5),
    ]
    assert req.upstream_s() == 0.75


class FirstBytes(Observer):
    __slots__ = ("calls",)

    def __init__(self, calls: list[str]) -> None:
        self.calls = calls

    def attempt_answered(self, req: RequestRecord, att: AttemptRecord) -> None:
        self.calls.append(f"answered:{att.ttft_s}")


class StatusLines(Observer):
    __slots__ = ("calls",)

    def __init__(self, calls: list[str]) -> None:
        self.calls = calls

    def attempt_replied(self, req: RequestRecord, att: AttemptRecord) -> None:
        self.calls.append(f"replied:{att.status}")


def test_the_first_byte_reaches_observers_that_define_it_and_skips_those_that_do_not() -> None:
    """`attempt_replied` and `attempt_answered` are optional: a structural observer without them (`Full`)
    is still accepted, and each reaches only the observers that define it."""
    calls: list[str] = []
    observers = Observers([Full("full", calls), FirstBytes(calls), StatusLines(calls), AttemptsOnly(calls)])
    req = RequestRecord("r1", "chat", "/v1/chat/completions", stream=True)
    att = AttemptRecord(target(), 1, status=200, ttft_s=0.25)
    observers.attempt_replied(req, att)
    observers.attempt_answered(req, att)
    assert calls == ["replied:200", "answered:0.25"]
