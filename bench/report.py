"""Renders a run's results as Markdown tables: printed to the console and written into docs/benchmarks.md."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from bench import goals

NOISY_LAG_MS = 5.0
BEGIN = "<!-- bench:generated:begin (written by `make bench`; edits inside are overwritten) -->"
END = "<!-- bench:generated:end -->"

ORDER = (
    "upstream",
    "sim",
    "routeway",
    "routeway-nolog",
    "routeway-tracing",
    "routeway-tracing-10pct",
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
    header += [f"server CPU µs/req c={conc[0]}" if conc else "server CPU µs/req", "errors"]
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
        first = row_data.get(conc[0], {}) if conc else {}
        row.append(_n(first.get("cpu_us_per_req")))
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
    row = results[table].get(name)
    if row and row["offered_rps"] != results.get("fixed_rate", 200):
        return "n/a"
    value = goals.added(results, table, name, key)
    return "-" if value is None else f"{value:+.2f}"


def interleaved(results: dict[str, Any]) -> list[str]:
    inter = results.get("interleaved") or {}
    if not inter:
        return ["(not measured in this run)"]
    conc = sorted({c for by_c in inter.values() for c in by_c}, key=int)
    header = ["server (all running, wrk rounds alternating)"]
    for c in conc:
        header += [f"median req/s c={c}", "× ref", "rounds", f"CPU µs/req c={c}"]
    rows = []
    for name in ORDER:
        if name not in inter:
            continue
        row = [_label(results, name)]
        for c in conc:
            cell = inter[name].get(c)
            ref = inter.get(goals.REF, {}).get(c, {}).get("rps")
            rounds = ", ".join(f"{x:,.0f}" for x in cell["all_rps"]) if cell else "-"
            row += [
                _n(cell and cell["rps"]),
                _x(cell and cell["rps"], ref),
                rounds,
                _n(cell and cell["cpu_us_per_req"]),
            ]
        rows.append(row)
    return _table(header, rows)


def _cpu(results: dict[str, Any], name: str, concurrency: str) -> tuple[float | None, str]:
    """Server CPU µs per request at a concurrency, preferring the interleaved median."""
    inter = (results.get("interleaved") or {}).get(name, {}).get(concurrency)
    if inter and inter.get("cpu_us_per_req"):
        return inter["cpu_us_per_req"], "interleaved median"
    row = results["throughput"].get(name, {}).get(concurrency)
    return (row["cpu_us_per_req"], "own run") if row and row.get("cpu_us_per_req") else (None, "")


def _delta(a: float | None, b: float | None, digits: int = 2, unit: str = "") -> str:
    return "-" if a is None or b is None else f"{a - b:+,.{digits}f}{unit}"


def _sink_text(results: dict[str, Any]) -> str:
    """What the local OTLP receiver got, and whether tracing exported at all."""
    tracing = results.get("tracing") or {}
    windows = tracing.get("sink") or {}
    if not windows:
        return "OTLP sink: no counts in this run."
    parts = []
    for key, w in windows.items():
        spans = "" if w.get("spans") is None else f", {w['spans']:,} spans"
        per = "" if w.get("spans_per_request") is None else f" ({w['spans_per_request']} per gateway request)"
        served = "" if w.get("gateway_requests") is None else f" for {w['gateway_requests']:,} requests"
        parts.append(
            f"{key} phase: {w['export_requests']:,} export requests, {w['bytes'] / 1e6:.1f} MB{spans}"
            f"{served}{per}, sink CPU {w.get('cpu_s', 0):.1f} s"
        )
    exports = sum(w["export_requests"] for w in windows.values())
    verdict = (
        f"the sink received {exports:,} span export requests (POST /v1/traces)"
        if exports
        else "**tracing did NOT export**: the sink received no span export request"
    )
    return f"OTLP sink at {tracing.get('endpoint')}: {verdict}; " + "; ".join(parts) + "."


def tracing(results: dict[str, Any]) -> list[str]:
    """Routeway with tracing on (OTLP/HTTP to bench/otlp_sink.py) against the same without tracing."""
    on, off = goals.TRACED, goals.GATEWAY
    inter = results.get("interleaved") or {}
    measured = {**results["throughput"].get(on, {}), **inter.get(on, {})}
    if not measured and not results["fixed"].get(on):
        return ["(not measured in this run)"]
    rate = results.get("fixed_rate", 200)
    header = ["", "Routeway, tracing off", "Routeway, tracing on", "cost of tracing"]
    rows = []
    summary = []
    ratios = []
    for c in sorted(measured, key=int):
        pair = goals.paired_rps(results, on, off, c)
        if pair is None:
            continue
        ours, theirs, how = pair
        rows.append([f"req/s c={c} ({how})", _n(theirs), _n(ours), _x(ours, theirs)])
        ratios.append(f"{_x(ours, theirs)} at c={c}")
    if ratios:
        summary.append("throughput " + ", ".join(ratios) + " of tracing off")
    tenth = [
        f"{_x(pair[0], pair[1])} at c={c}"
        for c in sorted(inter.get(goals.TRACED_10, {}), key=int)
        if (pair := goals.paired_rps(results, goals.TRACED_10, off, c)) is not None
    ]
    if tenth:
        summary.append(
            "10% sampled: throughput " + ", ".join(tenth) + " of tracing off (interleaved medians)"
        )
    for c in sorted(measured, key=int):
        cpu_on, how_on = _cpu(results, on, c)
        cpu_off, _ = _cpu(results, off, c)
        rows.append(
            [
                f"server CPU µs/req c={c} ({how_on or '-'})",
                _n(cpu_off),
                _n(cpu_on),
                _delta(cpu_on, cpu_off, 0),
            ]
        )
        if cpu_on is not None and cpu_off is not None and c == sorted(measured, key=int)[0]:
            summary.append(
                f"CPU {cpu_on:,.0f} vs {cpu_off:,.0f} µs/req ({_delta(cpu_on, cpu_off, 0)}) at c={c}"
            )
    for table, key, what in (
        ("fixed", "p50_ms", "p50"),
        ("fixed", "p99_ms", "p99"),
        ("ttfb", "ttfb_p50_ms", "streaming TTFB p50"),
    ):
        row_on = results[table].get(on)
        if row_on and row_on["offered_rps"] != rate:
            rows.append([f"added {what} ms at {rate:g} req/s", "-", "n/a (lower rate)", "-"])
            continue
        a_on, a_off = goals.added(results, table, on, key), goals.added(results, table, off, key)
        rows.append(
            [
                f"added {what} ms at {rate:g} req/s",
                _delta(a_off, 0.0),
                _delta(a_on, 0.0),
                _delta(a_on, a_off, unit=" ms"),
            ]
        )
        if table == "fixed" and a_on is not None:
            summary.append(f"added {what} {a_on:+.2f} ms ({_delta(a_on, a_off, unit=' ms')} vs tracing off)")
    windows = (results.get("tracing") or {}).get("sink") or {}
    if windows:
        exports = sum(w["export_requests"] for w in windows.values())
        summary.append(
            f"{exports:,} span export requests received by the local sink"
            if exports
            else "tracing did NOT export (the sink received no span export request)"
        )
    line = "**Tracing cost**: " + ("; ".join(summary) if summary else "not enough data") + "."
    note = (
        "Tracing on = `OTEL_EXPORTER_OTLP_ENDPOINT` set to a local OTLP/HTTP protobuf receiver "
        "(bench/otlp_sink.py, on the load core, answering every export with 200 and an empty response); "
        "every other `OTEL_*` setting at its default (parent-based always-on sampling, batch span processor "
        "with the default schedule delay). Added latency is against the direct upstream, as above; the cost "
        "column is tracing on minus tracing off."
    )
    return [line, "", *_table(header, rows), "", _sink_text(results), "", note]


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
        other = fixed and fixed["offered_rps"] != rate
        noisy = any(r and r["send_lag_p99_ms"] > NOISY_LAG_MS for r in (fixed, ttfb))
        label = _label(results, name) + (" †" if noisy else "")
        rows.append(
            [
                label + (f" (at {fixed['offered_rps']:g} req/s: its ceiling is lower)" if other else ""),
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
        f"actual send). † = the generator itself was late by more than {NOISY_LAG_MS:g} ms at p99: the load "
        "core was busy with something else, treat that row as noisy."
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
    header = ["server", "streams", "completed", "max open at once", "first event p50 / max s", "errors"]
    header += ["RSS before MB", "RSS peak MB"]
    rows = []
    for name, s in results["streams"].items():
        if name not in ORDER:  # a variant of an older run
            continue
        kinds = ", ".join(f"{k}: {v}" for k, v in s["error_kinds"].items())
        rows.append(
            [
                _label(results, name),
                f"{s['streams']:,}",
                f"{s['completed']:,}",
                f"{s['max_open']:,}",
                f"{s['first_event_p50_s']:.2f} / {s['first_event_max_s']:.2f}",
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


def gc_table(results: dict[str, Any]) -> list[str]:
    gc = results.get("gc") or {}
    gc = {name: entry for name, entry in gc.items() if name == goals.GATEWAY}  # older runs had a variant
    if not gc:
        return ["(not measured in this run)"]
    header = ["Routeway, 1 worker", "req/s", "p50 ms", "p99 ms", "p99.9 ms", "max ms", "gen0 n / max ms"]
    header += ["gen1 n / max ms", "gen2 n / max ms", "all pauses µs/req", "objects frozen"]
    rows = []
    for entry in gc.values():
        load, p = entry["load"], entry["pauses"]

        def gen(g: str, pauses: dict[str, Any] = p) -> str:
            return f"{pauses[g]['count']} / {pauses[g]['max_ms']:.1f}" if g in pauses else "-"

        total = sum(p[g]["total_ms"] for g in ("gen0", "gen1", "gen2") if g in p)
        per_req = f"{total / load['completed'] * 1000:.0f}" if p and load["completed"] else "-"
        tracked = p.get("frozen", p.get("tracked_at_freeze"))
        noisy = " †" if load["send_lag_p99_ms"] > NOISY_LAG_MS else ""
        rows.append(
            [
                "as shipped" + noisy,
                f"{load['offered_rps']:g}",
                _ms(load["p50_ms"]),
                _ms(load["p99_ms"]),
                _ms(load.get("p999_ms")),
                _ms(load["max_ms"]),
                gen("gen0"),
                gen("gen1"),
                gen("gen2"),
                per_req,
                "-" if tracked is None else f"{tracked:,}",
            ]
        )
    note = (
        "The gateway calls gc.freeze() once started (objects frozen: what that moved out of the collector's "
        "view). Pauses are counted over the recorded window only (not start-up). † = the generator was late "
        f"by more than {NOISY_LAG_MS:g} ms at p99 (the load core was busy): treat that row as noisy."
    )
    return [*_table(header, rows), "", note]


def goal_table(results: dict[str, Any]) -> list[str]:
    rows = [[g.target, g.measured, g.verdict] for g in goals.evaluate(results)]
    return _table(["target", "measured", "verdict"], rows)


def profile(results: dict[str, Any]) -> list[str]:
    profiles = results.get("profiles") or {}
    ours, ref = profiles.get(goals.GATEWAY), profiles.get(goals.REF)
    if not ours:
        return ["(no profile in this run)"]
    if ours.get("error"):
        return [f"(profile failed: {ours['error']})"]
    conc = results.get("profile_concurrency", 32)
    out = [
        f"py-spy (`record --nonblocking -r 200`, {ours['sampled_s']} s of busy samples) while wrk ran at "
        f"c={conc}; files `bench/results/*-profile.speedscope.json` (open in https://www.speedscope.app). "
        "Shares are of py-spy's busy samples (Python frames and the C calls they make); µs/request = share × "
        "busy sample time ÷ requests served in the window. CPU time py-spy counts as idle (uvloop's C code, "
        "syscalls) is the gap to the server's CPU time per request from /proc.",
        "",
        "Threads: " + ", ".join(f"{n} {v}%" for n, v in ours["threads"]),
        "",
    ]
    busy, ref_busy = ours.get("python_us_per_req") or 0.0, (ref or {}).get("python_us_per_req") or 0.0
    cpu, ref_cpu = ours.get("cpu_us_per_req") or 0.0, (ref or {}).get("cpu_us_per_req") or 0.0
    ref_pkg = dict((ref or {}).get("by_package", []))
    rows = [
        [n, f"{v}", f"{v * busy / 100:.0f}", f"{ref_pkg[n] * ref_busy / 100:.0f}" if n in ref_pkg else "-"]
        for n, v in ours["by_package"][:12]
    ]
    rows.append(
        ["(Python frames, all packages)", "100", f"{busy:.0f}", f"{ref_busy:.0f}" if ref_busy else "-"]
    )
    rows.append(
        [
            "(not seen by py-spy: C, syscalls)",
            "",
            f"{cpu - busy:.0f}",
            f"{ref_cpu - ref_busy:.0f}" if ref else "-",
        ]
    )
    rows.append(["(server CPU per request, /proc)", "", f"{cpu:.0f}", f"{ref_cpu:.0f}" if ref else "-"])
    out += _table(["self time by package", "Routeway %", "Routeway µs/req", "reference µs/req"], rows)
    out += [""]
    out += _table(
        ["Routeway's hottest functions (self time)", "%", "µs/req"],
        [[f"`{n}`", f"{v}", f"{v * busy / 100:.0f}"] for n, v in ours["top_self"][:15]],
    )
    out += [""]
    out += _table(
        ["Routeway's own functions (inclusive time)", "%", "µs/req"],
        [[f"`{n}`", f"{v}", f"{v * busy / 100:.0f}"] for n, v in ours["top_routeway"][:15]],
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
        f"upstream on core {cores['load']}. Load average at start: {m['load_average_at_start']}, at the end: "
        f"{results.get('load_average_at_end', '?')} (other work on the machine shows up here).",
    ]


def markdown(results: dict[str, Any], plot: str | None) -> str:
    quick = " — QUICK MODE (short runs, indicative only)" if results["quick"] else ""
    lines = [f"## Results of the last run (generated){quick}", "", *machine(results), ""]
    if results["notes"]:
        lines += ["Notes from the run:", "", *[f"- {n}" for n in results["notes"]], ""]
    lines += ["### Targets", "", *goal_table(results), ""]
    lines += [
        "### Throughput (wrk, closed loop, small non-streaming completions)",
        "",
        *throughput(results),
        "",
    ]
    lines += [
        "### Throughput, interleaved rounds (the ratios the targets use)",
        "",
        *interleaved(results),
        "",
    ]
    lines += ["### Added latency and streaming time to first byte", "", *latency(results), ""]
    lines += ["### Cost of tracing (OTLP/HTTP to a local receiver)", "", *tracing(results), ""]
    lines += ["### Latency against offered load (open loop)", ""]
    if plot:
        lines += [f"![latency vs offered load]({plot})", ""]
    lines += [*sweep(results), ""]
    lines += ["### Many open streams", "", *held_streams(results), ""]
    lines += [
        "### Garbage-collector pauses (open loop, from gc.callbacks in the server)",
        "",
        *gc_table(results),
        "",
    ]
    lines += ["### Workers", "", *workers(results), ""]
    lines += ["### Profile of Routeway under load", "", *profile(results), ""]
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
