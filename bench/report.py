"""Renders a run's results as Markdown tables: printed to the console and written into docs/benchmarks.md."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from bench import goals

BEGIN = "<!-- bench:generated:begin (written by `make bench`; edits inside are overwritten) -->"
END = "<!-- bench:generated:end -->"

ORDER = (
    "upstream",
    "sim",
    "routeway",
    "routeway-nolog",
    "fastapi-aiohttp",
    "asgi-aiohttp",
    "fastapi-httpx",
    "fastapi-httpx-aiohttp",
    "litellm",
)


def _n(value: float | None, digits: int = 0) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _x(a: float | None, b: float | None) -> str:
    return "-" if not a or not b else f"{a / b:.2f}×"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(row) + " |" for row in rows]
    return out


def _label(results: dict[str, Any], name: str) -> str:
    label: str = results["labels"].get(name, name)
    return label


def throughput(results: dict[str, Any]) -> list[str]:
    conc = sorted(
        {c for rows in (results["throughput"], results["ceiling"]) for r in rows.values() for c in r}, key=int
    )
    header = ["server (1 worker on its own core)"]
    for c in conc:
        header += [f"req/s c={c}", "× ref", f"p99 ms c={c}"]
    header.append("errors")
    rows = []
    for name in ORDER:
        row_data = results["throughput"].get(name) or results["ceiling"].get(name)
        if not row_data:
            continue
        row = [_label(results, name) + (" — ceiling" if name in results["ceiling"] else "")]
        for c in conc:
            cell = row_data.get(c)
            ref = goals.rps(results, goals.REF, c)
            row += [_n(cell and cell["rps"]), _x(cell and cell["rps"], ref), _ms(cell and cell["p99_ms"])]
        row.append(str(sum(cell["errors"] for cell in row_data.values())))
        rows.append(row)
    out = _table(header, rows)
    lite = [
        f"c={c}: {_x(goals.rps(results, goals.GATEWAY, c), goals.rps(results, 'litellm', c))}"
        for c in conc
        if goals.rps(results, "litellm", c)
    ]
    if lite:
        out += ["", "Routeway (access log on) ÷ LiteLLM: " + ", ".join(lite)]
    return out


def _plus(results: dict[str, Any], table: str, name: str, key: str) -> str:
    if name == "upstream":
        return "(baseline)"
    value = goals.added(results, table, name, key)
    return "-" if value is None else f"{value:+.2f}"


def latency(results: dict[str, Any]) -> list[str]:
    rate = results.get("fixed_rate", 200)
    header = [
        "server",
        "p50 ms",
        "p99 ms",
        "added p50",
        "added p99",
        "TTFB p50",
        "TTFB p99",
        "added TTFB p50",
    ]
    rows = []
    for name in ORDER:
        fixed, ttfb = results["fixed"].get(name), results["ttfb"].get(name)
        if not fixed and not ttfb:
            continue
        rows.append(
            [
                _label(results, name),
                _ms(fixed and fixed["p50_ms"]),
                _ms(fixed and fixed["p99_ms"]),
                _plus(results, "fixed", name, "p50_ms"),
                _plus(results, "fixed", name, "p99_ms"),
                _ms(ttfb and ttfb["ttfb_p50_ms"]),
                _ms(ttfb and ttfb["ttfb_p99_ms"]),
                _plus(results, "ttfb", name, "ttfb_p50_ms"),
            ]
        )
    lags = [r["send_lag_p99_ms"] for t in ("fixed", "ttfb") for r in results[t].values() if r]
    errors = sum(r["errors"] + r["timeouts"] for t in ("fixed", "ttfb") for r in results[t].values() if r)
    note = (
        f"Open loop at {rate:g} req/s (non-streaming for p50/p99, `stream: true` for TTFB = first body "
        f"byte). Errors + timeouts across these runs: {errors}. Generator send lag p99 at most "
        f"{max(lags, default=0):.2f} ms (uvloop timers have 1 ms resolution; latency is timed from the "
        "actual send)."
    )
    return [*_table(header, rows), "", note]


def sweep(results: dict[str, Any]) -> list[str]:
    names = [n for n in ORDER if results["sweep"].get(n)]
    if not names:
        return ["(no sweep in this run)"]
    rates = sorted({p["offered_rps"] for n in names for p in results["sweep"][n]})
    header = ["offered req/s"] + [f"{_label(results, n)} p50 / p99 ms" for n in names]
    rows = []
    for rate in rates:
        row = [f"{rate:,.0f}"]
        for n in names:
            point = next((p for p in results["sweep"][n] if p["offered_rps"] == rate), None)
            if point is None:
                row.append("(saturated earlier)")
                continue
            cell = f"{_ms(point['p50_ms'])} / {_ms(point['p99_ms'])}"
            if point["achieved_rps"] < 0.9 * rate or point["timeouts"] or point["shed"]:
                cell += f" (only {point['achieved_rps']:,.0f} req/s served)"
            row.append(cell)
        rows.append(row)
    return _table(header, rows)


def held_streams(results: dict[str, Any]) -> list[str]:
    header = ["server", "streams", "completed", "max open at once", "errors", "RSS before MB", "RSS peak MB"]
    rows = []
    for name, s in results["streams"].items():
        kinds = ", ".join(f"{k}: {v}" for k, v in s["error_kinds"].items())
        rows.append(
            [
                _label(results, name),
                f"{s['streams']:,}",
                f"{s['completed']:,}",
                f"{s['max_open']:,}",
                f"{s['errors']}" + (f" ({kinds})" if kinds else ""),
                f"{s['rss_before_mb']:.0f}",
                f"{s['rss_peak_mb']:.0f}",
            ]
        )
    return _table(header, rows) if rows else ["(not measured in this run)"]


def workers(results: dict[str, Any]) -> list[str]:
    w = results["workers"]
    if not w:
        return ["(not measured in this run)"]
    rows = []
    for c in sorted(w.get("1", {}), key=int):
        one, two = w["1"][c]["rps"], w.get("2", {}).get(c, {}).get("rps")
        pinned = goals.rps(results, goals.GATEWAY, c)
        rows.append([f"c={c}", _n(pinned), _n(one), _n(two), _x(two, one), _x(two, pinned)])
    header = [
        "load",
        "1 worker pinned",
        "1 worker unpinned",
        "2 workers unpinned",
        "2 ÷ 1 unpinned",
        "2 ÷ 1 pinned",
    ]
    return _table(header, rows)


def goal_table(results: dict[str, Any]) -> list[str]:
    rows = [[g.target, g.measured, g.verdict] for g in goals.evaluate(results)]
    return _table(["target", "measured", "verdict"], rows)


def profile(results: dict[str, Any]) -> list[str]:
    p = results.get("profile")
    if not p:
        return ["(no profile in this run)"]
    if p.get("error"):
        return [f"(profile failed: {p['error']})"]
    out = [
        f"py-spy, {p['sampled_s']} s of busy samples at c={results.get('profile_concurrency', 32)} "
        f"(file: `{Path(p['path']).name}`, open it in https://www.speedscope.app).",
        "",
        "Threads: " + ", ".join(f"{n} {v}%" for n, v in p["threads"]),
        "",
    ]
    out += _table(["self time by package", "%"], [[n, f"{v}"] for n, v in p["by_package"][:10]])
    out += [""]
    out += _table(["hottest functions (self time)", "%"], [[f"`{n}`", f"{v}"] for n, v in p["top_self"][:12]])
    out += [""]
    out += _table(
        ["Routeway functions (inclusive time)", "%"], [[f"`{n}`", f"{v}"] for n, v in p["top_routeway"][:12]]
    )
    return out


def machine(results: dict[str, Any]) -> list[str]:
    m = results["machine"]
    cores = results["cores"]
    return [
        f"- Command: `{results['command']}` ({results['options']})",
        f"- Date: {results.get('date', time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime()))}, "
        f"run time {results.get('elapsed_s', '?')} s",
        f"- Machine: nproc {m['nproc']}, {m['cpu']}, kernel {m['kernel']}, Python {m['python']}",
        f"- Libraries (project venv; the pass-throughs use the same pinned versions in bench/.venv): "
        f"{m['libraries']}" + "".join(f", {k} {v}" for k, v in results["versions"].items()),
        f"- Pinning: each server under test on core {cores['server']}; wrk, the open-loop generator and the "
        f"upstream on core {cores['load']}. Load average at start: {m['load_average_at_start']}.",
    ]


def markdown(results: dict[str, Any], plot: str | None) -> str:
    quick = " — QUICK MODE (short runs, indicative only)" if results["quick"] else ""
    lines = [f"### Results of the last run{quick}", "", *machine(results), ""]
    if results["notes"]:
        lines += ["Notes from the run:", "", *[f"- {n}" for n in results["notes"]], ""]
    lines += ["#### Targets", "", *goal_table(results), ""]
    lines += [
        "#### Throughput (wrk, closed loop, small non-streaming completions)",
        "",
        *throughput(results),
        "",
    ]
    lines += ["#### Added latency and streaming time to first byte", "", *latency(results), ""]
    lines += ["#### Latency against offered load (open loop)", ""]
    if plot:
        lines += [f"![latency vs offered load]({plot})", ""]
    lines += [*sweep(results), ""]
    lines += ["#### Many open streams", "", *held_streams(results), ""]
    lines += ["#### Workers", "", *workers(results), ""]
    lines += ["#### Profile of Routeway under load", "", *profile(results), ""]
    return "\n".join(lines)


def write_doc(path: Path, section: str, template: str) -> None:
    """Replaces the generated section between the markers; creates the file from `template` if needed."""
    text = path.read_text() if path.exists() else template
    if BEGIN not in text or END not in text:
        text = text.rstrip("\n") + f"\n\n{BEGIN}\n{END}\n"
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"{head}{BEGIN}\n\n{section.strip()}\n\n{END}{tail}")
