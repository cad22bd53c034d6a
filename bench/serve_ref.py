"""Shared start-up of the reference pass-throughs: flags, one uvicorn worker on uvloop + httptools."""

from __future__ import annotations

import argparse
from typing import Any

import uvicorn

FORWARDED = ("content-type", "authorization")


def args(description: str | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream", required=True, help="root URL, e.g. http://127.0.0.1:9000")
    return parser.parse_args()


def run(app: Any, port: int) -> None:
    """The same server settings as `routeway serve` (one worker, uvloop, httptools, no uvicorn access log)."""
    uvicorn.run(
        app,
        host="127.0.0.1",
        port=port,
        loop="uvloop",
        http="httptools",
        access_log=False,
        log_level="warning",
    )
