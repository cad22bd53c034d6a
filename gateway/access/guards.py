"""The guard stage: ordered per-principal checks before the first attempt, and settlement after the answer."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Protocol

from gateway.access.principal import Principal
from gateway.errors import CostLimitExceeded
from gateway.events import RequestRecord
from gateway.providers.base import Usage
from gateway.routing.router import Plan
from gateway.routing.scoring import Dropped
from gateway.settings import Settings

log = logging.getLogger("routeway.guards")


class Guard(Protocol):
    """One policy check on a principal's request: rate limits, budgets, allow-lists, cost caps.

    `admit` runs after planning and before any upstream call, with the plan's estimate and each candidate's
    predicted cost (`plan.ranked[i].cost_usd`); it refuses by raising a GatewayError and may narrow
    `plan.ranked` (dropped candidates go to `plan.dropped` with a reason). `settle` runs once for every
    admitted request, whatever its end (answer, error, a stream finished, cut or abandoned), with the real
    usage (None when none was read) and cost: release a reservation, write a ledger. It runs in a task of its
    own, never awaited by the request, so it must not write to `req` (the access log may be written first).

    As with observers, a guard that subclasses Guard and leaves `settle` out costs nothing after the answer.
    A `keyed` guard acts only on a virtual key's principal (`principal.key` set); when every guard is keyed,
    the stage is skipped for any other caller, so a gateway without virtual keys pays nothing per request.
    """

    keyed: bool = False

    async def admit(self, principal: Principal, plan: Plan, req: RequestRecord) -> None: ...

    async def settle(
        self,
        principal: Principal,
        plan: Plan,
        req: RequestRecord,
        usage: Usage | None,
        cost_usd: float | None,
    ) -> None:
        """Nothing to settle."""
        return None

    def owes(self, principal: Principal) -> bool:
        """Whether `settle` has work for this principal's requests; when no guard has, no task is started."""
        return True


class Guards:
    """The ordered guards; empty (the default), or only keyed guards and a caller without a virtual key,
    costs one call per request (`concern`)."""

    def __init__(self, guards: Sequence[Guard] = ()) -> None:
        self.guards = tuple(guards)
        # Only settles a guard defines itself are run: an inherited no-op would cost a task per request.
        self._settling = tuple(g for g in self.guards if type(g).settle is not Guard.settle)
        self._unkeyed = any(not g.keyed for g in self.guards)
        self._tasks: set[asyncio.Task[None]] = set()

    @classmethod
    def from_settings(cls, settings: Settings, *last: Guard) -> Guards:
        """The configured guards, cheap local refusals first; `last` (the key limits' Redis reservation)."""
        guards: list[Guard] = []
        if settings.max_request_usd is not None:
            guards.append(MaxCostGuard(settings.max_request_usd))
        return cls([*guards, *last])

    def __bool__(self) -> bool:
        return bool(self.guards)

    def concern(self, principal: Principal) -> bool:
        """Whether any guard acts on this principal's requests: if not, neither admit nor settle runs."""
        return self._unkeyed or (principal.key is not None and bool(self.guards))

    async def admit(self, principal: Principal, plan: Plan, req: RequestRecord) -> None:
        """Each guard in order; the first refusal stops the request before any upstream call."""
        for guard in self.guards:
            await guard.admit(principal, plan, req)

    def settle(
        self,
        principal: Principal,
        plan: Plan,
        req: RequestRecord,
        usage: Usage | None,
        cost_usd: float | None,
    ) -> None:
        """Starts the guards' settlement in one task: a client that leaves cannot cut a ledger write short."""
        for guard in self._settling:  # a plain loop, not any() over a generator: this runs per request
            if guard.owes(principal):
                break
        else:
            return
        task = asyncio.get_running_loop().create_task(self._settle(principal, plan, req, usage, cost_usd))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _settle(
        self,
        principal: Principal,
        plan: Plan,
        req: RequestRecord,
        usage: Usage | None,
        cost_usd: float | None,
    ) -> None:
        for guard in self._settling:
            try:
                await guard.settle(principal, plan, req, usage, cost_usd)
            except Exception as exc:  # noqa: BLE001 - one guard's failure must not skip the next one's
                log.error(
                    "guard settle failed",
                    extra={"request_id": req.request_id, "guard": type(guard).__name__,
                           "exc_type": type(exc).__name__},
                )  # fmt: skip

    async def drain(self) -> None:
        """Waits for the settlements still running (shutdown, tests)."""
        while self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)


class MaxCostGuard(Guard):
    """A per-request spending cap (ROUTEWAY_MAX_REQUEST_USD) on the predicted cost: prompt tokens plus the
    output the request may produce (`max_tokens`, else the route's expected output) at each candidate's
    prices. Candidates above the cap are dropped so that no failover can exceed it; a request that no
    candidate can serve under the cap is refused with a 400 before any upstream call."""

    def __init__(self, max_usd: float) -> None:
        self.max_usd = max_usd

    async def admit(self, principal: Principal, plan: Plan, req: RequestRecord) -> None:
        cap = self.max_usd
        kept = [s for s in plan.ranked if s.cost_usd <= cap]
        if len(kept) == len(plan.ranked):
            return
        if not kept:
            est = plan.estimate
            cheapest = min(s.cost_usd for s in plan.ranked)
            raise CostLimitExceeded(
                f"The request's predicted cost (${cheapest:.6f} at the cheapest backend for ~"
                f"{est.input_tokens} input and up to {est.output_tokens} output tokens) is above this "
                f"gateway's per-request cap of ${cap:.6f}: lower max_tokens or shorten the prompt",
                param="max_tokens",
            )
        plan.dropped += [
            Dropped(s.target.backend, f"predicted cost ${s.cost_usd:.6f} is above the request cap ${cap:.6f}")
            for s in plan.ranked
            if s.cost_usd > cap
        ]
        plan.ranked = kept
