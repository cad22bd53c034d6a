"""The spend ledger: per virtual key, UTC day, model and backend: requests, input/output tokens and cost.

With Redis the rows are written by the limits' settle script (limits.py, same round trip, never twice) and
read here; without Redis they go to the SQLite file that also holds the keys. Reads are for `/v1/usage`,
`/admin/usage` and `routeway usage`, never on a request's path.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

from gateway.access.keys import VirtualKey
from gateway.access.keystore import KeyStoreUnavailable
from gateway.access.limits import NANO, SEP, LedgerRow, tag
from gateway.telemetry import redis_client

MAX_DAYS = 366  # one query's range: bounded whatever the caller asks


@dataclass(frozen=True, slots=True)
class UsageRow:
    key_id: str
    key_name: str
    team: str
    day: str  # YYYY-MM-DD
    model: str
    backend: str
    requests: int
    input_tokens: int
    output_tokens: int
    cost_usd: float

    def json(self) -> dict[str, Any]:
        return {
            "key_id": self.key_id,
            "key_name": self.key_name,
            "team": self.team,
            "date": self.day,
            "model": self.model,
            "backend": self.backend,
            "requests": self.requests,
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "cost_usd": round(self.cost_usd, 9),
        }


class LedgerRangeError(ValueError):
    """A `from`/`to` that is not a date, is reversed or spans more than MAX_DAYS."""


def days(start: str | None, end: str | None, today: date | None = None) -> list[str]:
    """The UTC days from `start` to `end` inclusive (ISO dates; default: the last 30 days), as YYYYMMDD."""
    today = today or datetime.now(UTC).date()
    try:
        last = date.fromisoformat(end) if end else today
        first = date.fromisoformat(start) if start else last - timedelta(days=29)
    except ValueError:
        raise LedgerRangeError("'from' and 'to' must be dates as YYYY-MM-DD") from None
    if first > last:
        raise LedgerRangeError("'from' is after 'to'")
    if (last - first).days >= MAX_DAYS:
        raise LedgerRangeError(f"a usage query spans at most {MAX_DAYS} days")
    return [(first + timedelta(days=i)).strftime("%Y%m%d") for i in range((last - first).days + 1)]


def _iso(day: str) -> str:
    return f"{day[:4]}-{day[4:6]}-{day[6:]}"


class UsageReader(Protocol):
    async def rows(self, keys: Sequence[VirtualKey], days: Sequence[str]) -> list[UsageRow]: ...


class RedisLedger:
    """Reads the ledger hashes the settle script writes: one pipelined HGETALL per key and day."""

    def __init__(self, client: redis_client.Client, prefix: str) -> None:
        self._client = client
        self._prefix = prefix

    async def rows(self, keys: Sequence[VirtualKey], days: Sequence[str]) -> list[UsageRow]:
        pairs = [(k, d) for k in keys for d in days]
        if not pairs:
            return []
        try:
            await redis_client.discover(self._client, refresh=False)
            pipe = self._client.pipeline(transaction=False)
            for k, d in pairs:
                pipe.hgetall(f"{tag(self._prefix, k.id)}:ledger:{d}")
            results = await pipe.execute()
        except redis_client.FAILURES as exc:
            raise KeyStoreUnavailable(type(exc).__name__) from None
        out: list[UsageRow] = []
        for (k, d), fields in zip(pairs, results, strict=True):
            out += _rows_from_hash(k, d, fields)
        return out


def _rows_from_hash(key: VirtualKey, day: str, fields: dict[bytes, bytes]) -> list[UsageRow]:
    grouped: dict[tuple[str, str], dict[str, int]] = {}
    for name, value in fields.items():
        model, backend, what = name.decode(errors="replace").split(SEP, 2)
        grouped.setdefault((model, backend), {})[what] = int(value)
    return [
        UsageRow(
            key.id,
            key.name,
            key.team,
            _iso(day),
            model,
            backend,
            v.get("n", 0),
            v.get("in", 0),
            v.get("out", 0),
            v.get("usd", 0) / NANO,
        )  # fmt: skip
        for (model, backend), v in sorted(grouped.items())
    ]


_SCHEMA = """
CREATE TABLE IF NOT EXISTS ledger (
    key_id TEXT NOT NULL, day TEXT NOT NULL, model TEXT NOT NULL, backend TEXT NOT NULL,
    requests INTEGER NOT NULL, input_tokens INTEGER NOT NULL, output_tokens INTEGER NOT NULL,
    cost_nano INTEGER NOT NULL,
    PRIMARY KEY (key_id, day, model, backend)
)
"""
_UPSERT = """
INSERT INTO ledger VALUES (?, ?, ?, ?, 1, ?, ?, ?)
ON CONFLICT (key_id, day, model, backend) DO UPDATE SET requests = requests + 1,
    input_tokens = input_tokens + excluded.input_tokens,
    output_tokens = output_tokens + excluded.output_tokens,
    cost_nano = cost_nano + excluded.cost_nano
"""


class SqliteLedger:
    """The ledger in the local SQLite file (no Redis): one upsert per settled request, in a thread."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def _run(self, sql: str, params: Sequence[object]) -> list[tuple[Any, ...]]:
        if sql.startswith("SELECT") and not self.path.exists():
            return []
        conn = sqlite3.connect(self.path, timeout=5.0)
        try:
            with conn:
                conn.execute(_SCHEMA)
                return conn.execute(sql, params).fetchall()
        finally:
            conn.close()

    async def add(self, key: VirtualKey, day: str, row: LedgerRow) -> None:
        params = (key.id, day, row.model, row.backend, row.input_tokens, row.output_tokens, row.cost_nano)
        await asyncio.to_thread(self._run, _UPSERT, params)

    async def rows(self, keys: Sequence[VirtualKey], days: Sequence[str]) -> list[UsageRow]:
        if not keys or not days:
            return []
        by_id = {k.id: k for k in keys}
        marks = ",".join("?" * len(by_id))
        sql = (
            "SELECT key_id, day, model, backend, requests, input_tokens, output_tokens, cost_nano "
            f"FROM ledger "
            f"WHERE key_id IN ({marks}) AND day BETWEEN ? AND ? ORDER BY key_id, day, model, backend"
        )
        found = await asyncio.to_thread(self._run, sql, (*by_id, min(days), max(days)))
        out = []
        for kid, day, model, backend, n, tin, tout, cost in found:
            k = by_id[kid]
            out.append(UsageRow(kid, k.name, k.team, _iso(day), model, backend, n, tin, tout, cost / NANO))
        return out
