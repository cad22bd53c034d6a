"""Python function calls per request, for this tree and earlier revisions: a steady measure of added work.

`python -m bench.calls [--requests N] [--warm W] [REV ...]`: wrk's figures swing ±15% between runs on a
shared VM, more than a refactor's budget; a count of the Python calls a request makes does not depend on
what else the machine does. For this tree and each REV (its `gateway/` and `policies/` exported, as
`bench.tracing_cost --baseline` does), `routeway serve` (access log on and off) runs natively with
bench/callspy on PYTHONPATH; after W requests the hook starts counting, N small non-streaming completions
go one after another on one keep-alive connection, and the count over N (the event loop's thread: the
log writer thread is not counted) is printed with the functions whose
counts differ most from the first server's. It counts calls, not their cost: C work (orjson, httptools,
uvloop) is invisible, so read it beside `bench.before_after`, not instead of it.

`--loop` counts the event loop's objects per request instead (bench/loopspy: tasks, futures, timer handles
and call_soon callbacks made from Python, each named by the five frames that asked for it): the C-level
scheduling work a call count does not weigh (a task costs ~10-20 µs to create and run, a timer handle a few).
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import os
import signal
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import payloads, procs, targets
from bench.options import ROOT
from bench.tracing_cost import export_revision

SPY = Path(__file__).parent / "callspy"
LOOP_SPY = Path(__file__).parent / "loopspy"


class _OneWrite(http.client.HTTPConnection):
    """Sends a request's head and body in one write, as wrk does (http.client writes them apart, and whether
    the server then reads them in one go or waits for the body varies from run to run)."""

    def _send_output(self, message_body: Any = None, encode_chunked: bool = False) -> None:
        self._buffer.extend((b"", b""))  # type: ignore[attr-defined]
        head = b"\r\n".join(self._buffer)  # type: ignore[attr-defined]
        del self._buffer[:]  # type: ignore[attr-defined]
        self.send(head + (message_body or b""))


def send(port: int, n: int) -> None:
    conn = _OneWrite("127.0.0.1", port, timeout=30)
    try:
        for _ in range(n):
            conn.request("POST", payloads.CHAT_PATH, body=payloads.CHAT_BODY, headers=payloads.HEADERS)
            resp = conn.getresponse()
            body = resp.read()
            if resp.status != 200:
                raise RuntimeError(f"HTTP {resp.status}: {body[:300]!r}")
    finally:
        conn.close()


def spy_report(pid: int, out: Path) -> None:
    """Stops a spy hook's counting (SIGUSR2; SIGUSR1 started it) and waits up to 10 s for its report."""
    os.kill(pid, signal.SIGUSR2)
    deadline = time.monotonic() + 10
    while not out.exists() and time.monotonic() < deadline:
        time.sleep(0.1)


def counted(spec: targets.Spec, out: Path, warm: int, n: int, logs: Path) -> dict[str, float]:
    """Calls per request of one server: the total, and per function (name and file tail)."""
    server = spec.start(logs)
    try:
        send(spec.port, warm)
        os.kill(server.pid, signal.SIGUSR1)
        time.sleep(0.5)
        send(spec.port, n)
        time.sleep(0.3)  # the access log's batch (50 ms) is part of the work
        spy_report(server.pid, out)
    finally:
        procs.stop(server)
    lines = out.read_text().splitlines()
    per: dict[str, float] = {"TOTAL": int(lines[0].split()[1]) / n}
    for line in lines[1:]:
        count, name, filename = line.split(maxsplit=2)
        where = filename.split("/gateway/")[-1] if "/gateway/" in filename else Path(filename).name
        per[f"{name} ({where})"] = int(count) / n
    return per


def serving(
    stack: contextlib.ExitStack, logs: Path, revisions: list[str]
) -> tuple[Path, list[tuple[str, Path]]]:
    """The bench upstream (started on `stack`), a policy over it, and (label, source root) for this tree
    and each revision, exported under `logs`: what a per-request counting run needs."""
    up = targets.upstream(procs.free_port(), slow_events=1, slow_interval=1.0)
    stack.enter_context(procs.running(up.start(logs)))
    policy = targets.write_policy(logs / "policy.yaml", up.port)
    trees = [("this tree", ROOT)] + [(rev, export_revision(rev, logs / f"src-{rev}")) for rev in revisions]
    return policy, trees


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("revisions", nargs="*", help="git revisions to compare with this tree")
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--warm", type=int, default=200)
    parser.add_argument("--loop", action="store_true", help="count loop objects (tasks, futures, handles)")
    args = parser.parse_args()
    spy, what = (LOOP_SPY, "loop objects") if args.loop else (SPY, "Python calls")
    results: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as tmp, contextlib.ExitStack() as stack:
        logs = Path(tmp)
        policy, trees = serving(stack, logs, args.revisions)
        for label, src in trees:
            for log in (True, False):
                name = f"{label}, access log {'on' if log else 'off'}"
                out = logs / f"calls-{len(results)}.txt"
                env = {"PYTHONPATH": f"{spy}:{src}", "CALLSPY_OUT": str(out)}
                spec = targets.routeway(
                    procs.free_port(), policy, access_log=log, name=f"calls-{len(results)}", settings=env
                )
                results[name] = counted(spec, out, args.warm, args.requests, logs)
                print(f"{name:<36} {results[name]['TOTAL']:>7.1f} {what} per request", flush=True)
    first = next(iter(results.values()))
    for name, per in list(results.items())[1:]:
        names = (set(per) | set(first)) - {"TOTAL"}
        moved = sorted(names, key=lambda k: -abs(per.get(k, 0) - first.get(k, 0)))[:8]
        print(f"\n{name} vs {next(iter(results))}:")
        for key in moved:
            print(f"  {per.get(key, 0) - first.get(key, 0):+6.2f}  {key}")


if __name__ == "__main__":
    main()
