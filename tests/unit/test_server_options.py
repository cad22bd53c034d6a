"""uvicorn's options from Settings: the edge protocol with our limits, picklable for `--workers` processes."""

from __future__ import annotations

import functools
import pickle

from gateway.api.server import EdgeLimits, EdgeProtocol, uvicorn_options
from gateway.settings import Settings


def test_options_carry_the_limits_and_survive_the_trip_to_a_worker_process() -> None:
    options = uvicorn_options(
        Settings(max_header_bytes=1000, max_header_count=7, header_timeout_s=2.5, keep_alive_timeout_s=3)
    )
    assert options["timeout_keep_alive"] == 3
    protocol = pickle.loads(pickle.dumps(options["http"]))  # how uvicorn's spawned workers receive it
    assert isinstance(protocol, functools.partial) and protocol.func is EdgeProtocol
    limits = protocol.keywords["limits"]
    assert isinstance(limits, EdgeLimits)
    assert (limits.max_header_bytes, limits.max_header_count, limits.header_timeout_s) == (1000, 7, 2.5)
