"""Pure parts of the bench: Pareto frontier, percentiles, cost prediction and the spend cap, goals."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.providers.base import Usage
from gateway.routing.router import cost_usd
from gateway.workbench.command import Options, estimate, expected_requests
from gateway.workbench.runner import Load, Run, Sample, SpendCap, predicted_cost
from gateway.workbench.stats import figures, pareto, percentile
from gateway.workbench.suggest import GoalError, parse_goal, suggest
from gateway.workbench.workload import Item, WorkloadError, load_jsonl
from tests.unit.targets import target


def test_pareto_keeps_what_nothing_beats() -> None:
    points = [(1.0, 9.0), (2.0, 5.0), (3.0, 6.0), (4.0, 1.0), (2.0, 5.0), (5.0, 1.0)]
    assert pareto(points) == [0, 1, 3, 4]  # (3,6) loses to (2,5); (5,1) to (4,1); ties both stay


@given(st.lists(st.tuples(st.integers(0, 20), st.integers(0, 20)), min_size=1, max_size=12))
def test_pareto_points_are_undominated_and_the_rest_dominated(raw: list[tuple[int, int]]) -> None:
    points = [(float(x), float(y)) for x, y in raw]
    front = set(pareto(points))
    assert front

    def beats(a: tuple[float, float], b: tuple[float, float]) -> bool:
        return a[0] <= b[0] and a[1] <= b[1] and a != b

    for i, p in enumerate(points):
        assert (i in front) == (not any(beats(q, p) for q in points))


def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert (percentile(values, 50), percentile(values, 95), percentile(values, 99)) == (50.0, 95.0, 99.0)
    assert percentile([], 50) is None and percentile([7.0], 99) == 7.0


def test_the_predicted_cost_is_the_gateways_pricing() -> None:
    t = target(input_price=3.0, output_price=15.0)
    item = Item([{"role": "user", "content": "x"}], {}, 1000, 200)
    assert predicted_cost(t, item) == cost_usd(t, Usage(1000, 200)) == pytest.approx(0.006)


def test_the_cap_refuses_what_would_cross_it() -> None:
    cap = SpendCap(1.0)
    assert cap.reserve(0.4) and cap.reserve(0.4)
    assert not cap.reserve(0.4) and cap.hit  # in flight counts: 0.8 + 0.4 > 1
    cap.settle(0.4, 0.1)  # a request came in cheaper than predicted: room again
    assert cap.reserve(0.4)
    assert cap.spent == pytest.approx(0.1)


def _figures(name: str, ttft_s: float, cost: float) -> object:
    samples = [Sample(ttft_s=ttft_s, e2e_s=ttft_s + 1, input_tokens=10, output_tokens=11, cost_usd=cost)] * 4
    return figures(Run(target(backend=name, hardware="nvidia-h100"), samples), workload_size=8)


def test_figures_and_a_goal() -> None:
    quick, slow = _figures("quick", 0.2, 0.01), _figures("slow", 0.9, 0.001)
    assert quick.ttft_p95_ms == 200.0 and quick.tokens_per_s_p50 == 10.0  # type: ignore[attr-defined]
    assert quick.workload_cost_usd == pytest.approx(0.08)  # type: ignore[attr-defined]
    assert quick.joules_per_output_token == 0.4  # type: ignore[attr-defined]
    s = suggest([slow, quick], parse_goal("p95_ttft<0.5s"), "cost", "m")  # type: ignore[list-item]
    assert s.route["backends"] == ["quick"] and s.route["max_ttft_ms"] == 500
    assert s.rejected == {"slow": "missed p95_ttft<500"}
    s = suggest([quick, slow], parse_goal("p95_ttft<2000ms"), "cost", "m")  # type: ignore[list-item]
    assert s.route["backends"] == ["slow", "quick"] and s.route["objective"] == "cheapest"
    none = suggest([slow], parse_goal("p50_ttft<1"), "latency", "m")  # type: ignore[list-item]
    assert none.chosen is None and none.route["backends"] == []


@pytest.mark.parametrize(
    ("text", "reason"),
    [("p95_ttft>3", "takes '<'"), ("speed<3", "unknown metric"), ("p95_ttft<", "is not metric")],
)
def test_bad_goals(text: str, reason: str) -> None:
    with pytest.raises(GoalError, match=reason):
        parse_goal(text)


def test_workload_lines(tmp_path: Path) -> None:
    path = tmp_path / "w.jsonl"
    path.write_text(
        '{"model": "x", "messages": [{"role": "user", "content": "' + "a" * 400 + '"}], "max_tokens": 9}\n\n'
        '{"model": "x", "message_count": 3, "input_tokens": 90, "output_tokens": 5, "temperature": 0.2}\n'
    )
    chat, logged = load_jsonl(path)
    assert (chat.input_tokens, chat.output_tokens) == (100, 9)
    assert (logged.input_tokens, logged.output_tokens, len(logged.messages)) == (90, 5, 3)
    assert logged.params == {"temperature": 0.2}
    assert sum(len(m["content"]) for m in logged.messages) // 4 in range(88, 93)
    path.write_text('{"model": "x"}\n')
    with pytest.raises(WorkloadError, match="w.jsonl:1: needs"):
        load_jsonl(path)


def test_the_dry_run_estimate() -> None:
    items = [Item([{"role": "user", "content": "x"}], {}, 1000, 100), Item([], {}, 2000, 300)]
    cheap = target(backend="a", input_price=1.0, output_price=2.0)
    dear = target(backend="b", input_price=10.0)
    # Three requests cycle through the workload: 1000+2000+1000 input and 100+300+100 output tokens.
    assert estimate([cheap], items, 3) == pytest.approx((4000 * 1.0 + 500 * 2.0) / 1e6)
    assert estimate([cheap, dear], items, 3) == pytest.approx((5000 + 4000 * 10 + 500) / 1e6)
    opts = Options("m", None, None, "prompt=1,output=1", Load(rate=2.5, duration_s=3), 1.0)
    assert expected_requests(opts) == 8
    assert expected_requests(replace(opts, load=Load(concurrency=2, duration_s=3))) is None
