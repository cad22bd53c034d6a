"""The `routeway` command: serve, check, explain, sim, demo, bench, keys and usage."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Annotated, Any, cast, get_args

import orjson
import typer
import uvicorn

from gateway.keys_cli import keys_app, usage
from gateway.policy.loader import LoadedPolicy, PolicyError, load_policy
from gateway.policy.model import Objective
from gateway.settings import Settings, export_for_workers

app = typer.Typer(
    add_completion=False, no_args_is_help=True, help="Routeway: an OpenAI-compatible LLM router."
)

app.add_typer(keys_app, name="keys")
app.command(name="usage")(usage)

OBJECTIVE_NAMES: tuple[str, ...] = get_args(Objective)
ConfigOpt = Annotated[Path, typer.Option("--config", "-c", help="YAML file or folder of YAML files")]


@app.command()
def serve(
    config: Annotated[Path | None, typer.Option("--config", "-c", help="YAML file or folder")] = None,
    host: Annotated[str | None, typer.Option(help="listen address")] = None,
    port: Annotated[int | None, typer.Option(help="listen port")] = None,
    workers: Annotated[int | None, typer.Option(help="worker processes")] = None,
    log_level: Annotated[str | None, typer.Option(help="DEBUG, INFO, WARNING, ERROR")] = None,
    allow_open: Annotated[
        bool, typer.Option("--allow-open", help="serve without client keys on a non-loopback address")
    ] = False,
) -> None:
    """Run the gateway (flags override ROUTEWAY_* settings)."""
    overrides: dict[str, Any] = {"config": config, "host": host, "port": port, "workers": workers}
    overrides["log_level"] = log_level
    overrides["allow_open"] = allow_open or None  # no flag: ROUTEWAY_ALLOW_OPEN decides
    settings = Settings(**{k: v for k, v in overrides.items() if v is not None})
    _exit_on_bad_policy(settings.config)
    run_server(settings)


def run_server(settings: Settings) -> None:
    from gateway.api.server import uvicorn_options
    from gateway.exposure import enforce
    from gateway.observability.logging import setup_logging

    setup_logging(settings.log_level)
    enforce(settings, logging.getLogger("routeway"))  # exits 2 on an open non-loopback address
    if settings.workers > 1:
        from gateway.observability.shared_metrics import fresh_metrics_dir

        with fresh_metrics_dir(settings.metrics_dir) as settings.metrics_dir:  # one scrape: every worker
            export_for_workers(settings)
            options = uvicorn_options(settings)
            uvicorn.run("gateway.main:app_from_env", factory=True, workers=settings.workers, **options)
        return
    from gateway.main import create_app

    uvicorn.run(create_app(settings), **uvicorn_options(settings))


@app.command()
def check(config: ConfigOpt = Path("policies")) -> None:
    """Validate a policy: exit 0 when valid, else print file, key path and reason for every problem."""
    loaded = _exit_on_bad_policy(config)
    policy = loaded.policy
    n_models = len({m for b in policy.backends.values() for m in b.models})
    counts = (_plural(len(policy.backends), "backend"), _plural(n_models, "model"))
    typer.echo(f"ok: {counts[0]}, {counts[1]}, {_plural(len(policy.routes), 'route')} ({config})")


def _plural(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


@app.command()
def explain(
    model: Annotated[str, typer.Argument(help="logical model to route")],
    config: ConfigOpt = Path("policies"),
    objective: Annotated[str | None, typer.Option(help="override the route's objective")] = None,
    prompt: Annotated[str, typer.Option(help="user message used to estimate tokens")] = "Hello",
    max_tokens: Annotated[int | None, typer.Option(help="expected output tokens")] = None,
    input_text: Annotated[
        str | None, typer.Option("--input", help="plan an embeddings request with this input instead")
    ] = None,
    url: Annotated[
        str | None, typer.Option(help="ask this running gateway (live telemetry) instead of --config")
    ] = None,
    api_key: Annotated[str | None, typer.Option(help="client key for --url")] = None,
) -> None:
    """Print the ranked candidates for a request, without calling any upstream."""
    from gateway.explain import ExplainError, explain_local, explain_remote, request_body

    if objective is not None and objective not in OBJECTIVE_NAMES:
        typer.echo(f"error: --objective must be one of {', '.join(OBJECTIVE_NAMES)}", err=True)
        raise typer.Exit(2)
    body = request_body(model, prompt, max_tokens, input_text)
    try:
        if url is not None:
            doc = explain_remote(url, body, objective, api_key)
        else:
            doc = explain_local(_exit_on_bad_policy(config), body, objective)
    except ExplainError as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(1) from None
    typer.echo(orjson.dumps(doc, option=orjson.OPT_INDENT_2).decode())


@app.command()
def sim(
    fleet: Annotated[str, typer.Option(help="'demo' for the four demo profiles")] = "demo",
    profile: Annotated[
        list[str] | None,
        typer.Option(help="run only these profiles: --profile a b, --profile a,b or --profile a --profile b"),
    ] = None,
    more: Annotated[
        list[str] | None,
        typer.Argument(metavar="PROFILE", help="profile names, as after --profile", show_default=False),
    ] = None,
    host: Annotated[str, typer.Option(help="listen address")] = "127.0.0.1",
    port: Annotated[
        int | None, typer.Option(help="first port (others follow); default: each profile's own")
    ] = None,
    service_account: Annotated[
        Path | None,
        typer.Option(help="write a service account the Vertex simulator trusts here (a gateway's ADC file)"),
    ] = None,
    token_host: Annotated[
        str | None, typer.Option(help="host in that account's token_uri (default: the simulator's address)")
    ] = None,
) -> None:
    """Run simulated providers (hardware profiles with fault injection; tpu-v5e also speaks Vertex AI)."""
    from gateway.sim import DEMO_FLEET
    from gateway.sim.fleet import RunningSim, serve_fleet_forever, write_service_account

    if fleet != "demo":
        raise typer.BadParameter("only the 'demo' fleet is built in", param_hint="--fleet")
    # Click options take one value each: the names after `--profile a` arrive as arguments.
    names = [n for value in (profile or []) + (more or []) for n in value.split(",") if n] or list(DEMO_FLEET)
    unknown = [n for n in names if n not in DEMO_FLEET]
    if unknown:
        raise typer.BadParameter(
            f"unknown profile(s) {', '.join(unknown)}; known: {', '.join(DEMO_FLEET)}", param_hint="--profile"
        )
    profiles = [DEMO_FLEET[n] for n in dict.fromkeys(names)]
    ports = [port + i for i in range(len(profiles))] if port else [p.port for p in profiles]

    def announce(servers: list[RunningSim]) -> None:
        for server in servers:
            typer.echo(f"sim {server.profile.name} ({server.profile.hardware}) on {server.url}")
        if service_account is not None and write_service_account(servers, service_account, token_host):
            typer.echo(f"vertex service account in {service_account}")

    try:
        asyncio.run(serve_fleet_forever(profiles, host, ports, on_started=announce))
    except OSError as err:  # a port is taken: one line, not a traceback
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(1) from None
    except KeyboardInterrupt:
        pass  # Ctrl-C before the fleet's own handler was in place: still a quiet stop


@app.command()
def demo(
    config: ConfigOpt = Path("policies"),
    host: Annotated[str, typer.Option(help="listen address")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="listen port")] = 8080,
    sim_port: Annotated[
        int | None,
        typer.Option(help="first simulator port (others follow); the policy's 9101-9104 URLs are moved"),
    ] = None,
) -> None:
    """Run the demo: the simulated provider fleet plus the gateway on the shipped demo policy."""
    from gateway.demo import DemoError, run_demo

    _exit_on_bad_policy(config)

    def serve_demo(policy: Path, google_credentials: Path | None) -> None:
        typer.echo(f"routeway on http://{host}:{port}/v1 (demo policy from {config}, simulated providers)")
        run_server(
            Settings(config=policy, host=host, port=port, google_application_credentials=google_credentials)
        )

    try:
        run_demo(config, host, port, sim_port, serve_demo)
    except DemoError as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(1) from None


@app.command(name="bench")
def bench_command(
    model: Annotated[str, typer.Option(help="logical model to benchmark")],
    config: ConfigOpt = Path("policies"),
    backends: Annotated[str | None, typer.Option(help="only these backends: a,b")] = None,
    workload: Annotated[Path | None, typer.Option(help="JSONL of chat requests or the request log")] = None,
    synthetic: Annotated[str | None, typer.Option(help="e.g. prompt=200-2000,output=50-500,seed=1")] = None,
    rate: Annotated[float | None, typer.Option(help="open loop: requests per second per backend")] = None,
    concurrency: Annotated[int, typer.Option(help="closed loop: requests in flight per backend")] = 4,
    requests: Annotated[int | None, typer.Option(help="requests per backend")] = None,
    duration: Annotated[float | None, typer.Option(help="seconds per backend, instead of --requests")] = None,
    max_usd: Annotated[float, typer.Option(help="hard spend cap for the whole run")] = 1.0,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="print the estimated cost and stop")] = False,
    json_out: Annotated[Path | None, typer.Option("--json", help="write the figures as JSON")] = None,
    csv_out: Annotated[Path | None, typer.Option("--csv", help="write the figures as CSV")] = None,
    plot_out: Annotated[
        Path | None, typer.Option("--plot", help="latency vs cost plot (.svg, or .png)")
    ] = None,
    html_out: Annotated[Path | None, typer.Option("--html", help="one self-contained report page")] = None,
    goal: Annotated[str | None, typer.Option(help="e.g. p95_ttft<800ms: print a route that meets it")] = None,
    minimise: Annotated[
        str, typer.Option(help="cost, latency or energy, among backends meeting --goal")
    ] = "cost",
) -> None:
    """Replay a workload against a policy's backends and report speed, cost and energy per backend."""
    from gateway.workbench.command import BenchError, Options, bench
    from gateway.workbench.runner import Load
    from gateway.workbench.suggest import Minimise

    if minimise not in ("cost", "latency", "energy"):
        typer.echo("error: --minimise must be cost, latency or energy", err=True)
        raise typer.Exit(2)
    if (rate is not None and rate <= 0) or concurrency < 1 or (requests is not None and requests < 1):
        typer.echo("error: --rate, --concurrency and --requests must be positive", err=True)
        raise typer.Exit(2)
    names = [n.strip() for n in backends.split(",") if n.strip()] if backends else None
    load = Load(rate, concurrency, requests, duration)
    opts = Options(
        model, names, workload, synthetic, load, max_usd, dry_run,
        json_out, csv_out, plot_out, html_out, goal, cast(Minimise, minimise),
    )  # fmt: skip
    loaded = _exit_on_bad_policy(config)
    try:
        bench(loaded, opts)
    except (BenchError, ValueError) as err:  # spec, goal and workload errors are ValueErrors
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(2) from None


def _exit_on_bad_policy(config: Path) -> LoadedPolicy:
    try:
        return load_policy(config)
    except PolicyError as err:
        for problem in err.problems:
            typer.echo(f"error: {problem}", err=True)
        typer.echo(f"{len(err.problems)} problem(s) in {config}", err=True)
        raise typer.Exit(1) from None


def main() -> None:
    app()
