"""The sidecar's own logs: one JSON object per line, with request and trace IDs from the current context."""

from __future__ import annotations

import contextvars
import logging
import sys
from typing import Any, Protocol

from pythonjsonlogger.json import JsonFormatter


class RequestIds(Protocol):
    """What a log record takes from the request being handled (the gateway's ``Exchange`` is one)."""

    request_id: str
    trace_id: str


# The request being handled in this context: one variable holding the request itself, so binding
# it costs the gateway one ``set`` per request, not one per ID.
request_context: contextvars.ContextVar[RequestIds | None] = contextvars.ContextVar("request", default=None)


class ContextFilter(logging.Filter):
    """Copies the request and trace IDs of the request being served onto each record."""

    def filter(self, record: logging.LogRecord) -> bool:
        ids = request_context.get()
        if ids is not None:
            if ids.request_id and not hasattr(record, "request_id"):
                record.request_id = ids.request_id
            if ids.trace_id and not hasattr(record, "trace_id"):
                record.trace_id = ids.trace_id
        return True


def json_formatter() -> logging.Formatter:
    return JsonFormatter(
        "{levelname}{name}{message}",
        style="{",
        rename_fields={"levelname": "level", "name": "logger"},
        timestamp="time",
        json_ensure_ascii=False,
    )


def setup_logging(level: str = "info", stream: Any = None) -> None:
    """JSON lines on stderr for the root logger; noisy libraries held at warning."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(json_formatter())
    handler.addFilter(ContextFilter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    for noisy in ("aiohttp.access", "asyncio", "urllib3"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
