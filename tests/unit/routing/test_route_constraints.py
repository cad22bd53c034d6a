"""A route's constraints are built once by the catalog that owns the route, and die with it."""

from __future__ import annotations

import gc
import weakref

from gateway.endpoints import CHAT
from gateway.routing.preferences import Preferences, constraints_for
from gateway.routing.router import Router
from tests.mock_transport import MockTransport
from tests.unit.routing.router_kit import body, catalog


def _never(request: object) -> object:
    raise AssertionError("planning sends nothing")


def test_constraints_built_once_per_route_and_tightened_per_request() -> None:
    cat = catalog("ab")
    route = cat.routes[0]
    plain = cat.constraints(route, Preferences())
    assert cat.constraints(route, Preferences()) is plain  # the catalog's own, not rebuilt
    tight = cat.constraints(route, Preferences(max_input_price=1.5, only=frozenset({"a"})))
    assert tight is not plain and tight.max_input_price == 1.5 and tight.only == {"a"}


def test_a_route_from_another_catalog_gets_its_own_constraints() -> None:
    old, new = catalog("ab"), catalog("ab")
    foreign = old.routes[0].model_copy(update={"max_input_price": 0.5})
    assert new.constraints(foreign, Preferences()).max_input_price == 0.5
    assert constraints_for(foreign, Preferences()).max_input_price == 0.5


def test_a_reloaded_policy_leaves_nothing_of_the_old_routes_behind() -> None:
    """Regression: the module-level cache keyed by id(route) held every route it had seen (up to 1,024),
    so a policy reload never freed the old routes."""
    router = Router(MockTransport(_never))  # type: ignore[arg-type]
    cat = catalog("ab")
    router.plan(cat, CHAT, body())
    ref = weakref.ref(cat.routes[0])
    del cat
    gc.collect()
    assert ref() is None
