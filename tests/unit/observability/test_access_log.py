"""The access log: one JSON line per request, handed to the logging thread in batches, none lost."""

from __future__ import annotations

import asyncio
import calendar
import io
import json
import logging
import re
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from gateway.events import AttemptRecord, RequestRecord
from gateway.observability.logging import (
    BATCH_DELAY_S,
    BATCH_MAX_BYTES,
    AccessLog,
    JsonFormatter,
    setup_logging,
    stop_logging,
)
from tests.unit.targets import target

LOGGERS = ("routeway", "routeway.access", "uvicorn", "uvicorn.error", "uvicorn.access")


class Sink(io.StringIO):
    """stderr as the listener's StreamHandler sees it: one write() per record it handles."""

    def __init__(self) -> None:
        super().__init__()
        self.writes = 0

    def write(self, s: str) -> int:
        self.writes += 1
        return super().write(s)

    def lines(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.getvalue().splitlines()]


@pytest.fixture
def out(monkeypatch: pytest.MonkeyPatch) -> Iterator[Sink]:
    """setup_logging() writing to a Sink; the loggers it rewires are put back afterwards."""
    saved = {name: _state(logging.getLogger(name)) for name in LOGGERS}
    sink = Sink()
    monkeypatch.setattr(sys, "stderr", sink)
    setup_logging("INFO")
    yield sink
    stop_logging()
    for name, (handlers, level, propagate, disabled) in saved.items():
        logger = logging.getLogger(name)
        logger.handlers[:], logger.propagate, logger.disabled = handlers, propagate, disabled
        logger.setLevel(level)


def _state(logger: logging.Logger) -> tuple[list[logging.Handler], int, bool, bool]:
    return logger.handlers[:], logger.level, logger.propagate, logger.disabled


def request(n: int, **overrides: Any) -> RequestRecord:
    req = RequestRecord(f"r{n}", "chat", "/v1/chat/completions", model="chat", route="default")
    req.status, req.backend, req.duration_s = 200, "fast", 0.0123
    for key, value in overrides.items():
        setattr(req, key, value)
    return req


def wait_for(condition: Callable[[], bool], timeout_s: float = 2.0) -> None:
    """Polls with time.sleep: called on the loop, it keeps the loop (and its flush timer) from running."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)


def test_a_burst_of_requests_is_one_write_with_one_line_per_request(out: Sink) -> None:
    log = AccessLog()

    async def burst() -> None:
        for n in range(100):
            log.request_finished(request(n))
        time.sleep(0.1)
        assert out.writes == 0  # nothing handed over before the timer
        await asyncio.sleep(BATCH_DELAY_S * 4)

    asyncio.run(burst())
    wait_for(lambda: out.writes > 0)
    lines = out.lines()
    assert out.writes == 1
    assert [line["request_id"] for line in lines] == [f"r{n}" for n in range(100)]
    assert all(line["msg"] == "request" and line["backend"] == "fast" for line in lines)


def test_the_line_is_what_the_formatter_writes_for_a_record_with_the_same_fields(out: Sink) -> None:
    req = request(1, error="upstream 503", input_tokens=7, output_tokens=3, cost_usd=2e-5)
    req.context["trace_id"] = "ab" * 16
    req.attempts = [AttemptRecord(target(backend="cheap"), 1, outcome="server"), AttemptRecord(target(), 2)]
    fields = {
        "request_id": "r1",
        "path": "/v1/chat/completions",
        "model": "chat",
        "route": "default",
        "objective": None,
        "backend": "fast",
        "pick": None,
        "status": 200,
        "stream": False,
        "attempts": 2,
        "latency_ms": 12.3,
        "input_tokens": 7,
        "output_tokens": 3,
        "cost_usd": 2e-5,
        "error": "upstream 503",
        "trace_id": "ab" * 16,
        "tried": ["cheap:server", "b:pending"],
    }
    access = logging.getLogger("routeway.access")
    record = access.makeRecord(access.name, logging.INFO, "x.py", 1, "request", (), None, extra=fields)
    expected = json.loads(JsonFormatter().format(record))

    AccessLog().request_finished(req)
    wait_for(lambda: out.writes > 0)
    (line,) = out.lines()
    assert list(line) == list(expected)  # same keys, same order
    assert {**line, "ts": None} == {**expected, "ts": None}
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", line["ts"])
    assert abs(time.time() - calendar.timegm(time.strptime(line["ts"][:19], "%Y-%m-%dT%H:%M:%S"))) < 5


def test_a_sync_caller_gets_its_line_at_once(out: Sink) -> None:
    log = AccessLog()
    log.request_finished(request(1))
    wait_for(lambda: out.writes == 1)  # no flush(), no loop
    log.request_finished(request(2))
    wait_for(lambda: out.writes == 2)
    assert [line["request_id"] for line in out.lines()] == ["r1", "r2"]


def test_flush_hands_over_pending_lines_at_once(out: Sink) -> None:
    log = AccessLog()

    async def flushed() -> None:
        for n in range(3):
            log.request_finished(request(n))
        log.flush()
        wait_for(lambda: len(out.getvalue().splitlines()) == 3)  # the loop is blocked: not the timer
        await asyncio.sleep(BATCH_DELAY_S * 4)  # the timer still fires, with nothing left to hand over
        log.request_finished(request(3))  # a new batch gets its own timer
        await asyncio.sleep(BATCH_DELAY_S * 4)

    asyncio.run(flushed())
    wait_for(lambda: out.writes == 2)
    assert [line["request_id"] for line in out.lines()] == ["r0", "r1", "r2", "r3"]


def test_a_full_batch_is_handed_over_before_the_timer(out: Sink) -> None:
    log = AccessLog()
    big = "x" * (BATCH_MAX_BYTES // 3 - 1000)  # three such lines fit in a batch, four do not

    async def fill() -> None:
        for n in range(3):
            log.request_finished(request(n, error=big))
        time.sleep(0.1)
        assert out.writes == 0
        log.request_finished(request(3, error=big))
        wait_for(lambda: out.writes == 1)  # the loop is blocked: not the timer
        log.request_finished(request(4))
        await asyncio.sleep(BATCH_DELAY_S * 4)

    asyncio.run(fill())
    wait_for(lambda: out.writes == 2)
    assert [line["request_id"] for line in out.lines()] == ["r0", "r1", "r2", "r3", "r4"]


def test_stop_logging_writes_lines_still_pending_when_the_loop_ended(out: Sink) -> None:
    log = AccessLog()

    async def requests() -> None:
        for n in range(5):
            log.request_finished(request(n))

    asyncio.run(requests())  # closes the loop before the flush timer fires
    time.sleep(BATCH_DELAY_S * 2)
    assert out.writes == 0
    stop_logging()
    assert out.writes == 1 and len(out.lines()) == 5


@pytest.mark.parametrize("quiet", ["level", "disabled"])
def test_a_quiet_access_logger_writes_nothing(out: Sink, quiet: str) -> None:
    access = logging.getLogger("routeway.access")
    if quiet == "level":
        access.setLevel(logging.WARNING)
    else:
        access.disabled = True
    log = AccessLog()
    log.request_finished(request(1))
    log.flush()
    stop_logging()
    assert out.writes == 0


def test_without_setup_logging_each_request_is_a_record_for_the_usual_handlers(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="routeway")
    req = request(1)
    req.context["trace_id"] = "cd" * 16

    async def one() -> list[logging.LogRecord]:
        AccessLog().request_finished(req)
        return [r for r in caplog.records if r.name == "routeway.access"]  # before the loop yields

    (record,) = asyncio.run(one())
    assert getattr(record, "request_id", None) == "r1" and getattr(record, "trace_id", None) == "cd" * 16
    assert '"msg":"request"' in JsonFormatter().format(record)


def test_the_formatter_writes_a_batch_as_its_lines() -> None:
    record = logging.LogRecord("routeway.access", logging.INFO, "x.py", 1, "2 access lines", (), None)
    record.json_lines = [b'{"a":1}', b'{"b":"\xc3\xa9"}']
    assert JsonFormatter().format(record) == '{"a":1}\n{"b":"\u00e9"}'


@pytest.mark.parametrize(
    ("cost", "text"),
    [
        # The example: a sum of per-token prices with float noise in its last digits.
        (0.000010049999999999999, '"cost_usd":0.00001005'),
        (1.2345678901, '"cost_usd":1.23457'),
        (0.0, '"cost_usd":0.0'),
        (None, '"cost_usd":null'),
    ],
)
def test_cost_is_written_with_six_significant_digits(out: Sink, cost: float | None, text: str) -> None:
    AccessLog().request_finished(request(1, cost_usd=cost))
    wait_for(lambda: out.writes > 0)
    assert text + "}" in out.getvalue()  # the last field of a line without an error
