"""A router on an in-memory transport: backends named a, b, c..., an observer that counts each attempt's
start and finish, and checks that every attempt was ended once and every loser let go."""

from __future__ import annotations

from collections import Counter
from typing import Any

from gateway.endpoints import ENDPOINTS
from gateway.events import AttemptRecord, Observer, Observers, RequestRecord
from gateway.policy.model import Policy
from gateway.providers.base import Operation
from gateway.providers.credentials import CredentialProvider
from gateway.routing.candidates import Catalog, build_catalog
from gateway.routing.router import Plan, Router
from tests.mock_transport import Handler, MockTransport

MSG = [{"role": "user", "content": "hello"}]


class Ledger(Observer):
    """Counts attempt_started / attempt_finished per attempt: a double finish or a leak shows here."""

    def __init__(self) -> None:
        self.started: Counter[int] = Counter()
        self.finished: Counter[int] = Counter()
        self.records: list[AttemptRecord] = []

    def attempt_started(self, req: RequestRecord, att: AttemptRecord, headers: dict[str, str]) -> None:
        self.started[id(att)] += 1
        self.records.append(att)

    def attempt_finished(self, req: RequestRecord, att: AttemptRecord) -> None:
        self.finished[id(att)] += 1

    def open(self) -> list[AttemptRecord]:
        return [a for a in self.records if self.finished[id(a)] == 0]

    def finished_once(self) -> bool:
        return all(self.finished[id(a)] == 1 for a in self.records)


def catalog(
    backends: str = "abc",
    *,
    max_attempts: int = 3,
    hedge_ms: float | None = None,
    timeouts: dict[str, float] | None = None,
    credentials: dict[str, CredentialProvider] | None = None,
) -> Catalog:
    """Backends ranked by price in name order (a is cheapest), one `m` model each, objective cheapest."""
    route: dict[str, Any] = {
        "name": "r",
        "objective": "cheapest",
        "max_attempts": max_attempts,
        "probe_interval_s": 0,
        "timeouts": {"connect_s": 1, "first_token_s": 2, "idle_s": 2, "total_s": 10, **(timeouts or {})},
    }
    if hedge_ms is not None:
        route["hedge"] = {"enabled": True, "after_ms": hedge_ms}
    policy = Policy.model_validate(
        {
            "backends": {
                name: {
                    "provider": "openai",
                    "base_url": f"http://{name}",
                    "models": {"m": {"id": f"up-{name}", "input_price": i + 1, "output_price": i + 1}},
                }
                for i, name in enumerate(backends)
            },
            "routes": [route],
        }
    )
    return build_catalog(policy, credentials or {})


class Kit:
    def __init__(self, handler: Handler, cat: Catalog) -> None:
        self.transport = MockTransport(handler)
        self.ledger = Ledger()
        self.router = Router(self.transport, Observers([self.ledger]))
        self.catalog = cat
        self.req = RequestRecord("r1", "chat", "/v1/chat/completions")

    def plan(self, body: dict[str, Any], op: Operation = "chat") -> Plan:
        endpoint = next(spec for spec in ENDPOINTS.values() if spec.operation == op)
        return self.router.plan(self.catalog, endpoint, body, req=self.req)

    def tried(self) -> list[str]:
        return [a.target.backend for a in self.req.attempts]

    def outcomes(self) -> list[str]:
        return [a.outcome for a in self.req.attempts]

    def balanced(self) -> bool:
        """Every attempt ended exactly once and none still counts as waiting for a first byte."""
        return self.ledger.finished_once() and self.router.watch.waiting_ms() == {}


def body(stream: bool = False, **extra: Any) -> dict[str, Any]:
    return {"model": "m", "messages": MSG, "stream": stream, **extra}
