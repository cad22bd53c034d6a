"""The bench's outputs as text: a terminal table, JSON and CSV."""

from __future__ import annotations

import csv
import io
from typing import Any

import orjson

from gateway.workbench.stats import Figures

COLUMNS: tuple[tuple[str, str], ...] = (
    ("backend", "backend"),
    ("hardware", "hardware"),
    ("requests", "reqs"),
    ("errors", "errors"),
    ("ttft_p50_ms", "ttft p50"),
    ("ttft_p95_ms", "ttft p95"),
    ("ttft_p99_ms", "ttft p99"),
    ("tokens_per_s_p50", "tok/s p50"),
    ("e2e_p95_ms", "e2e p95"),
    ("input_price", "$/1M in"),
    ("output_price", "$/1M out"),
    ("cost_usd", "$ run"),
    ("joules_per_output_token", "J/tok*"),
    ("output_tokens_per_joule", "tok/J*"),
    ("min_requests_remaining", "req left"),
)
ENERGY_NOTE = "* energy: estimates from the hardware catalog (gateway/routing/hardware.py), not measured"


def cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, dict):
        return ",".join(f"{k}:{n}" for k, n in sorted(value.items())) or "0"
    if isinstance(value, float):
        return f"{value:.6f}".rstrip("0").rstrip(".") if abs(value) < 1 else f"{value:,.1f}"
    return str(value)


def table(rows: list[Figures]) -> str:
    """A plain-text table, one line per backend, columns aligned."""
    header = [title for _, title in COLUMNS]
    cells = [[cell(getattr(r, name)) for name, _ in COLUMNS] for r in rows]
    widths = [max(len(c) for c in col) for col in zip(header, *cells, strict=True)]
    lines = ["  ".join(c.rjust(w) for c, w in zip(line, widths, strict=True)) for line in [header, *cells]]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join([*lines, ENERGY_NOTE])


def to_json(rows: list[Figures], extra: dict[str, Any]) -> bytes:
    doc = {"backends": [r.as_dict() for r in rows], "energy_is_estimate": True, **extra}
    return orjson.dumps(doc, option=orjson.OPT_INDENT_2)


def to_csv(rows: list[Figures]) -> str:
    out = io.StringIO()
    names = list(Figures.__slots__)
    writer = csv.writer(out)
    writer.writerow(names)
    for r in rows:
        writer.writerow([_csv_cell(getattr(r, n)) for n in names])
    return out.getvalue()


def _csv_cell(value: Any) -> Any:
    if isinstance(value, dict):
        return ";".join(f"{k}={n}" for k, n in sorted(value.items()))
    return "" if value is None else value
