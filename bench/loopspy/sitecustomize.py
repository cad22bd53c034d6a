"""Loaded by `python -m bench.calls --loop` into the server under test (this folder goes first on PYTHONPATH).

Counts the event loop's objects made per request, which Python call counts do not weigh: tasks (through a
task factory), futures (`create_future`), timer handles (`call_at`, `call_later`) and `call_soon` callbacks,
each by where it was asked for (the five innermost frames). Only calls made from Python are seen: uvloop's
own C-level scheduling (a task's steps, I/O callbacks) is not, and is the same for every tree. SIGUSR1 clears
the counts and installs the hooks on the running loop; SIGUSR2 writes the total and the counts to
$CALLSPY_OUT in bench/callspy's format. Never used outside the bench.
"""

from __future__ import annotations

import asyncio
import collections
import os
import signal
import sys
from collections.abc import Callable, Coroutine
from types import FrameType
from typing import Any

_counts: collections.Counter[tuple[str, str]] = collections.Counter()
_inside = [False]
_HOOKED = ("call_at", "call_later", "call_soon", "create_future")


def _where(depth: int) -> str:
    frame: FrameType | None = sys._getframe(depth)
    names: list[str] = []
    while frame is not None and len(names) < 5:
        names.append(f"{frame.f_code.co_filename.rsplit('/', 1)[-1]}:{frame.f_code.co_name}")
        frame = frame.f_back
    return "<".join(names)


def _hook(loop: asyncio.AbstractEventLoop) -> None:
    for name in _HOOKED:
        original: Callable[..., Any] = getattr(loop, name)

        def counted(*args: Any, _call: Callable[..., Any] = original, _name: str = name, **kw: Any) -> Any:
            if _inside[0]:  # uvloop's call_at goes through call_later: one handle, counted once
                return _call(*args, **kw)
            _counts[(_name, _where(2))] += 1
            _inside[0] = True
            try:
                return _call(*args, **kw)
            finally:
                _inside[0] = False

        setattr(loop, name, counted)
    factory = loop.get_task_factory()

    def task(lp: asyncio.AbstractEventLoop, coro: Coroutine[Any, Any, Any], **kw: Any) -> asyncio.Future[Any]:
        _counts[("task", _where(2))] += 1
        return asyncio.Task(coro, loop=lp, **kw) if factory is None else factory(lp, coro, **kw)

    loop.set_task_factory(task)  # type: ignore[arg-type]


def _start(*_: Any) -> None:
    _counts.clear()
    loop = asyncio.get_event_loop()
    if not getattr(loop, "_loopspy", False):
        loop._loopspy = True  # type: ignore[attr-defined]
        _hook(loop)


def _stop(*_: Any) -> None:
    with open(os.environ["CALLSPY_OUT"], "w") as out:
        out.write(f"TOTAL {sum(_counts.values())}\n")
        for (kind, where), n in _counts.most_common(200):
            out.write(f"{n} {kind} {where}\n")


if os.environ.get("CALLSPY_OUT"):
    signal.signal(signal.SIGUSR1, _start)
    signal.signal(signal.SIGUSR2, _stop)
