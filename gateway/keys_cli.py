"""`routeway keys create|list|show|revoke|rotate` and `routeway usage`: the same store as the server.

They read the server's settings (ROUTEWAY_REDIS_URL, else the SQLite file ROUTEWAY_KEYS_DB), so a key made
here works at once on every replica. A new or rotated key is printed alone on the last line of stdout.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Annotated, Any, TypeVar

import orjson
import typer

from gateway.access import keyadmin
from gateway.access.keys import VirtualKey
from gateway.access.ledger import LedgerRangeError, UsageRow, days
from gateway.access.tenancy import Tenancy
from gateway.errors import GatewayError
from gateway.settings import Settings

keys_app = typer.Typer(add_completion=False, no_args_is_help=True, help="Manage virtual keys.")
T = TypeVar("T")


def _run(work: Callable[[Tenancy], Awaitable[T]]) -> T:
    async def main() -> T:
        tenancy = Tenancy.from_settings(Settings())
        try:
            return await work(tenancy)
        finally:
            await tenancy.close()

    try:
        return asyncio.run(main())
    except GatewayError as err:
        typer.echo(f"error: {err.message}", err=True)
        raise typer.Exit(1) from None


def _describe(key: VirtualKey) -> str:
    lim = key.limits
    parts = [f"id={key.id}", f"name={key.name}", f"team={key.team}", f"status={key.public()['status']}"]
    parts.append(f"models={','.join(key.models) or '*'}")
    for label, value in (("rpm", lim.rpm), ("tpm", lim.tpm), ("daily_usd", lim.daily_usd),
                         ("monthly_usd", lim.monthly_usd)):  # fmt: skip
        if value is not None:
            parts.append(f"{label}={value:g}" if isinstance(value, float) else f"{label}={value}")
    if key.expires_at is not None:
        parts.append(f"expires={datetime.fromtimestamp(key.expires_at, UTC).isoformat()}")
    return " ".join(parts)


@keys_app.command()
def create(
    name: Annotated[str, typer.Option(help="who or what the key is for")],
    team: Annotated[str, typer.Option(help="team label (metrics and usage group by it)")] = "default",
    models: Annotated[str | None, typer.Option(help="allowed model globs, comma-separated")] = None,
    rpm: Annotated[int | None, typer.Option(help="requests per minute")] = None,
    tpm: Annotated[int | None, typer.Option(help="tokens per minute")] = None,
    daily_budget: Annotated[float | None, typer.Option(help="USD per UTC day")] = None,
    monthly_budget: Annotated[float | None, typer.Option(help="USD per UTC month")] = None,
    expires: Annotated[str | None, typer.Option(help="ISO date or date-time (UTC)")] = None,
) -> None:
    """Create a key; its secret is printed once, alone on the last line."""
    doc: dict[str, Any] = {"name": name, "team": team, "rpm": rpm, "tpm": tpm, "expires": expires}
    doc |= {"daily_budget": daily_budget, "monthly_budget": monthly_budget}
    doc["models"] = [m.strip() for m in models.split(",") if m.strip()] if models else []
    spec = keyadmin.parse_spec({k: v for k, v in doc.items() if v is not None})
    key, secret = _run(lambda t: keyadmin.create(t.store, spec))
    typer.echo(f"created {_describe(key)}")
    typer.echo(secret)


@keys_app.command(name="list")
def list_keys(as_json: Annotated[bool, typer.Option("--json", help="JSON lines")] = False) -> None:
    """Every key (never a secret)."""
    found = _run(lambda t: t.store.all())
    for key in found:
        typer.echo(orjson.dumps(key.public()).decode() if as_json else _describe(key))


@keys_app.command()
def show(key_id: Annotated[str, typer.Argument(help="the key's id (vk_...)")]) -> None:
    """One key as JSON."""
    key = _run(lambda t: keyadmin.get(t.store, key_id))
    typer.echo(orjson.dumps(key.public(), option=orjson.OPT_INDENT_2).decode())


@keys_app.command()
def revoke(key_id: Annotated[str, typer.Argument(help="the key's id (vk_...)")]) -> None:
    """Revoke a key: every replica refuses it within ROUTEWAY_KEY_CACHE_S."""
    key = _run(lambda t: keyadmin.revoke(t.store, key_id))
    typer.echo(f"revoked {_describe(key)}")


@keys_app.command()
def rotate(key_id: Annotated[str, typer.Argument(help="the key's id (vk_...)")]) -> None:
    """A new secret for the key (same id, limits and spend); the old one stops working."""
    key, secret, _ = _run(lambda t: keyadmin.rotate(t.store, key_id))
    typer.echo(f"rotated {_describe(key)}")
    typer.echo(secret)


def usage(
    team: Annotated[str | None, typer.Option(help="only this team's keys")] = None,
    start: Annotated[str | None, typer.Option("--from", help="first day (YYYY-MM-DD)")] = None,
    end: Annotated[str | None, typer.Option("--to", help="last day, YYYY-MM-DD (default: today)")] = None,
) -> None:
    """Spend per key, day, model and backend, as a table."""
    try:
        span = days(start, end)
    except LedgerRangeError as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(2) from None

    async def rows(t: Tenancy) -> list[UsageRow]:
        found = [k for k in await t.store.all() if team is None or k.team == team]
        return await t.usage.rows(found, span)

    typer.echo(table(_run(rows)))


def table(rows: list[UsageRow]) -> str:
    head = ("date", "team", "key", "model", "backend", "requests", "in_tokens", "out_tokens", "cost_usd")
    lines = [
        (
            r.day,
            r.team,
            r.key_name,
            r.model,
            r.backend,
            str(r.requests),
            str(r.input_tokens),
            str(r.output_tokens),
            f"{r.cost_usd:.6f}",
        )  # fmt: skip
        for r in rows
    ]
    sums = [
        sum(r.requests for r in rows),
        sum(r.input_tokens for r in rows),
        sum(r.output_tokens for r in rows),
    ]
    total = ("total", "", "", "", "", *map(str, sums), f"{sum(r.cost_usd for r in rows):.6f}")
    widths = [max(len(row[i]) for row in (head, *lines, total)) for i in range(len(head))]
    return "\n".join(_line(row, widths) for row in (head, *lines, total))


def _line(row: tuple[str, ...], widths: list[int]) -> str:
    """Text columns left-aligned, the counts (from the sixth column on) right-aligned."""
    cells = [c.rjust(w) if i >= 5 else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True))]
    return "  ".join(cells).rstrip()
