"""Log output of the bridge's processes: one JSON object per line, or plain text, each with its request id.

Part of the process set-up (the CLI and `serve` workers call `configure_logging`). The standard library's
logging with a JSON formatter of our own (orjson): no extra dependency, and every existing
`log.info("%s …", LogEvent.X, …)` call keeps working — its first argument becomes the `event` field.
"""

from __future__ import annotations

import logging
import sys
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, TextIO

import orjson

from bridge.correlation import current_request_id

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(request_id)s]: %(message)s"
# Libraries' log lines get a stable event name of their own.
LIBRARY_EVENTS = {"uvicorn.access": "http-access", "uvicorn.error": "http-server"}
# Loggers that write request URLs (search parameters can hold names): shown only at debug level.
URL_LOGGERS = ("httpx", "httpcore")
# uvicorn's own loggers: configure_logging sends them through the root's handler.
UVICORN_LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access")
# Fields of a JSON line, in this order; `exc` only with a traceback.
JSON_FIELDS = ("time", "level", "event", "request_id", "logger", "message")


class _RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            record.request_id = current_request_id() or "-"
        return True


def event_of(record: logging.LogRecord) -> str:
    """The stable event name: the LogEvent member a bridge log call starts with, else `log` (a library's)."""
    args = record.args
    if isinstance(args, tuple) and args and isinstance(args[0], StrEnum):
        return str(args[0])
    if isinstance(record.msg, StrEnum):
        return str(record.msg)
    return LIBRARY_EVENTS.get(record.name, "log")


class JsonFormatter(logging.Formatter):
    """`{"time", "level", "event", "request_id", "logger", "message"[, "exc"]}`, one object per line."""

    def format(self, record: logging.LogRecord) -> str:
        request_id = getattr(record, "request_id", None) or current_request_id()
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "event": event_of(record),
            "request_id": None if request_id in (None, "-") else request_id,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(line, default=str).decode()


def resolve_format(log_format: str, stream: TextIO | None = None) -> str:
    """`json` or `text`; `auto` is text on a terminal and JSON otherwise (containers, supervisors, files)."""
    if log_format != "auto":
        return log_format
    stream = stream if stream is not None else sys.stderr
    return "text" if stream.isatty() else "json"


def configure_logging(level: str, log_format: str = "auto", stream: TextIO | None = None) -> None:
    """Replaces the root handlers by one on stderr (or `stream`) in the chosen format; idempotent."""
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.addFilter(_RequestIdFilter())
    if resolve_format(log_format, stream) == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    for name in URL_LOGGERS:
        logging.getLogger(name).setLevel(logging.DEBUG if level.lower() == "debug" else logging.WARNING)
    # uvicorn's own loggers then go through the same handler (serve passes log_config=None).
    for name in UVICORN_LOGGERS:
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True
