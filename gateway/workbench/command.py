"""`routeway bench`: the options turned into a run, and the run into a table, files and a suggested route."""

from __future__ import annotations

import asyncio
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from gateway.policy.loader import LoadedPolicy
from gateway.providers.base import Target
from gateway.providers.credentials import close_all, providers_for, start_all
from gateway.routing.candidates import build_catalog
from gateway.settings import Settings
from gateway.upstream import AiohttpTransport
from gateway.workbench import plot, report
from gateway.workbench.runner import Load, Run, SpendCap, predicted_cost, replay
from gateway.workbench.spec import parse_spec
from gateway.workbench.stats import Figures, figures
from gateway.workbench.suggest import Minimise, Suggestion, parse_goal, suggest
from gateway.workbench.workload import Item, cycle, load_jsonl, synthetic

SYNTHETIC_FOR_DURATION = 1000  # a time-bounded synthetic run cycles through this many distinct requests


class BenchError(Exception):
    """A bad option or workload: printed as one line, exit status 2."""


@dataclass(frozen=True, slots=True)
class Options:
    model: str
    backends: list[str] | None
    workload: Path | None
    synthetic: str | None
    load: Load
    max_usd: float
    dry_run: bool = False
    json_out: Path | None = None
    csv_out: Path | None = None
    plot_out: Path | None = None
    html_out: Path | None = None
    goal: str | None = None
    minimise: Minimise = "cost"


@dataclass(slots=True)
class Outcome:
    rows: list[Figures]
    suggestion: Suggestion | None
    estimate_usd: float
    spent_usd: float
    cap_hit: bool


def targets_for(loaded: LoadedPolicy, model: str, names: list[str] | None) -> list[Target]:
    google = Settings().google_application_credentials  # vertex backends' ADC file, if the env names one
    credentials = providers_for(loaded.secrets, loaded.policy.backends, google_credentials=google)
    catalog = build_catalog(loaded.policy, credentials)
    targets = catalog.targets.get(model)
    if not targets:
        known = ", ".join(sorted(catalog.targets)) or "none"
        raise BenchError(f"no backend serves model {model!r}; models: {known}")
    if names:
        unknown = [n for n in names if n not in {t.backend for t in targets}]
        if unknown:
            raise BenchError(f"{', '.join(unknown)} do(es) not serve {model!r}")
        targets = [t for t in targets if t.backend in names]
    return targets


def workload(opts: Options) -> list[Item]:
    if (opts.workload is None) == (opts.synthetic is None):
        raise BenchError("give exactly one of --workload FILE.jsonl or --synthetic SPEC")
    if opts.workload is not None:
        return load_jsonl(opts.workload)
    assert opts.synthetic is not None
    count = opts.load.requests or (SYNTHETIC_FOR_DURATION if opts.load.duration_s else 100)
    return synthetic(parse_spec(opts.synthetic), count)


def per_backend(opts: Options, items: list[Item]) -> int | None:
    """Requests each backend gets: --requests, else the workload once (None: bounded by --duration)."""
    if opts.load.requests is not None:
        return opts.load.requests
    return None if opts.load.duration_s is not None else len(items)


def expected_requests(opts: Options) -> int | None:
    """Requests a time-bounded open-loop run sends; None for a closed loop (it depends on the answers)."""
    if opts.load.rate is None or opts.load.duration_s is None:
        return None
    return max(1, math.ceil(opts.load.rate * opts.load.duration_s))


def estimate(targets: list[Target], items: list[Item], count: int) -> float:
    """Predicted $ for `count` requests of the workload on every target, at the expected sizes."""
    sized = [items[i % len(items)] for i in range(count)]
    return sum(predicted_cost(t, item) for t in targets for item in sized)


def bench(loaded: LoadedPolicy, opts: Options, out: TextIO = sys.stdout, err: TextIO = sys.stderr) -> Outcome:
    targets = targets_for(loaded, opts.model, opts.backends)
    bounds = parse_goal(opts.goal) if opts.goal else None
    items = workload(opts)
    count = per_backend(opts, items)
    planned = count or expected_requests(opts)
    est = estimate(targets, items, planned) if planned else opts.max_usd
    what = f"{planned} requests" if planned else f"{opts.load.duration_s:g}s (closed loop: at most the cap)"
    print(
        f"estimate: ${est:.4f} for {what} on each of {len(targets)} backend(s); cap ${opts.max_usd:g}",
        file=out,
    )
    if opts.dry_run:
        return Outcome([], None, est, 0.0, False)
    load = Load(opts.load.rate, opts.load.concurrency, count, opts.load.duration_s)
    cap = SpendCap(opts.max_usd)
    runs = asyncio.run(_run_all(targets, loaded, items, load, cap, err))
    rows = [figures(r, len(items)) for r in runs]
    suggestion = suggest(rows, bounds, opts.minimise, opts.model) if bounds is not None else None
    _write(opts, rows, suggestion, {"model": opts.model, "spent_usd": cap.spent, "cap_usd": cap.max_usd})
    print(report.table(rows), file=out)
    if cap.hit:
        print(f"stopped at the spend cap: ${cap.spent:.6f} spent of ${cap.max_usd:g}", file=out)
    if suggestion is not None:
        _print_suggestion(suggestion, out)
    return Outcome(rows, suggestion, est, cap.spent, cap.hit)


async def _run_all(
    targets: list[Target], loaded: LoadedPolicy, items: list[Item], load: Load, cap: SpendCap, err: TextIO
) -> list[Run]:
    adapters = build_catalog(loaded.policy, {}).adapters  # the adapters only: targets carry the keys
    transport = AiohttpTransport(pool_size=max(64, load.concurrency * len(targets) * 2))
    credentials = {t.credential for t in targets if t.credential is not None}
    await start_all(credentials)
    await transport.start()
    done: dict[str, int] = {t.backend: 0 for t in targets}

    def progress(run: Run) -> None:
        done[run.target.backend] = len(run.samples)
        if not err.isatty():  # a progress line is for people; a log file gets the table only
            return
        line = "  ".join(f"{name} {n}" for name, n in done.items())
        err.write(f"\r{line}  ${cap.spent:.4f}")
        err.flush()

    try:
        # Every backend replays the same workload at the same time: one machine's conditions for all.
        return list(
            await asyncio.gather(
                *(
                    replay(t, adapters[t.adapter_key], transport, cycle(items), load, cap, progress)
                    for t in targets
                )
            )
        )
    finally:
        await transport.close()
        await close_all(credentials)
        err.write("\n")


def _write(
    opts: Options, rows: list[Figures], suggestion: Suggestion | None, extra: dict[str, object]
) -> None:
    text = suggestion.yaml() if suggestion is not None else None
    if opts.json_out:
        opts.json_out.write_bytes(report.to_json(rows, {**extra, "suggested_policy": text}))
    if opts.csv_out:
        opts.csv_out.write_text(report.to_csv(rows))
    if opts.plot_out:
        if opts.plot_out.suffix.lower() == ".png":
            if not plot.png(rows, str(opts.plot_out)):
                raise BenchError("PNG needs matplotlib, which is not installed: use a .svg path")
        else:
            opts.plot_out.write_text(plot.svg(rows))
    if opts.html_out:
        opts.html_out.write_text(plot.page(rows, f"routeway bench: {opts.model}", text))


def _print_suggestion(s: Suggestion, out: TextIO) -> None:
    for backend, why in s.rejected.items():
        print(f"# {backend}: {why}", file=out)
    if s.chosen is None:
        print("# no backend met the goal: nothing to suggest", file=out)
        return
    c = s.chosen
    print(
        f"# predicted on {c.backend}: ${c.workload_cost_usd} for the workload, "
        f"p95 TTFT {c.ttft_p95_ms} ms, p95 end-to-end {c.e2e_p95_ms} ms",
        file=out,
    )
    print(s.yaml(), file=out, end="")
