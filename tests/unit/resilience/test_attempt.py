"""The attempt owner: whichever paths try to end an attempt, observers hear of it once and the in-flight
count is given back once; closing drops the connection."""

from __future__ import annotations

import asyncio

import pytest

from gateway.events import AttemptRecord, Observer, Observers, RequestRecord
from gateway.providers.base import ProviderError, Usage
from gateway.resilience.attempt import Attempt
from gateway.routing.probes import Watch
from tests.mock_transport import MockReply
from tests.unit.routing.router_kit import Ledger
from tests.unit.targets import target


def begin() -> tuple[Attempt, Ledger, Watch, RequestRecord]:
    ledger, watch = Ledger(), Watch()
    req = RequestRecord("r", "chat", "/v1/chat/completions")
    return Attempt(req, target(backend="a"), {}, watch, Observers([ledger])), ledger, watch, req


def test_begin_counts_the_attempt_as_waiting_and_numbers_it() -> None:
    att, ledger, watch, req = begin()
    assert req.attempts == [att.record] and att.record.number == 1
    assert set(watch.waiting_ms()) == {("a", "m")} and ledger.open() == [att.record]


def test_every_way_out_finishes_once() -> None:
    att, ledger, watch, _ = begin()
    reply = MockReply(200, b"{}")
    att.replied(reply)
    att.failed(ProviderError("server", "boom", status=502))
    att.failed(asyncio.CancelledError())  # a hedge's cancel arriving late changes nothing
    att.close()
    att.end_stream(False, Usage(1, 1))
    assert ledger.finished_once() and watch.waiting_ms() == {}
    assert (att.record.outcome, att.record.status, att.record.input_tokens) == ("server", 502, None)
    assert reply.closed


def test_close_before_any_reply_is_a_cancellation() -> None:
    att, ledger, watch, _ = begin()
    att.close()
    assert att.record.outcome == "cancelled" and ledger.finished_once() and watch.waiting_ms() == {}


def test_a_clean_stream_end_releases_and_bills() -> None:
    att, ledger, watch, _ = begin()
    reply = MockReply(200, b"")
    att.replied(reply)
    att.answered()
    assert watch.waiting_ms() == {} and att.record.ttft_s is not None
    att.record.outcome = "ok"
    att.end_stream(True, Usage(7, 3))
    assert reply.released and not reply.closed and not att.record.partial
    assert (att.record.input_tokens, att.record.output_tokens) == (7, 3)
    att.close()  # a late close (the client went away after [DONE]) does not finish it again
    assert ledger.finished_once() and att.record.outcome == "ok"


def test_a_cut_stream_is_dropped_and_marked_partial() -> None:
    att, ledger, _, _ = begin()
    reply = MockReply(200, b"")
    att.replied(reply)
    att.end_stream(False, None)
    assert reply.closed and att.record.partial and ledger.finished_once()


class FirstBytes(Observer):
    def __init__(self) -> None:
        self.seen: list[float | None] = []
        self.statuses: list[int | None] = []

    def attempt_replied(self, req: RequestRecord, att: AttemptRecord) -> None:
        self.statuses.append(att.status)

    def attempt_answered(self, req: RequestRecord, att: AttemptRecord) -> None:
        self.seen.append(att.ttft_s)


def test_observers_hear_the_status_line_before_the_first_byte() -> None:
    spy = FirstBytes()
    req = RequestRecord("r", "chat", "/v1/chat/completions", stream=True)
    att = Attempt(req, target(backend="a"), {}, Watch(), Observers([spy]))
    att.replied(MockReply(200, b""))
    assert (spy.statuses, spy.seen) == ([200], [])  # the headers: no first byte yet
    assert att.record.replied_s is not None and att.record.replied_s >= 0
    att.answered()
    assert spy.statuses == [200] and len(spy.seen) == 1


@pytest.mark.parametrize(
    ("steps", "heard"),
    [
        (("answered",), 1),  # the first byte: observers hear it at once, not at the end
        (("answered", "answered"), 1),  # a second call (a reader that calls it again) changes nothing
        (("answered", "end"), 1),
        (("end", "answered"), 0),  # after the end: too late to be a first byte
        (("end",), 0),  # never answered
    ],
)
def test_observers_hear_the_first_byte_once(steps: tuple[str, ...], heard: int) -> None:
    spy = FirstBytes()
    req = RequestRecord("r", "chat", "/v1/chat/completions", stream=True)
    att = Attempt(req, target(backend="a"), {}, Watch(), Observers([spy]))
    for step in steps:
        if step == "answered":
            att.answered()
        else:
            att.end_stream(False, None)
    assert len(spy.seen) == heard
    assert all(t is not None and t >= 0 for t in spy.seen)
