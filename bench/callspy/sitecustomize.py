"""Loaded by `python -m bench.calls` into the server under test (this folder goes first on PYTHONPATH).

SIGUSR1 clears the counts and starts counting every Python function call on the main thread (the event
loop's; threads already running, such as the log writer, are not counted, threads started later are);
SIGUSR2 stops and writes the total and the 200 most-called functions to $CALLSPY_OUT. Never used outside
the bench.
"""

from __future__ import annotations

import collections
import os
import signal
import sys
import threading
from types import FrameType
from typing import Any

_calls: collections.Counter[tuple[str, str]] = collections.Counter()


def _count(frame: FrameType, event: str, arg: Any) -> None:
    if event == "call":
        _calls[(frame.f_code.co_filename, frame.f_code.co_name)] += 1


def _start(*_: Any) -> None:
    _calls.clear()
    sys.setprofile(_count)
    threading.setprofile(_count)


def _stop(*_: Any) -> None:
    sys.setprofile(None)
    threading.setprofile(None)  # type: ignore[arg-type]
    with open(os.environ["CALLSPY_OUT"], "w") as out:
        out.write(f"TOTAL {sum(_calls.values())}\n")
        for (filename, name), n in _calls.most_common(200):
            out.write(f"{n} {name} {filename}\n")


if os.environ.get("CALLSPY_OUT"):
    signal.signal(signal.SIGUSR1, _start)
    signal.signal(signal.SIGUSR2, _stop)
