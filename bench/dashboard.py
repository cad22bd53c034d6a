"""`python -m bench.dashboard`: Routeway's throughput with the dashboard open (polling /admin/state as the
page does) against the same process with it closed, in interleaved wrk rounds of one run."""

from __future__ import annotations

import argparse
import http.client
import statistics
import tempfile
import threading
from pathlib import Path

from bench import payloads, procs, targets, wrk

POLL_S = 1.5  # the page's polling period (gateway/dashboard/static/dashboard.js)


class Poller:
    """What an open dashboard tab costs the gateway: GET /admin/state every POLL_S, and one drill-down."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.polls = 0
        self.bytes = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Poller:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _get(self, path: str) -> bytes:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            conn.request("GET", path)
            resp = conn.getresponse()
            body = resp.read()
            if resp.status != 200:
                raise RuntimeError(f"GET {path}: HTTP {resp.status} {body[:200]!r}")
            return body
        finally:
            conn.close()

    def _run(self) -> None:
        while not self._stop.is_set():
            body = self._get("/admin/state")
            self.polls += 1
            self.bytes += len(body)
            self._stop.wait(POLL_S)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--connections", type=int, default=32)
    args = parser.parse_args()
    procs.raise_fd_limit()
    with tempfile.TemporaryDirectory(prefix="routeway-bench-dash-") as tmp:
        work = Path(tmp)
        up_spec = targets.upstream(procs.free_port(), 0, 0.0)
        policy = targets.write_policy(work / "policy.yaml", up_spec.port)
        gw_spec = targets.routeway(procs.free_port(), policy)
        with procs.running(up_spec.start(work)), procs.running(gw_spec.start(work)):
            wrk.run(gw_spec.url, payloads.CHAT_BODY, args.connections, 2, work)  # warm-up
            results: dict[str, list[wrk.WrkResult]] = {"closed": [], "open": []}
            polls = 0
            for i in range(args.rounds):
                order = ("closed", "open") if i % 2 == 0 else ("open", "closed")
                for mode in order:
                    if mode == "open":
                        with Poller(gw_spec.port) as poller:
                            result = wrk.run(
                                gw_spec.url, payloads.CHAT_BODY, args.connections, args.seconds, work
                            )
                        polls += poller.polls
                    else:
                        result = wrk.run(
                            gw_spec.url, payloads.CHAT_BODY, args.connections, args.seconds, work
                        )
                    results[mode].append(result)
                    print(
                        f"round {i + 1} {mode:6}: {result.rps:8.1f} req/s  p50 {result.p50_ms:.2f} ms  "
                        f"p99 {result.p99_ms:.2f} ms  errors {result.errors}",
                        flush=True,
                    )
    report(results, polls, args)


def report(results: dict[str, list[wrk.WrkResult]], polls: int, args: argparse.Namespace) -> None:
    closed = statistics.median(r.rps for r in results["closed"])
    opened = statistics.median(r.rps for r in results["open"])
    p99_closed = statistics.median(r.p99_ms for r in results["closed"])
    p99_open = statistics.median(r.p99_ms for r in results["open"])
    spread = [r.rps for r in results["closed"]]
    print(
        f"\nc={args.connections}, {args.rounds} interleaved rounds of {args.seconds:g} s, {polls} polls of "
        f"/admin/state every {POLL_S:g} s while open\n"
        f"median throughput: closed {closed:.0f} req/s, open {opened:.0f} req/s, "
        f"ratio {opened / closed:.3f}\n"
        f"median p99: closed {p99_closed:.2f} ms, open {p99_open:.2f} ms\n"
        f"noise (closed rounds' min-max): {min(spread):.0f}-{max(spread):.0f} req/s"
    )


if __name__ == "__main__":
    main()
