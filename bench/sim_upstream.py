"""Serves gateway/sim with one 0 ms profile, only to measure why it is not the bench's upstream."""

from __future__ import annotations

import argparse
import asyncio
import contextlib

import uvloop

from bench import payloads
from gateway.sim import Profile, serve_fleet_forever

# ttft 0 and a huge token rate: every sleep in the simulator becomes ~0 s, like the bench upstream.
PROFILE = Profile(
    name="bench-0ms",
    hardware="nvidia-h100",
    models=[payloads.MODEL, payloads.SLOW_MODEL],
    ttft_ms=0.0,
    tokens_per_s=1e9,
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    with contextlib.suppress(asyncio.CancelledError, KeyboardInterrupt):  # SIGTERM ends it
        uvloop.run(serve_fleet_forever([PROFILE], "127.0.0.1", [args.port]))


if __name__ == "__main__":
    main()
