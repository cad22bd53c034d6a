"""`python -m bench.shadow`: the client's latency with shadow traffic on against off, in interleaved open-loop
rounds of one `routeway serve` process (the policy switched by POST /admin/reload between rounds).

The client's backend is the bench upstream (0 ms); the shadow backend is a simulated H100 (`routeway sim`,
180 ms TTFT, 90 tokens/s), so every shadow stays in flight ~0.35 s while the client's answers keep coming:
what a shadow can cost a client is the gateway's own work for it (the event loop, CPU), never a wait."""

from __future__ import annotations

import argparse
import http.client
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson
from prometheus_client.parser import text_string_to_metric_families

from bench import payloads, procs, targets
from bench.measure import open_loop

SIM_PROFILE = "h100-nim"
SIM_MODEL = "meta/llama-3.3-70b-instruct"


def policy_text(upstream_port: int, sim_port: int, sample: float | None) -> str:
    shadow = (
        f"    shadow: {{backends: [sim-h100], sample: {sample}, max_usd_per_day: 1000, timeout_s: 30}}\n"
        if sample is not None
        else ""
    )
    return (
        "# Written by `python -m bench.shadow`.\n"
        "backends:\n"
        "  bench-upstream:\n"
        "    provider: openai\n"
        f"    base_url: http://127.0.0.1:{upstream_port}/v1\n"
        "    hardware: nvidia-h100\n"
        "    models:\n"
        f"      {payloads.MODEL}: {{id: {payloads.MODEL}, input_price: 0.5, output_price: 1.5}}\n"
        "  sim-h100:\n"
        "    provider: openai\n"
        f"    base_url: http://127.0.0.1:{sim_port}/v1\n"
        "    hardware: nvidia-h100\n"
        "    models:\n"
        f"      {payloads.MODEL}: {{id: {SIM_MODEL}, input_price: 0.9, output_price: 0.9}}\n"
        "routes:\n"
        "  - name: default\n"
        '    match: {model: "*"}\n'
        "    objective: cheapest\n"
        "    backends: [bench-upstream]\n" + shadow
    )


def _call(port: int, method: str, path: str) -> bytes:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request(method, path)
        resp = conn.getresponse()
        body = resp.read()
        if resp.status != 200:
            raise RuntimeError(f"{method} {path}: HTTP {resp.status} {body[:300]!r}")
        return body
    finally:
        conn.close()


def shadow_counts(port: int) -> dict[str, float]:
    text = _call(port, "GET", "/metrics").decode()
    counts: dict[str, float] = {"sent": 0.0, "skipped": 0.0, "in_flight": 0.0}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == "routeway_shadow_requests_total":
                counts["sent"] += s.value
            elif s.name == "routeway_shadow_skipped_total":
                counts["skipped"] += s.value
            elif s.name == "routeway_shadow_in_flight":
                counts["in_flight"] += s.value
    return counts


def switch(port: int, policy: Path, text: str) -> None:
    policy.write_text(text)
    _call(port, "POST", "/admin/reload")


def settle(port: int, timeout_s: float = 30.0) -> None:
    """Waits for the previous round's shadows to end, so an `off` round carries none of them."""
    deadline = time.monotonic() + timeout_s
    while shadow_counts(port)["in_flight"] > 0 and time.monotonic() < deadline:
        time.sleep(0.2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--rate", type=float, default=300.0, help="client requests per second")
    parser.add_argument("--sample", type=float, default=0.1, help="the shadow's sampled share")
    parser.add_argument("--json", type=Path, help="write every round's result here")
    args = parser.parse_args()
    procs.raise_fd_limit()
    rows: dict[str, list[dict[str, Any]]] = {"off": [], "on": []}
    with tempfile.TemporaryDirectory(prefix="routeway-bench-shadow-") as tmp:
        work = Path(tmp)
        body = work / "chat.json"
        body.write_bytes(payloads.CHAT_BODY)
        up_spec = targets.upstream(procs.free_port(), 0, 0.0)
        sim_port = procs.free_port()
        sim_cmd = [targets.ROUTEWAY, "sim", "--profile", SIM_PROFILE, "--port", str(sim_port)]
        sim = procs.start("sim", sim_cmd, sim_port, procs.LOAD_CORE, work, targets.clean_env())
        policy = work / "policy.yaml"
        policy.write_text(policy_text(up_spec.port, sim_port, None))
        gw_spec = targets.routeway(procs.free_port(), policy, settings={"ROUTEWAY_RELOAD_POLICIES": "false"})
        with procs.running(sim), procs.running(up_spec.start(work)), procs.running(gw_spec.start(work)):
            procs.wait_port(sim_port)
            texts = {
                "off": policy_text(up_spec.port, sim_port, None),
                "on": policy_text(up_spec.port, sim_port, args.sample),
            }
            for i in range(args.rounds):
                for mode in ("off", "on") if i % 2 == 0 else ("on", "off"):
                    switch(gw_spec.port, policy, texts[mode])
                    settle(gw_spec.port)
                    before = shadow_counts(gw_spec.port)
                    result = open_loop(gw_spec.port, body, args.rate, args.seconds)
                    after = shadow_counts(gw_spec.port)
                    result["shadows_sent"] = after["sent"] - before["sent"]
                    result["shadows_skipped"] = after["skipped"] - before["skipped"]
                    rows[mode].append(result)
                    print(
                        f"round {i + 1} {mode:3}: p50 {result['p50_ms']:.3f} ms  "
                        f"p90 {result['p90_ms']:.3f} ms  "
                        f"p99 {result['p99_ms']:.3f} ms  errors {result['errors']}  "
                        f"shadows {result['shadows_sent']:.0f} (+{result['shadows_skipped']:.0f} skipped)",
                        flush=True,
                    )
    report(rows, args)
    if args.json is not None:
        args.json.write_bytes(orjson.dumps(rows, option=orjson.OPT_INDENT_2))


def report(rows: dict[str, list[dict[str, Any]]], args: argparse.Namespace) -> None:
    def med(mode: str, key: str) -> float:
        return statistics.median(r[key] for r in rows[mode])

    def spread(mode: str, key: str) -> str:
        values = [r[key] for r in rows[mode]]
        return f"{min(values):.3f}-{max(values):.3f}"

    print(
        f"\n{args.rate:g} req/s open loop, {args.rounds} interleaved rounds of {args.seconds:g} s, "
        f"shadow sample {args.sample:g} to a simulated {SIM_PROFILE}"
    )
    for key in ("p50_ms", "p90_ms", "p99_ms"):
        print(
            f"median {key[:-3]}: off {med('off', key):.3f} ms (rounds {spread('off', key)}), "
            f"on {med('on', key):.3f} ms (rounds {spread('on', key)})"
        )
    sent = sum(r["shadows_sent"] for r in rows["on"])
    skipped = sum(r["shadows_skipped"] for r in rows["on"])
    errors = sum(r["errors"] for mode in rows for r in rows[mode])
    print(f"shadows sent {sent:.0f}, skipped {skipped:.0f}; client errors {errors}")
    if errors:
        sys.exit(1)


if __name__ == "__main__":
    main()
