"""The body budget: bytes held by readers across requests, refused over the budget, given back on release."""

from __future__ import annotations

import asyncio

import pytest

from gateway.api.bodies import Bodies, BodyBudget
from gateway.errors import Overloaded, PayloadTooLarge
from tests.unit.test_front import body, receiver


def test_budget_refuses_what_would_cross_it_and_takes_back_what_is_given() -> None:
    budget = BodyBudget(100)
    budget.take(60)
    with pytest.raises(Overloaded) as refused:
        budget.take(41)
    assert refused.value.status == 503 and refused.value.headers["retry-after"] == "1"
    budget.take(40)
    budget.give(60)
    budget.take(60)
    assert budget.held == 100
    with pytest.raises(PayloadTooLarge):
        BodyBudget(100).take(101)  # alone above the budget: no retry will help


def test_a_declared_body_is_reserved_before_it_is_read_and_released_after() -> None:
    bodies = Bodies(max_body_bytes=80, max_buffered_bytes=100)
    first = bodies.reader(receiver([body(b"x" * 60)]), {"content-length": "60"})
    assert asyncio.run(first.read()) == b"x" * 60
    untouched = [body(b"y" * 50)]
    second = bodies.reader(receiver(untouched), {"content-length": "50"})
    with pytest.raises(Overloaded):
        asyncio.run(second.read())
    assert untouched == [body(b"y" * 50)]  # refused before reading
    first.release()
    second.release()
    assert bodies.budget.held == 0
    assert asyncio.run(bodies.reader(receiver(untouched), {"content-length": "50"}).read()) == b"y" * 50


def test_a_chunked_body_takes_the_budget_as_it_arrives_and_a_refusal_still_releases() -> None:
    bodies = Bodies(max_body_bytes=80, max_buffered_bytes=100)
    held = bodies.reader(receiver([body(b"a" * 30, True), body(b"b" * 30)]), {})
    assert asyncio.run(held.read()) == b"a" * 30 + b"b" * 30
    assert bodies.budget.held == 60
    over = bodies.reader(receiver([body(b"c" * 30, True), body(b"d" * 30), body(b"never")]), {})
    with pytest.raises(Overloaded):
        asyncio.run(over.read())
    assert bodies.budget.held == 90
    over.release()
    held.release()
    assert bodies.budget.held == 0
