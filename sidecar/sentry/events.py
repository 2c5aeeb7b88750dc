"""Sentry events made by the sidecar for the app: from error log lines and from the gateway's 5xx answers.

The log parser's normalised record is read defensively (a mapping or an object, ``error`` as a mapping
or an object, flat ``error_type``/``error_stack`` also accepted) because the sink must never raise into
the log pipeline. Identical errors within ``dedupe_window`` are sent once and counted: the fingerprint
is the exception type, its value with the variable parts (numbers, IDs, quoted strings) blanked, and
the app frame nearest the crash, so "user 17 not found" and "user 42 not found" are one error.
"""

from __future__ import annotations

import hashlib
import re
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sidecar import __version__
from sidecar.sentry.stacktrace import ParsedException, parse_stack

ERROR_LEVELS = {
    "error": "error",
    "err": "error",
    "fatal": "fatal",
    "critical": "fatal",
    "crit": "fatal",
    "panic": "fatal",
    "emerg": "fatal",
    "emergency": "fatal",
    "alert": "fatal",
}
BREADCRUMB_LIMIT = 50
TEXT_LIMIT = 1_000
TAG_LIMIT = 200
_TRACE_ID = re.compile(r"^[0-9a-f]{32}$")
_VARIABLE_PARTS = (
    (
        re.compile(r"\b[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}\b"),
        "<id>",
    ),
    (re.compile(r"\b(?:0x)?(?=[0-9a-fA-F]*\d)[0-9a-fA-F]{6,}\b"), "<hex>"),
    (re.compile(r"'[^']*'|\"[^\"]*\"|`[^`]*`"), "<str>"),
    (re.compile(r"(?<![A-Za-z_<])\d+(?:\.\d+)?"), "<n>"),
)


def field(record: Any, *names: str) -> Any:
    """The first present, non-empty value among dotted ``names`` in a mapping or an object."""
    for name in names:
        value: Any = record
        for part in name.split("."):
            if value is None:
                break
            value = value.get(part) if isinstance(value, Mapping) else getattr(value, part, None)
        if value not in (None, ""):
            return value
    return None


def normalise_value(value: str) -> str:
    for pattern, placeholder in _VARIABLE_PARTS:
        value = pattern.sub(placeholder, value)
    return value[:500]


def fingerprint(exceptions: list[ParsedException], message: str | None, logger: str | None) -> str:
    """Type + normalised value + top in-app frame (file and function; line numbers move between deploys)."""
    if exceptions:
        main = exceptions[-1]
        frame = main.top_in_app
        where = f"{frame.filename}:{frame.function}" if frame else ""
        key = f"exc|{main.type}|{normalise_value(main.value)}|{where}"
    else:
        key = f"msg|{logger or ''}|{normalise_value(message or '')}"
    return hashlib.sha1(key.encode("utf-8", "replace"), usedforsecurity=False).hexdigest()


@dataclass(slots=True)
class _Window:
    started: float
    event_id: str
    suppressed: int = 0


class Deduper:
    """First occurrence per fingerprint and window is sent; the rest are counted against it.

    The next event after a window closes carries how many were suppressed in it. Bounded: the least
    recently seen fingerprints are forgotten first.
    """

    def __init__(
        self, window: float, max_keys: int = 2_000, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.window = window
        self.max_keys = max_keys
        self._clock = clock
        self._windows: OrderedDict[str, _Window] = OrderedDict()

    def check(self, key: str, event_id: str) -> tuple[bool, str, int]:
        """``(send, event_id_that_stands_for_it, suppressed_in_the_previous_window)``."""
        now = self._clock()
        current = self._windows.get(key)
        if current is not None and self.window > 0 and now - current.started < self.window:
            current.suppressed += 1
            self._windows.move_to_end(key)
            return False, current.event_id, 0
        previous = current.suppressed if current is not None else 0
        self._windows[key] = _Window(now, event_id)
        self._windows.move_to_end(key)
        while len(self._windows) > self.max_keys:
            self._windows.popitem(last=False)
        return True, event_id, previous


def new_event_id() -> str:
    return uuid.uuid4().hex


def _timestamp(value: Any) -> float:
    if isinstance(value, int | float) and not isinstance(value, bool):
        seconds = float(value)
        return seconds / 1000 if seconds > 1e11 else seconds  # epoch milliseconds (pino, Date.now())
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
        except ValueError:
            pass
    if isinstance(value, datetime):
        return value.timestamp()
    return time.time()


def error_level(record: Any) -> str | None:
    """``error``/``fatal`` for records that should become events, else ``None``."""
    level = field(record, "level")
    if isinstance(level, int | float) and not isinstance(level, bool):
        return "fatal" if level >= 60 else "error" if level >= 50 else None  # pino/bunyan numbers
    return ERROR_LEVELS.get(str(level).lower()) if level is not None else None


def _tags(**values: Any) -> dict[str, str]:
    return {k: str(v)[:TAG_LIMIT] for k, v in values.items() if v not in (None, "")}


def _trace_context(trace_id: Any) -> dict[str, Any]:
    if isinstance(trace_id, str) and _TRACE_ID.match(trace_id.lower()):
        return {"trace": {"trace_id": trace_id.lower(), "span_id": uuid.uuid4().hex[:16], "op": "sidecar"}}
    return {}


def breadcrumbs_from_timeline(
    timeline: Mapping[str, Any] | None, current_message: str | None, current_time: float | None = None
) -> list[dict[str, Any]]:
    """The same request's earlier log and access lines as Sentry breadcrumbs (oldest first).

    The line being captured may already be on the timeline (the correlation sink can run first): with
    a time, only strictly earlier entries are taken; without one, a last entry with the same message is.
    """
    if not timeline:
        return []
    entries = [e for e in timeline.get("timeline", []) if e.get("kind") in ("log", "access")]
    if current_time is not None:
        entries = [e for e in entries if isinstance(e.get("at"), int | float) and e["at"] < current_time]
    elif entries and current_message is not None:
        last = entries[-1]
        indexed = field(last.get("record") or {}, "message", "msg")
        if (
            last.get("kind") == "log"
            and isinstance(indexed, str)
            and current_message.startswith(indexed[:64])
        ):
            entries = entries[:-1]
    return [_breadcrumb(entry) for entry in entries[-BREADCRUMB_LIMIT:]]


def _breadcrumb(entry: Mapping[str, Any]) -> dict[str, Any]:
    record = entry.get("record") or {}
    http = record.get("http") if isinstance(record, Mapping) else None
    if entry.get("kind") == "access" or isinstance(http, Mapping):
        source = http if isinstance(http, Mapping) else record
        data = {
            "method": field(source, "method", "http_request_method"),
            "url": field(source, "route", "http_route", "url", "path"),
            "status_code": field(source, "status_code", "status", "http_response_status_code"),
        }
        crumb: dict[str, Any] = {
            "timestamp": entry.get("at"),
            "type": "http",
            "category": "access" if entry.get("kind") == "access" else "log",
            "data": {k: v for k, v in data.items() if v is not None},
        }
        message = field(record, "message")
        if message:
            crumb["message"] = str(message)[:TEXT_LIMIT]
        return crumb
    level = str(field(record, "level") or "info").lower()
    return {
        "timestamp": entry.get("at"),
        "type": "default",
        "category": "log",
        "level": {"warn": "warning", "trace": "debug"}.get(level, ERROR_LEVELS.get(level, level)),
        "message": str(field(record, "message", "msg") or "")[:TEXT_LIMIT],
    }


@dataclass(slots=True)
class BuiltEvent:
    event: dict[str, Any]
    fingerprint: str
    request_id: str | None
    trace_id: str | None
    title: str


def event_from_log_record(
    record: Any, *, environment: str | None, release: str | None, timeline: Mapping[str, Any] | None = None
) -> BuiltEvent | None:
    """An event for an error/fatal log record, or ``None`` for anything else."""
    level = error_level(record)
    if level is None:
        return None
    message = field(record, "message", "msg")
    message = str(message) if message is not None else None
    error = field(record, "error", "err")
    err_type = field(error, "type", "name") if error is not None else None
    err_value = field(error, "value", "message") if error is not None else None
    stack = field(error, "stack", "stacktrace") if error is not None else None
    err_type = err_type or field(record, "error_type")
    err_value = err_value or field(record, "error_message")
    stack = stack or field(record, "error_stack", "stack")
    platform, exceptions = parse_stack(str(stack)) if stack else ("other", [])
    if exceptions:
        main = exceptions[-1]
        if err_type and main.type == "Error" and str(err_type) != "Error":
            main.type = str(err_type)
        if err_value and not main.value:
            main.value = str(err_value)
    elif err_type or err_value:
        exceptions = [ParsedException(type=str(err_type or "Error"), value=str(err_value or message or ""))]
    request_id = field(record, "request_id")
    trace_id = field(record, "trace_id")
    route = field(record, "route", "access.route", "fields.route", "http_route")
    logger = field(record, "logger", "source")
    moment = field(record, "time", "timestamp")
    timestamp = _timestamp(moment)
    event_id = new_event_id()
    event: dict[str, Any] = {
        "event_id": event_id,
        "timestamp": timestamp,
        "platform": platform,
        "level": level,
        "logger": str(logger) if logger else "app",
        "tags": _tags(
            request_id=request_id,
            trace_id=trace_id,
            route=route,
            **{
                "http.method": field(record, "method", "access.method"),
                "http.status_code": field(record, "status", "access.status"),
            },
            source="sidecar.logs",
        ),
        "contexts": _trace_context(trace_id),
        "sdk": {"name": "observability-sidecar.logs", "version": __version__},
    }
    if message:
        event["message"] = {"formatted": message[:8_192]}
    if exceptions:
        event["exception"] = {"values": [e.to_sentry("sidecar.logs") for e in exceptions]}
    if environment:
        event["environment"] = environment
    if release:
        event["release"] = release
    crumbs = breadcrumbs_from_timeline(timeline, message, timestamp if moment is not None else None)
    if crumbs:
        event["breadcrumbs"] = {"values": crumbs}
    title = f"{exceptions[-1].type}: {exceptions[-1].value}" if exceptions else (message or "error")
    return BuiltEvent(
        event,
        fingerprint(exceptions, message, str(logger) if logger else None),
        str(request_id) if request_id else None,
        str(trace_id) if trace_id else None,
        title[:TEXT_LIMIT],
    )


def event_from_gateway_5xx(
    *,
    method: str,
    route: str,
    status: int,
    request_id: str | None,
    trace_id: str | None,
    duration_seconds: float | None,
    error: str | None,
    environment: str | None,
    release: str | None,
    timeline: Mapping[str, Any] | None = None,
) -> BuiltEvent:
    """An event for a 5xx answer; grouped by method, route template and status."""
    title = f"{method} {route} answered {status}" + (f" ({error})" if error else "")
    event: dict[str, Any] = {
        "event_id": new_event_id(),
        "timestamp": time.time(),
        "platform": "other",
        "level": "error",
        "logger": "sidecar.gateway",
        "message": {"formatted": title[:TEXT_LIMIT]},
        "fingerprint": ["sidecar-gateway-5xx", method, route, str(status)],
        "tags": _tags(
            request_id=request_id,
            trace_id=trace_id,
            route=route,
            **{"http.method": method, "http.status_code": status},
            source="sidecar.gateway",
        ),
        "request": {"method": method, "url": route},
        "contexts": {**_trace_context(trace_id), "response": {"status_code": status}},
        "extra": {
            k: v for k, v in {"duration_seconds": duration_seconds, "error": error}.items() if v is not None
        },
        "sdk": {"name": "observability-sidecar.gateway", "version": __version__},
    }
    if environment:
        event["environment"] = environment
    if release:
        event["release"] = release
    crumbs = breadcrumbs_from_timeline(timeline, None)
    if crumbs:
        event["breadcrumbs"] = {"values": crumbs}
    key = hashlib.sha1(f"5xx|{method}|{route}|{status}".encode(), usedforsecurity=False).hexdigest()
    return BuiltEvent(event, key, request_id, trace_id, title[:TEXT_LIMIT])
