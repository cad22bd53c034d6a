"""Structured JSON logs written off the event loop: handlers enqueue, a listener thread formats and writes."""

from __future__ import annotations

import logging
import queue
import sys
import time
from logging.handlers import QueueHandler, QueueListener
from typing import Any

import orjson

from gateway.events import AttemptRecord, RequestRecord

# Attributes every record has, and uvicorn's ANSI-coloured copy of its message: not fields of our JSON line.
_STD_ATTRS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None)).keys()) | {
    "message",
    "asctime",
    "color_message",
}


class JsonFormatter(logging.Formatter):
    """One JSON object per line; fields passed as `extra=` become top-level keys."""

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _STD_ATTRS and not key.startswith("_"):
                doc[key] = value
        if record.exc_info and record.exc_info[0] is not None:
            doc["exc_type"] = record.exc_info[0].__name__
        return orjson.dumps(doc, default=str).decode()


class _Enqueue(QueueHandler):
    def prepare(self, record: logging.LogRecord) -> logging.LogRecord:
        # Formatting happens on the listener thread, not on the event loop: pass the record as it is.
        record.exc_text = None
        return record


_listener: QueueListener | None = None


def setup_logging(level: str = "INFO") -> None:
    """Routes every `routeway.*` and uvicorn logger through one queue to stderr as JSON lines."""
    global _listener  # one listener per process, like the logging module's own handler registry
    if _listener is not None:
        _listener.stop()
    q: queue.SimpleQueue[logging.LogRecord] = queue.SimpleQueue()
    out = logging.StreamHandler(sys.stderr)
    out.setFormatter(JsonFormatter())
    _listener = QueueListener(q, out, respect_handler_level=False)
    _listener.start()
    handler = _Enqueue(q)
    for name in ("routeway", "uvicorn", "uvicorn.error"):
        log = logging.getLogger(name)
        log.handlers[:] = [handler]
        log.setLevel(level.upper())
        log.propagate = False
    logging.getLogger("uvicorn.access").disabled = True  # our own access line replaces it


def stop_logging() -> None:
    global _listener  # see setup_logging
    if _listener is not None:
        _listener.stop()
        _listener = None


class AccessLog:
    """The one JSON line per request (an Observer): who asked for what, where it went, what it cost."""

    def __init__(self, logger: logging.Logger | None = None) -> None:
        self._log = logger or logging.getLogger("routeway.access")

    def request_started(self, req: RequestRecord) -> None:
        pass

    def attempt_started(self, req: RequestRecord, att: AttemptRecord, headers: dict[str, str]) -> None:
        pass

    def attempt_finished(self, req: RequestRecord, att: AttemptRecord) -> None:
        pass

    def request_finished(self, req: RequestRecord) -> None:
        if not self._log.isEnabledFor(logging.INFO):
            return
        fields: dict[str, Any] = {
            "request_id": req.request_id,
            "path": req.path,
            "model": req.model,
            "route": req.route,
            "objective": req.objective,
            "backend": req.backend,
            "status": req.status,
            "stream": req.stream,
            "attempts": len(req.attempts),
            "latency_ms": round((req.duration_s or 0.0) * 1000, 2),
            "input_tokens": req.input_tokens,
            "output_tokens": req.output_tokens,
            "cost_usd": req.cost_usd,
        }
        if req.error:
            fields["error"] = req.error
        trace_id = req.context.get("trace_id")  # set by the tracing observer when tracing is on
        if trace_id:
            fields["trace_id"] = trace_id
        if len(req.attempts) > 1 or req.error:
            fields["tried"] = [f"{a.target.backend}:{a.outcome}" for a in req.attempts]
        self._log.info("request", extra=fields)
