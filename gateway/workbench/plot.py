"""Latency against cost per backend as a hand-written SVG (Pareto frontier marked), and the HTML page."""

from __future__ import annotations

import html
from collections.abc import Callable

from gateway.workbench.report import COLUMNS, ENERGY_NOTE, cell
from gateway.workbench.stats import Figures, pareto

W, H, PAD = 640, 400, 60
_COLOURS = ("#2563eb", "#dc2626", "#16a34a", "#9333ea", "#ea580c", "#0891b2", "#ca8a04", "#db2777")


def _points(rows: list[Figures]) -> list[tuple[Figures, float, float]]:
    """(row, $ per request, p95 TTFT ms) for each backend that answered at least once."""
    return [(r, r.cost_usd / r.ok, r.ttft_p95_ms) for r in rows if r.ok and r.ttft_p95_ms is not None]


def svg(rows: list[Figures], title: str = "p95 TTFT vs cost per request") -> str:
    pts = _points(rows)
    if not pts:
        return _frame(title, '<text x="320" y="200" text-anchor="middle">no successful requests</text>')
    xs, ys = [p[1] for p in pts], [p[2] for p in pts]
    sx, sy = _scale(min(xs), max(xs), PAD, W - PAD), _scale(min(ys), max(ys), H - PAD, PAD)
    front = sorted((pts[i] for i in pareto([(p[1], p[2]) for p in pts])), key=lambda p: p[1])
    parts = [_axes(min(xs), max(xs), min(ys), max(ys))]
    if len(front) > 1:
        path = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for _, x, y in front)
        parts.append(f'<polyline points="{path}" fill="none" stroke="#888" stroke-dasharray="5,4"/>')
    on_front = {id(p[0]) for p in front}
    for i, (row, x, y) in enumerate(pts):
        colour = _COLOURS[i % len(_COLOURS)]
        ring = ' stroke="#111" stroke-width="2"' if id(row) in on_front else ""
        name = html.escape(row.backend)
        parts.append(f'<circle cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="7" fill="{colour}"{ring}/>')
        parts.append(f'<text x="{sx(x) + 10:.1f}" y="{sy(y) - 8:.1f}" font-size="12">{name}</text>')
    parts.append(
        f'<text x="{W - PAD}" y="{PAD - 20}" font-size="11" text-anchor="end">'
        "ringed, dashed: Pareto frontier (nothing is both cheaper and faster)</text>"
    )
    return _frame(title, "\n".join(parts))


def _scale(lo: float, hi: float, out_lo: float, out_hi: float) -> Callable[[float], float]:
    span = hi - lo or abs(hi) or 1.0
    lo, hi = lo - span * 0.1, hi + span * 0.1

    def at(v: float) -> float:
        return out_lo + (v - lo) / (hi - lo) * (out_hi - out_lo)

    return at


def _axes(x0: float, x1: float, y0: float, y1: float) -> str:
    return (
        f'<line x1="{PAD}" y1="{H - PAD}" x2="{W - PAD}" y2="{H - PAD}" stroke="#333"/>'
        f'<line x1="{PAD}" y1="{H - PAD}" x2="{PAD}" y2="{PAD}" stroke="#333"/>'
        f'<text x="{W / 2}" y="{H - 15}" text-anchor="middle" font-size="12">'
        f"$ per request ({x0:.2g} to {x1:.2g})</text>"
        f'<text x="18" y="{H / 2}" text-anchor="middle" font-size="12" transform="rotate(-90 18 {H / 2})">'
        f"p95 TTFT ms ({y0:.0f} to {y1:.0f})</text>"
    )


def _frame(title: str, body: str) -> str:
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" '
        'font-family="sans-serif">\n<rect width="100%" height="100%" fill="#fff"/>\n'
        f'<text x="{W / 2}" y="24" text-anchor="middle" font-size="15">{html.escape(title)}</text>\n'
        f"{body}\n</svg>\n"
    )


def png(rows: list[Figures], path: str) -> bool:
    """A PNG through matplotlib when it happens to be installed; False (nothing written) otherwise."""
    try:
        import matplotlib  # type: ignore[import-not-found]

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt  # type: ignore[import-not-found]
    except ImportError:
        return False
    pts = _points(rows)
    fig, ax = plt.subplots(figsize=(6.4, 4))
    for row, x, y in pts:
        ax.scatter([x], [y])
        ax.annotate(row.backend, (x, y))
    ax.set_xlabel("$ per request")
    ax.set_ylabel("p95 TTFT ms")
    fig.savefig(path)
    plt.close(fig)
    return True


_CSS = (
    "body{font-family:sans-serif;margin:2em;color:#111}table{border-collapse:collapse}"
    "td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}th{background:#f3f4f6}"
    "pre{background:#f6f8fa;padding:1em}"
)


def page(rows: list[Figures], title: str, suggestion: str | None) -> str:
    """One self-contained page: the table, the inline SVG plot and the suggested route."""
    head = "".join(f"<th>{html.escape(t)}</th>" for _, t in COLUMNS)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(cell(getattr(r, n)))}</td>" for n, _ in COLUMNS) + "</tr>"
        for r in rows
    )
    policy = f"<h2>Suggested route</h2><pre>{html.escape(suggestion)}</pre>" if suggestion else ""
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{_CSS}</style></head><body><h1>{html.escape(title)}</h1>"
        f"<table><tr>{head}</tr>{body}</table><p>{html.escape(ENERGY_NOTE)}</p>"
        f"{svg(rows)}{policy}</body></html>\n"
    )
