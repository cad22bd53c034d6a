"""The `routeway` command: serve, check, explain, sim and demo."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import httpx
import orjson
import typer
import uvicorn

from gateway.policy.loader import LoadedPolicy, PolicyError, load_policy
from gateway.settings import Settings, export_for_workers

app = typer.Typer(
    add_completion=False, no_args_is_help=True, help="Routeway: an OpenAI-compatible LLM router."
)

ConfigOpt = Annotated[Path, typer.Option("--config", "-c", help="YAML file or folder of YAML files")]


@app.command()
def serve(
    config: Annotated[Path | None, typer.Option("--config", "-c", help="YAML file or folder")] = None,
    host: Annotated[str | None, typer.Option(help="listen address")] = None,
    port: Annotated[int | None, typer.Option(help="listen port")] = None,
    workers: Annotated[int | None, typer.Option(help="worker processes")] = None,
    log_level: Annotated[str | None, typer.Option(help="DEBUG, INFO, WARNING, ERROR")] = None,
) -> None:
    """Run the gateway (flags override ROUTEWAY_* settings)."""
    overrides: dict[str, Any] = {"config": config, "host": host, "port": port, "workers": workers}
    overrides["log_level"] = log_level
    settings = Settings(**{k: v for k, v in overrides.items() if v is not None})
    _exit_on_bad_policy(settings.config)
    run_server(settings)


def run_server(settings: Settings) -> None:
    from gateway.api.server import uvicorn_options
    from gateway.observability.logging import setup_logging

    setup_logging(settings.log_level)
    if settings.workers > 1:
        export_for_workers(settings)
        uvicorn.run(
            "gateway.main:app_from_env", factory=True, workers=settings.workers, **uvicorn_options(settings)
        )
        return
    from gateway.main import create_app

    uvicorn.run(create_app(settings), **uvicorn_options(settings))


@app.command()
def check(config: ConfigOpt = Path("policies")) -> None:
    """Validate a policy: exit 0 when valid, else print file, key path and reason for every problem."""
    loaded = _exit_on_bad_policy(config)
    policy = loaded.policy
    n_models = len({m for b in policy.backends.values() for m in b.models})
    typer.echo(
        f"ok: {len(policy.backends)} backends, {n_models} models, {len(policy.routes)} routes ({config})"
    )


@app.command()
def explain(
    model: Annotated[str, typer.Argument(help="logical model to route")],
    config: ConfigOpt = Path("policies"),
    objective: Annotated[str | None, typer.Option(help="override the route's objective")] = None,
    prompt: Annotated[str, typer.Option(help="user message used to estimate tokens")] = "Hello",
    max_tokens: Annotated[int | None, typer.Option(help="expected output tokens")] = None,
) -> None:
    """Print the ranked candidates for a request, without calling any upstream."""
    from gateway.api.admin import explain_plan
    from gateway.errors import GatewayError
    from gateway.routing.candidates import build_catalog
    from gateway.routing.preferences import take_preferences
    from gateway.routing.router import Router
    from gateway.upstream import Transport

    loaded = _exit_on_bad_policy(config)
    catalog = build_catalog(loaded.policy, loaded.secrets, loaded.fingerprint)
    body: dict[str, object] = {"model": model, "messages": [{"role": "user", "content": prompt}]}
    if max_tokens:
        body["max_tokens"] = max_tokens
    try:
        prefs = take_preferences(body, {"x-routeway-objective": objective} if objective else {})
        plan = Router(Transport()).plan(catalog, "chat", body, prefs, probe=False)
    except GatewayError as err:
        typer.echo(f"error: {err.message}", err=True)
        raise typer.Exit(1) from None
    typer.echo(orjson.dumps(explain_plan(plan), option=orjson.OPT_INDENT_2).decode())


@app.command()
def sim(
    fleet: Annotated[str, typer.Option(help="'demo' for the four demo profiles")] = "demo",
    profile: Annotated[list[str] | None, typer.Option(help="run only these profiles of the fleet")] = None,
    host: Annotated[str, typer.Option(help="listen address")] = "127.0.0.1",
    port: Annotated[
        int | None, typer.Option(help="first port (others follow); default: each profile's own")
    ] = None,
) -> None:
    """Run simulated OpenAI-compatible providers (hardware profiles with fault injection)."""
    from gateway.sim import DEMO_FLEET
    from gateway.sim.fleet import serve_fleet_forever

    if fleet != "demo":
        raise typer.BadParameter("only the 'demo' fleet is built in", param_hint="--fleet")
    names = profile or list(DEMO_FLEET)
    unknown = [n for n in names if n not in DEMO_FLEET]
    if unknown:
        raise typer.BadParameter(
            f"unknown profile(s) {unknown}; known: {list(DEMO_FLEET)}", param_hint="--profile"
        )
    profiles = [DEMO_FLEET[n] for n in names]
    ports = [port + i for i in range(len(profiles))] if port else [p.port for p in profiles]
    for p, pt in zip(profiles, ports, strict=True):
        typer.echo(f"sim {p.name} ({p.hardware}) on http://{host}:{pt}/v1")
    asyncio.run(serve_fleet_forever(profiles, host, ports))


@app.command()
def demo(
    config: ConfigOpt = Path("policies"),
    host: Annotated[str, typer.Option(help="listen address")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="listen port")] = 8080,
) -> None:
    """Run the demo: the simulated provider fleet plus the gateway on the shipped demo policy."""
    sim_proc = subprocess.Popen([sys.executable, "-m", "gateway", "sim", "--fleet", "demo"])
    try:
        _wait_for_sims(sim_proc)
        typer.echo(f"routeway on http://{host}:{port}/v1 (demo policy from {config}, simulated providers)")
        run_server(Settings(config=config, host=host, port=port))
    finally:
        sim_proc.terminate()
        sim_proc.wait(timeout=10)


def _wait_for_sims(proc: subprocess.Popen[bytes], timeout_s: float = 15.0) -> None:
    from gateway.sim import DEMO_FLEET

    deadline = time.monotonic() + timeout_s
    for p in DEMO_FLEET.values():
        while True:
            if proc.poll() is not None:
                typer.echo(f"simulator exited with code {proc.returncode}", err=True)
                raise typer.Exit(1)
            try:
                httpx.get(f"http://127.0.0.1:{p.port}/v1/models", timeout=1.0)
                break
            except httpx.HTTPError:
                if time.monotonic() > deadline:
                    typer.echo(f"simulator {p.name} did not start on port {p.port}", err=True)
                    raise typer.Exit(1) from None
                time.sleep(0.1)


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
