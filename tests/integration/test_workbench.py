"""`routeway bench` over real sockets against simulated hardware profiles, and the request log it replays."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml
from typer.testing import CliRunner

from gateway.cli import app
from gateway.policy.loader import load_policy
from gateway.sim import Profile, SimThread
from gateway.workbench.command import Options, Outcome, bench
from gateway.workbench.runner import Load
from gateway.workbench.stats import Figures
from tests.integration.conftest import GatewayThread

KEY_ENV, KEY = "ROUTEWAY_TEST_BENCH_KEY", "gsk-bench-7c1d-test-key"
# Two speeds far enough apart that a goal between them has one clear answer, fast enough for a quick test.
PROFILES = [
    # swift wants a key, as a hosted provider does: the bench authorizes its calls as the router does.
    Profile(name="swift", hardware="groq-lpu", models=["m-swift"], ttft_ms=30, tokens_per_s=800, api_key=KEY),
    Profile(name="steady", hardware="aws-inferentia2", models=["m-steady"], ttft_ms=300, tokens_per_s=400),
]
PRICES = {"swift": (0.60, 0.80), "steady": (0.10, 0.20)}
SPEC = "prompt=100-400,output=40,seed=3"


@pytest.fixture(scope="module")
def fleet() -> Iterator[SimThread]:
    with SimThread(PROFILES) as sims:
        yield sims


@pytest.fixture(autouse=True)
def _fresh_counts(fleet: SimThread) -> None:
    fleet.reset()


def policy(fleet: SimThread) -> dict[str, Any]:
    backends = {
        p.name: {
            "provider": "openai",
            "base_url": fleet.urls[p.name],
            "hardware": p.hardware,
            **({"api_key_env": KEY_ENV} if p.api_key else {}),
            "models": {
                "chat": {
                    "id": p.models[0],
                    "input_price": PRICES[p.name][0],
                    "output_price": PRICES[p.name][1],
                }
            },
        }
        for p in PROFILES
    }
    return {"backends": backends, "routes": [{"name": "default", "objective": "cheapest"}]}


@pytest.fixture(autouse=True)
def _backend_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(KEY_ENV, KEY)


@pytest.fixture
def config(fleet: SimThread, tmp_path: Path) -> Path:
    path = tmp_path / "policy.yaml"
    path.write_text(yaml.safe_dump(policy(fleet), sort_keys=False))
    return path


def run(config: Path, **kw: Any) -> tuple[Outcome, str]:
    load = Load(concurrency=kw.pop("concurrency", 2), requests=kw.pop("requests", 8))
    names, workload = kw.pop("backends", None), kw.pop("workload", None)
    opts = Options("chat", names, workload, kw.pop("synthetic", SPEC), load, kw.pop("max_usd", 1.0), **kw)
    out = io.StringIO()
    return bench(load_policy(config), opts, out=out, err=io.StringIO()), out.getvalue()


def row(outcome: Outcome, backend: str) -> Figures:
    return next(r for r in outcome.rows if r.backend == backend)


def test_figures_match_the_profiles(config: Path) -> None:
    outcome, text = run(config)
    for profile in PROFILES:
        r = row(outcome, profile.name)
        assert r.requests == 8 and r.ok == 8 and r.errors == {}
        assert r.ttft_p50_ms is not None and r.tokens_per_s_p50 is not None
        # The simulator waits the profile's TTFT, then paces tokens: loopback adds a little, never less.
        assert profile.ttft_ms * 0.9 <= r.ttft_p50_ms <= profile.ttft_ms + 100
        assert profile.tokens_per_s * 0.7 <= r.tokens_per_s_p50 <= profile.tokens_per_s * 1.15
        assert r.output_tokens == 8 * 40
        price_in, price_out = PRICES[profile.name]
        assert r.cost_usd == pytest.approx((r.input_tokens * price_in + r.output_tokens * price_out) / 1e6)
        assert r.output_tokens_per_joule == pytest.approx(1 / r.joules_per_output_token, rel=1e-3)
    assert row(outcome, "swift").ttft_p95_ms < row(outcome, "steady").ttft_p50_ms  # type: ignore[operator]
    assert outcome.spent_usd == pytest.approx(sum(r.cost_usd for r in outcome.rows))
    assert "not measured" in text  # energy is labelled as an estimate


def test_the_spend_cap_stops_the_run(config: Path, fleet: SimThread) -> None:
    per_request = (400 * 0.60 + 40 * 0.80) / 1e6  # the most one swift request may cost, as predicted
    outcome, text = run(config, backends=["swift"], requests=50, max_usd=per_request * 3.5, concurrency=1)
    r = row(outcome, "swift")
    assert outcome.cap_hit and r.stopped_by_cap
    assert 3 <= r.requests < 50
    assert outcome.spent_usd <= per_request * 3.5
    assert fleet.stats("swift")["total_requests"] == r.requests  # nothing was sent past the cap
    assert "stopped at the spend cap" in text


def test_dry_run_sends_nothing(config: Path, fleet: SimThread) -> None:
    outcome, text = run(config, dry_run=True)
    assert outcome.rows == [] and outcome.estimate_usd > 0
    assert text.startswith("estimate: $")
    assert all(fleet.stats(p.name)["total_requests"] == 0 for p in PROFILES)


def test_the_suggested_policy_meets_the_goal_and_passes_check(
    config: Path, fleet: SimThread, tmp_path: Path
) -> None:
    outcome, text = run(config, goal="p95_ttft<200ms", requests=6)
    assert outcome.suggestion is not None and outcome.suggestion.chosen is not None
    assert outcome.suggestion.chosen.backend == "swift"  # steady is cheaper but misses the goal
    assert outcome.suggestion.route["backends"] == ["swift"]
    assert outcome.suggestion.route["max_ttft_ms"] == 200
    assert "# steady: missed p95_ttft<200" in text
    # Pasted next to the policy's backends (a folder of YAML files is merged), it passes `routeway check`.
    folder = tmp_path / "merged"
    folder.mkdir()
    (folder / "a-backends.yaml").write_text(yaml.safe_dump({"backends": policy(fleet)["backends"]}))
    (folder / "b-bench.yaml").write_text(outcome.suggestion.yaml())
    checked = CliRunner().invoke(app, ["check", "--config", str(folder)])
    assert checked.exit_code == 0, checked.output
    # Without a goal on speed, the cheaper profile leads.
    loose, _ = run(config, goal="error_rate<1%", requests=4)
    assert loose.suggestion is not None and loose.suggestion.route["backends"] == ["steady", "swift"]


def test_cli_writes_every_report(config: Path, tmp_path: Path) -> None:
    files = {ext: tmp_path / f"report.{ext}" for ext in ("json", "csv", "svg", "html")}
    args = ["bench", "--config", str(config), "--model", "chat", "--synthetic", SPEC, "--requests", "4",
            "--rate", "20", "--json", str(files["json"]), "--csv", str(files["csv"]),
            "--plot", str(files["svg"]), "--html", str(files["html"]),
            "--goal", "p95_ttft<100ms"]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    doc = orjson.loads(files["json"].read_bytes())
    assert {b["backend"] for b in doc["backends"]} == {"swift", "steady"}
    assert doc["energy_is_estimate"] is True and "swift" in doc["suggested_policy"]
    assert files["csv"].read_text().splitlines()[0].startswith("backend,model,hardware,requests")
    assert "<svg" in files["svg"].read_text() and "Pareto" in files["svg"].read_text()
    page = files["html"].read_text()
    assert "<svg" in page and "<table>" in page and "bench-chat" in page


def test_bad_options_are_one_line_errors(config: Path) -> None:
    result = CliRunner().invoke(
        app, ["bench", "--config", str(config), "--model", "chat", "--synthetic", "prompt=9"]
    )
    assert result.exit_code == 2 and "'output' is missing" in result.output
    result = CliRunner().invoke(
        app, ["bench", "--config", str(config), "--model", "nope", "--synthetic", SPEC]
    )
    assert result.exit_code == 2 and "no backend serves model 'nope'" in result.output


def test_the_request_log_records_shapes_and_replays(config: Path, fleet: SimThread, tmp_path: Path) -> None:
    log = tmp_path / "log" / "requests.jsonl"
    secret = "the secret prompt text 7f3a"
    with GatewayThread(policy(fleet), tmp_path / "gw", request_log=log, request_log_sample=1.0) as gw:
        client = gw.client()
        for i in range(3):
            client.chat.completions.create(
                model="chat",
                messages=[{"role": "system", "content": "be brief"},
                          {"role": "user", "content": secret * (i + 1)}],
                max_tokens=12, temperature=0.5, stream=i == 2,
            )  # fmt: skip
    lines = [orjson.loads(line) for line in log.read_bytes().splitlines()]
    assert len(lines) == 3
    assert secret not in log.read_text()  # no prompt text unless asked for
    assert [line["message_count"] for line in lines] == [2, 2, 2]
    assert all(
        line["model"] == "chat" and line["max_tokens"] == 12 and line["temperature"] == 0.5 for line in lines
    )
    assert [line["stream"] for line in lines] == [False, False, True]
    assert all(line["input_tokens"] > 0 and line["output_tokens"] == 12 for line in lines)
    assert lines[2]["input_tokens"] > lines[0]["input_tokens"]
    outcome, _ = run(config, workload=log, synthetic=None, requests=None, backends=["steady"])
    r = row(outcome, "steady")
    assert r.requests == 3 and r.ok == 3 and r.output_tokens == 3 * 12
    # Prompts of the logged lengths: the replayed input tokens are those the log recorded, within rounding.
    assert abs(r.input_tokens - sum(line["input_tokens"] for line in lines)) <= 3 * 3


def test_the_request_log_is_off_by_default(fleet: SimThread, tmp_path: Path) -> None:
    with GatewayThread(policy(fleet), tmp_path / "gw") as gw:
        assert gw.settings.request_log is None
        gw.client().chat.completions.create(model="chat", messages=[{"role": "user", "content": "hi"}])
    assert not list(tmp_path.rglob("*.jsonl"))
