"""The sampled request log: a size-rotated JSONL of request shapes, written off the event loop."""

from __future__ import annotations

import logging
import queue
import random
from logging.handlers import QueueListener, RotatingFileHandler
from pathlib import Path
from typing import Any

import orjson

from gateway.events import Observer, RequestRecord
from gateway.settings import Settings

# Parameters that shape a workload; anything else a client sends (tools, metadata, user...) is not kept.
PARAMS = ("temperature", "top_p", "seed", "max_tokens", "max_completion_tokens", "n", "stop")


class _Line(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return str(record.msg)


class RequestLog(Observer):
    """One line per sampled finished request (an Observer): model, message count, token counts and
    parameters; the messages themselves only with `prompts=True`. The line is rendered on the loop (a
    small dict, O(1)) and written by a listener thread through a RotatingFileHandler."""

    def __init__(
        self, path: Path, sample: float, max_bytes: int, backups: int, *, prompts: bool = False
    ) -> None:
        self._sample = sample
        self._prompts = prompts
        self._random = random.random
        self._queue: queue.SimpleQueue[logging.LogRecord] = queue.SimpleQueue()
        path.parent.mkdir(parents=True, exist_ok=True)
        handler = RotatingFileHandler(path, maxBytes=max_bytes, backupCount=backups, encoding="utf-8")
        handler.setFormatter(_Line())
        self._listener = QueueListener(self._queue, handler)
        self._listener.start()

    def request_finished(self, req: RequestRecord) -> None:
        if req.body is None:
            return
        if req.op == "chat" and self._random() < self._sample:
            # Straight onto the listener's queue: a Logger's record-building would cost more than the line.
            self._queue.put(logging.makeLogRecord({"msg": orjson.dumps(shape(req, self._prompts)).decode()}))
        req.body = None  # the dashboard keeps finished records: it must not keep their bodies

    def close(self) -> None:
        """Writes what is queued and stops the thread."""
        self._listener.stop()


def shape(req: RequestRecord, prompts: bool) -> dict[str, Any]:
    body = req.body or {}
    messages = body.get("messages")
    line: dict[str, Any] = {
        "ts": round(req.started_wall, 3),
        "model": str(req.model)[:256],
        "stream": req.stream,
        "status": req.status,
        "message_count": len(messages) if isinstance(messages, list) else 0,
        "input_tokens": req.input_tokens,
        "output_tokens": req.output_tokens,
    }
    for key in PARAMS:
        value = body.get(key)
        if isinstance(value, int | float | str) and not isinstance(value, bool):
            line[key] = value if not isinstance(value, str) else value[:64]
    if prompts and isinstance(messages, list):
        line["messages"] = messages
    return line


def request_log_from(settings: Settings) -> RequestLog | None:
    """The log the settings ask for; None (no observer, no cost) when it is off."""
    if settings.request_log is None or settings.request_log_sample <= 0:
        return None
    return RequestLog(
        settings.request_log,
        settings.request_log_sample,
        settings.request_log_max_bytes,
        settings.request_log_backups,
        prompts=settings.request_log_prompts,
    )
