"""The dashboard's memory of recent traffic (an Observer): the last decisions and 10-second traffic buckets.

The hook runs for every request, so it only appends: the finished RequestRecord goes into a bounded ring
(its ranked candidates stay references to the router's own objects, rendered to JSON only when someone
asks), and one row of floats per (route, backend) in the current bucket is bumped. Everything derived
(rates, shares, cost per hour, tokens per joule) is computed at read time from at most an hour of buckets.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from gateway.events import AttemptRecord, Observer, RequestRecord
from gateway.routing.hardware import joules_per_token
from gateway.routing.scoring import PREFILL_ENERGY_SHARE

BUCKET_S = 10
HORIZON_S = 3600
NO_ROUTE = "-"  # the request failed before a route was chosen (bad input, unknown model)
NO_BACKEND = "-"  # no backend answered

# One row of counters per (route, backend) and bucket; indexes into the row:
REQUESTS, ERRORS, FAILOVERS, HEDGES, COST, TOKENS_IN, TOKENS_OUT, JOULES = range(8)
WIDTH = 8

Pair = tuple[str, str]  # (route, backend)
Rows = dict[Pair, list[float]]


@dataclass(slots=True)
class Bucket:
    slot: int  # epoch seconds // BUCKET_S of the requests that finished in it
    rows: Rows


def is_error(status: int | None) -> bool:
    """A request the gateway failed to serve: 5xx and 429 (the client's own mistakes are not the fleet's)."""
    return status is None or status >= 500 or status == 429


def extra_attempts(attempts: list[AttemptRecord]) -> tuple[int, int]:
    """(failovers, hedges): an attempt started before the previous one ended is a hedge, else a failover."""
    failovers = hedges = 0
    for before, att in zip(attempts, attempts[1:], strict=False):
        if before.duration_s is None or att.started < before.started + before.duration_s:
            hedges += 1
        else:
            failovers += 1
    return failovers, hedges


def served_by(req: RequestRecord) -> AttemptRecord | None:
    for att in reversed(req.attempts):
        if att.outcome == "ok":
            return att
    return None


def energy_j(att: AttemptRecord | None, input_tokens: int, output_tokens: int) -> float:
    """The same estimate the `greenest` objective ranks on, for the tokens actually billed."""
    if att is None:
        return 0.0
    target = att.target
    per_token = joules_per_token(target.hardware, target.joules_per_token)
    return per_token * (output_tokens + input_tokens * PREFILL_ENERGY_SHARE)


class Recent(Observer):
    """Only `request_finished` is defined, so the other three events never call into it."""

    def __init__(self, decisions: int = 100) -> None:
        self.decisions: deque[RequestRecord] = deque(maxlen=decisions)
        self.buckets: deque[Bucket] = deque(maxlen=HORIZON_S // BUCKET_S + 1)

    def request_finished(self, req: RequestRecord) -> None:
        self.decisions.append(req)
        slot = int(req.started_wall + (req.duration_s or 0.0)) // BUCKET_S
        buckets = self.buckets
        if not buckets or slot > buckets[-1].slot:
            buckets.append(Bucket(slot, {}))
        rows = buckets[-1].rows  # a request finishing "in the past" (a clock step) counts as now
        pair = (req.route or NO_ROUTE, req.backend or NO_BACKEND)
        row = rows.get(pair)
        if row is None:
            row = rows[pair] = [0.0] * WIDTH
        row[REQUESTS] += 1
        if is_error(req.status):
            row[ERRORS] += 1
        if len(req.attempts) > 1:
            failovers, hedges = extra_attempts(req.attempts)
            row[FAILOVERS] += failovers
            row[HEDGES] += hedges
        if req.backend is not None:
            tin, tout = req.input_tokens or 0, req.output_tokens or 0
            row[COST] += req.cost_usd or 0.0
            row[TOKENS_IN] += tin
            row[TOKENS_OUT] += tout
            if tin or tout:
                row[JOULES] += energy_j(served_by(req), tin, tout)

    def totals(self, seconds: float, now: float) -> Rows:
        """Every row summed over the buckets of the last `seconds`, per (route, backend)."""
        first = int(now - seconds) // BUCKET_S + 1
        out: Rows = {}
        for bucket in self.buckets:
            if bucket.slot < first:
                continue
            for pair, row in bucket.rows.items():
                acc = out.get(pair)
                if acc is None:
                    out[pair] = list(row)
                else:
                    for i, value in enumerate(row):
                        acc[i] += value
        return out

    def series(self, seconds: float, now: float) -> tuple[list[int], dict[Pair, list[int]]]:
        """Bucket start times (epoch s) over the last `seconds` and the requests per bucket of each pair,
        zeros included so the chart shows quiet periods."""
        last = int(now) // BUCKET_S
        first = last - int(seconds) // BUCKET_S + 1
        times = [slot * BUCKET_S for slot in range(first, last + 1)]
        counts: dict[Pair, list[int]] = {}
        for bucket in self.buckets:
            if first <= bucket.slot <= last:
                for pair, row in bucket.rows.items():
                    line = counts.get(pair)
                    if line is None:
                        line = counts[pair] = [0] * len(times)
                    line[bucket.slot - first] += int(row[REQUESTS])
        return times, counts
