"""Structured JSON logs written off the event loop: handlers enqueue, a listener thread formats and writes.

Access lines are rendered on the loop but handed to the listener in batches (one record per batch), so a
busy process wakes the thread and writes to stderr once per batch instead of once per request.
"""

from __future__ import annotations

import asyncio
import atexit
import logging
import queue
import sys
import time
import weakref
from logging.handlers import QueueHandler, QueueListener
from typing import Any

import orjson

from gateway.events import Observer, RequestRecord

# Attributes every record has, and uvicorn's ANSI-coloured copy of its message: not fields of our JSON line.
_STD_ATTRS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None)).keys()) | {
    "message",
    "asctime",
    "color_message",
}

BATCH_DELAY_S = 0.05  # a pending access line waits at most this long for the listener
BATCH_MAX_BYTES = 64 * 1024  # ...or until the batch holds this many bytes (~200 lines of ~300 bytes)
COST_DIGITS = 6  # prices have a few significant digits; more in a log line is float noise


class _Seconds:
    """The whole-second part of timestamps, formatted once per second; the loop and the log thread share it
    (the (second, text) pair is read and replaced as one tuple, so neither sees half an update)."""

    __slots__ = ("last",)

    def __init__(self) -> None:
        self.last: tuple[int, str] = (-1, "")

    def text(self, whole: int) -> str:
        last = self.last
        if last[0] != whole:
            last = self.last = (whole, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole)))
        return last[1]


_SECONDS = _Seconds()


def _timestamp(created: float, msecs: float) -> str:
    return f"{_SECONDS.text(int(created))}.{int(msecs):03d}Z"


class JsonFormatter(logging.Formatter):
    """One JSON object per line; fields passed as `extra=` become top-level keys.

    A record with a `json_lines` attribute (a batch from AccessLog) is written as those lines, unchanged.
    """

    def format(self, record: logging.LogRecord) -> str:
        lines: list[bytes] | None = getattr(record, "json_lines", None)
        if lines is not None:
            return b"\n".join(lines).decode()
        doc: dict[str, Any] = {
            "ts": _timestamp(record.created, record.msecs),
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
_access_logs: weakref.WeakSet[AccessLog] = weakref.WeakSet()  # flushed by stop_logging()


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
    atexit.unregister(stop_logging)
    atexit.register(stop_logging)  # the listener is a daemon thread: drain its queue before exit


def stop_logging() -> None:
    """Hands over every pending access line, then writes everything queued and stops the listener.

    Call it once the event loop has stopped (it is registered with atexit): AccessLog is not thread-safe.
    """
    global _listener  # see setup_logging
    for access_log in list(_access_logs):
        access_log.flush()
    if _listener is not None:
        _listener.stop()
        _listener = None


class AccessLog(Observer):
    """The one JSON line per request (an Observer): who asked for what, where it went, what it cost.

    With setup_logging() in place, lines are rendered on the loop and handed to the listener in batches:
    BATCH_DELAY_S after the first pending line, or as soon as a batch is full; at once without a running
    loop. The owner calls flush() on shutdown (stop_logging() also does). Without setup_logging(), each
    request is one ordinary record with its fields as attributes, for whatever handlers are configured.
    Call it from one thread (the event loop's).
    """

    def __init__(self, logger: logging.Logger | None = None) -> None:
        self._log = logger or logging.getLogger("routeway.access")
        self._pending: list[bytes] = []
        self._pending_bytes = 0
        self._scheduled = False  # a flush is due on the loop
        _access_logs.add(self)

    def request_finished(self, req: RequestRecord) -> None:
        if not self._log.isEnabledFor(logging.INFO):
            return
        fields = _fields(req)
        if _listener is None:  # not our listener: a plain record, as any handler (caplog...) expects
            self._log.info("request", extra=fields)
            return
        now = time.time()
        ts = _timestamp(now, (now - int(now)) * 1000)  # as a LogRecord made now would have it
        line = {"ts": ts, "level": "INFO", "logger": self._log.name, "msg": "request", **fields}
        self._add(orjson.dumps(line, default=str))

    def flush(self) -> None:
        """Hands every pending line to the logging handlers now, as one record."""
        self._scheduled = False  # a timer still due finds nothing, or flushes newer lines a bit early
        if not self._pending:
            return
        lines, self._pending, self._pending_bytes = self._pending, [], 0
        record = self._log.makeRecord(
            self._log.name, logging.INFO, __file__, 0, "%d access lines", (len(lines),), None
        )
        record.json_lines = lines
        self._log.handle(record)

    def _add(self, line: bytes) -> None:
        self._pending.append(line)
        self._pending_bytes += len(line) + 1
        if self._pending_bytes >= BATCH_MAX_BYTES:
            self.flush()
        elif not self._scheduled:
            try:
                asyncio.get_running_loop().call_later(BATCH_DELAY_S, self.flush)
                self._scheduled = True
            except RuntimeError:  # no running loop: a sync caller gets its line at once
                self.flush()


def _fields(req: RequestRecord) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "request_id": req.request_id,
        "path": req.path,
        "model": _clip(req.model),
        "route": req.route,
        "objective": req.objective,
        "backend": req.backend,
        "pick": req.pick,
        "status": req.status,
        "stream": req.stream,
        "attempts": len(req.attempts),
        "latency_ms": round((req.duration_s or 0.0) * 1000, 2),
        "input_tokens": req.input_tokens,
        "output_tokens": req.output_tokens,
        "cost_usd": _significant(req.cost_usd),
    }
    if req.principal is not None:  # who spent it: a key's label (`key-2`), never the key
        fields["principal"] = req.principal
    if req.error:
        fields["error"] = req.error
    trace_id = req.context.get("trace_id")  # set by the tracing observer when tracing is on
    if trace_id:
        fields["trace_id"] = trace_id
    if len(req.attempts) > 1 or req.error:
        fields["tried"] = [f"{a.target.backend}:{a.outcome}" for a in req.attempts]
    return fields


def _significant(value: float | None) -> float | None:
    """Six significant digits: 1.005e-05 rather than float noise such as 1.0049999999999999e-05."""
    return None if value is None else float(f"{value:.{COST_DIGITS}g}")


FIELD_MAX = 256  # a client-chosen string in the access log (a 10 MiB model name stays one short line)


def _clip(text: str | None) -> str | None:
    return text if text is None or len(text) <= FIELD_MAX else text[:FIELD_MAX] + "..."
