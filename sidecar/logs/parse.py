"""One parser for every log line, whatever wrote it: JSON from the common loggers, logfmt, or plain text.

JSON from pino, winston, bunyan, NestJS, structlog and python-json-logger is understood without
configuration: the field names those libraries use for level, message, time, request ID, trace ID,
error and access data are looked up directly (a chain of ``dict.get``, most common name first) because
this runs once per line and is the hot path of log-derived metrics. ``fields:`` overrides are applied
after the defaults, so they cost nothing when none are configured.

A line that cannot be understood is not an exception: ``parse`` returns the rejection reason (a short
constant suitable as a metric label) and the caller counts it.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

import orjson

from sidecar.logs.settings import MIB, FieldOverrides

# Rejection reasons (metric label values).
INVALID_UTF8: Final = "invalid_utf8"
INVALID_JSON: Final = "invalid_json"
TOO_LONG: Final = "too_long"
BINARY: Final = "binary"
REJECT_REASONS: Final = (INVALID_UTF8, INVALID_JSON, TOO_LONG, BINARY)

UNKNOWN_LEVEL: Final = "unknown"
LEVELS: Final = ("trace", "debug", "info", "warn", "error", "fatal", UNKNOWN_LEVEL)
MAX_ID_CHARS: Final = 128

_LEVEL_ALIASES = {
    "trace": "trace",
    "finest": "trace",
    "finer": "trace",
    "silly": "trace",
    "debug": "debug",
    "dbg": "debug",
    "fine": "debug",
    "verbose": "debug",
    "info": "info",
    "inf": "info",
    "information": "info",
    "informational": "info",
    "notice": "info",
    "log": "info",  # NestJS
    "http": "info",  # winston's npm levels
    "warn": "warn",
    "warning": "warn",
    "wrn": "warn",
    "error": "error",
    "err": "error",
    "eror": "error",
    "severe": "error",
    "fatal": "fatal",
    "critical": "fatal",
    "crit": "fatal",
    "panic": "fatal",
    "alert": "fatal",
    "emerg": "fatal",
    "emergency": "fatal",
}
# Bunyan and pino numeric levels; 0-7 are syslog severities (GELF and friends).
_SYSLOG = ("fatal", "fatal", "fatal", "error", "warn", "info", "info", "debug")


def _numeric_level(value: int) -> str:
    if 0 <= value < len(_SYSLOG):
        return _SYSLOG[value]
    for floor, name in (
        (60, "fatal"),
        (50, "error"),
        (40, "warn"),
        (30, "info"),
        (20, "debug"),
        (10, "trace"),
    ):
        if value >= floor:
            return name
    return UNKNOWN_LEVEL


def _base_level_table() -> dict[object, str]:
    table: dict[object, str] = {}
    for name, level in _LEVEL_ALIASES.items():
        for form in (name, name.upper(), name.capitalize()):
            table[form] = level
    for number in (*range(8), 10, 20, 30, 40, 50, 60):
        table[number] = _numeric_level(number)
    return table


@dataclass(slots=True)
class LogError:
    """An error attached to a line: exception type, its message and the stack as text."""

    type: str | None
    value: str | None
    stack: str | None = None


@dataclass(slots=True)
class AccessInfo:
    """The request a line reports on, when it is an access line."""

    method: str
    url: str | None
    route: str | None
    status: int
    duration_seconds: float | None
    bytes: int | None = None

    def __init__(  # written out: compiled, the generated one sets each field through the generic path
        self,
        method: str,
        url: str | None,
        route: str | None,
        status: int,
        duration_seconds: float | None,
        bytes: int | None = None,
    ) -> None:
        self.method = method
        self.url = url
        self.route = route
        self.status = status
        self.duration_seconds = duration_seconds
        self.bytes = bytes


@dataclass(slots=True)
class LogRecord:
    """A normalised line; ``fields`` holds what the app wrote (the JSON object or logfmt pairs)."""

    level: str
    message: str
    raw_time: Any
    request_id: str | None
    trace_id: str | None
    error: LogError | None
    access: AccessInfo | None
    source: str
    fields: dict[str, Any] = field(default_factory=dict)

    def __init__(  # written out: compiled, the generated one sets each field through the generic path
        self,
        level: str,
        message: str,
        raw_time: Any,
        request_id: str | None,
        trace_id: str | None,
        error: LogError | None,
        access: AccessInfo | None,
        source: str,
        fields: dict[str, Any] | None = None,
    ) -> None:
        self.level = level
        self.message = message
        self.raw_time = raw_time
        self.request_id = request_id
        self.trace_id = trace_id
        self.error = error
        self.access = access
        self.source = source
        self.fields = {} if fields is None else fields

    @property
    def time(self) -> float | None:
        """Unix seconds from whatever the app wrote (epoch s/ms/us/ns or ISO 8601); parsed on demand."""
        return parse_time(self.raw_time)


def parse_time(value: Any) -> float | None:
    """Epoch seconds, milliseconds, microseconds or nanoseconds, or an ISO 8601 text, as Unix seconds."""
    number: float | None = None
    try:
        if isinstance(value, int | float) and not isinstance(value, bool):
            number = float(value)
        elif isinstance(value, str):
            try:
                number = float(value)
            except ValueError:
                return _iso_time(value)
    except OverflowError:
        return None
    if number is None or not math.isfinite(number):  # "nan" and "inf" are valid floats, not times
        return None
    for limit, scale in ((1e17, 1e9), (1e14, 1e6), (1e11, 1e3)):
        if number > limit:
            return number / scale
    return number


def _iso_time(text: str) -> float | None:
    text = text.strip()
    if "," in text:  # python logging's asctime: 2024-01-02 03:04:05,678
        text = text.replace(",", ".", 1)
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    if moment.tzinfo is None:  # naive times are taken as UTC, the usual container clock
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


_DURATION_TEXT = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ns|us|µs|ms|s|m)?\s*$")
_TEXT_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0}
_UNIT_SECONDS = {"s": 1.0, "ms": 1e-3, "us": 1e-6, "ns": 1e-9}


def _seconds(value: Any, unit: float) -> float | None:
    """A duration in seconds from a number in ``unit`` seconds, or a text such as ``12ms`` or ``0.2s``."""
    kind = type(value)
    if kind is int or kind is float:
        seconds: float = value * unit
    elif kind is str:
        match = _DURATION_TEXT.match(value)
        if match is None:
            return None
        seconds = float(match[1]) * (_TEXT_UNITS[match[2]] if match[2] else unit)
    else:
        return None
    return seconds if 0 <= seconds < 86_400 else None


def _digits(text: str, most: int) -> int | None:
    """An ASCII number of at most ``most`` digits (``isdigit`` alone admits "²" and 5000-digit texts)."""
    return int(text) if len(text) <= most and text.isascii() and text.isdigit() else None


def _status(value: Any) -> int | None:
    kind = type(value)
    if kind is int:
        status: int = value
    elif kind is str:
        parsed = _digits(value, 3)
        if parsed is None:
            return None
        status = parsed
    else:
        return None
    return status if 100 <= status <= 599 else None


def _count(value: Any) -> int | None:
    if type(value) is int:
        return value if value >= 0 else None
    if type(value) is str:
        return _digits(value, 18)
    return None


def _ident(value: Any, limit: int = MAX_ID_CHARS) -> str | None:
    """A request or trace ID as text; anything empty, structured or absurdly long is not an ID."""
    kind = type(value)
    if kind is str:
        return value if 0 < len(value) <= limit else None
    if kind is int:
        return str(value)
    return None


def _trace_id(value: Any) -> str | None:
    text = _ident(value, 256)
    if text is None:
        return None
    if text.startswith("00-") and len(text) == 55:  # a whole traceparent header
        return text[3:35].lower()
    if "/traces/" in text:  # logging.googleapis.com/trace: projects/p/traces/<id>
        text = text.rsplit("/", 1)[1]
    return text.lower() if len(text) <= 64 else None


_STACK_HEAD = re.compile(r"^([A-Za-z_$][\w.$]*)(?::\s?(.*))?$")


def _error_from_stack(stack: str) -> tuple[str | None, str | None]:
    """Type and message from a stack as text: a Python traceback's last line, a JS stack's first."""
    lines = [line for line in stack.strip().splitlines() if line.strip()]
    if not lines:
        return None, None
    head = lines[-1] if lines[0].startswith("Traceback") else lines[0]
    match = _STACK_HEAD.match(head.strip())
    if match is None or not (match[2] is not None or match[1][:1].isupper()):
        return None, head.strip()
    return match[1], match[2]


def _text(value: Any) -> str | None:
    if type(value) is str:
        return value
    if type(value) is list and value and all(type(v) is str for v in value):
        return "\n".join(value)  # NestJS writes the stack as a list
    return None


def _frames(trace: dict[str, Any]) -> str | None:
    frames = trace.get("frames")
    if type(frames) is not list:
        return None
    lines = [
        f'  File "{f.get("filename")}", line {f.get("lineno")}, in {f.get("name")}'
        for f in frames
        if type(f) is dict
    ]
    return "\n".join(lines) or None


def _error_of(value: Any, stack_fallback: Any = None) -> LogError | None:
    """An error from a pino/bunyan ``err`` object, an ECS ``error``, structlog's ``exception`` or text."""
    kind = type(value)
    if kind is dict:
        etype = _ident(
            value.get("type") or value.get("name") or value.get("exc_type") or value.get("kind"), 256
        )
        message = value.get("message") or value.get("msg") or value.get("exc_value")
        stack = _text(value.get("stack") or value.get("stack_trace") or value.get("stacktrace"))
        if etype is None and stack:
            etype, from_stack = _error_from_stack(stack)
            message = message or from_stack
        return LogError(etype, message if type(message) is str else None, stack)
    if kind is list and value and type(value[-1]) is dict:  # structlog dict_tracebacks
        trace = value[-1]
        return LogError(_ident(trace.get("exc_type"), 256), _text(trace.get("exc_value")), _frames(trace))
    text = _text(value)
    if text is None:
        if stack_fallback is not None:
            return _error_of(stack_fallback)
        return None
    if "\n" in text or text.startswith("Traceback"):
        etype, message = _error_from_stack(text)
        return LogError(etype, message, text)
    return LogError(None, text, None)


# Access lines: duration fields and the unit their numbers are in.
_DURATION_KEYS: Final = (
    ("responseTime", 1e-3),  # pino-http, express-winston, morgan-json
    ("response_time", 1e-3),
    ("response-time", 1e-3),
    ("duration_ms", 1e-3),
    ("durationMs", 1e-3),
    ("elapsed_ms", 1e-3),
    ("latency_ms", 1e-3),
    ("duration", 1.0),  # structlog/zap style: seconds unless the text says otherwise
    ("duration_seconds", 1.0),
    ("request_time", 1.0),  # nginx $request_time
    ("elapsed", 1.0),
    ("latency", 1.0),  # Google Cloud httpRequest style "0.012s"
)


def _duration_of(mapping: dict[str, Any]) -> float | None:
    for key, unit in _DURATION_KEYS:
        value = mapping.get(key)
        if value is not None:
            return _seconds(value, unit)
    return None


def _header_bytes(res: Any) -> int | None:
    """pino-http's ``res.headers["content-length"]``."""
    if type(res) is dict:
        headers = res.get("headers")
        if type(headers) is dict:
            return _count(headers.get("content-length"))
    return None


def _bytes_of(mapping: dict[str, Any], res: Any) -> int | None:
    size = (
        mapping.get("contentLength")
        or mapping.get("content_length")
        or mapping.get("bytes")
        or mapping.get("body_bytes_sent")
        or mapping.get("response_size")
    )
    if size is None and type(res) is dict:
        headers = res.get("headers")
        if type(headers) is dict:
            size = headers.get("content-length")
    return _count(size)


# Keys whose presence sends a line through the slower, complete extraction.
_RARE_KEYS: Final = frozenset(
    {
        "stream",
        "trace_id",
        "traceId",
        "otelTraceID",
        "trace.id",
        "dd.trace_id",
        "traceparent",
        "logging.googleapis.com/trace",
        "trace",
        "dd",
        "err",
        "error",
        "exc_info",
        "exception",
        "stack_trace",
        "stack",
        "method",
        "http_method",
        "request_method",
        "meta",
        "http",
        "httpRequest",
    }
)

# Plain text.
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_CRI_PREFIX = re.compile(r"^\d{4}-\d\d-\d\dT\S+ (?:stdout|stderr) [FP] ")
_PLAIN_LEVEL = re.compile(
    r"^(?:\S+\s+){0,3}?[\[(<]?"
    r"(TRACE|DEBUG|INFO|NOTICE|WARN|WARNING|ERROR|ERR|FATAL|CRITICAL|CRIT|PANIC|SEVERE)"
    r"[\])>]?(?=[\s:|\-]|$)"
)
_PLAIN_BRACKET_LEVEL = re.compile(
    r"\[(trace|debug|info|notice|warn|warning|error|crit|alert|emerg|fatal)\]", re.IGNORECASE
)
_PLAIN_REQUEST_ID = re.compile(
    r"(?i)\b(?:x-)?req(?:uest)?[_-]?id[\"']?\s*[=:]\s*[\"']?([A-Za-z0-9][A-Za-z0-9._:\-]{0,127})"
)
_PLAIN_TRACE_ID = re.compile(r"(?i)\btrace[_-]?id[\"']?\s*[=:]\s*[\"']?([0-9a-f]{16,32})\b")
_TRACEPARENT = re.compile(r"\b00-([0-9a-f]{32})-[0-9a-f]{16}-[0-9a-f]{2}\b")
_CLF_REQUEST = re.compile(r"\"([A-Z]{3,7}) (\S+) HTTP/[0-9.]+\" (\d{3})(?: (\d+|-))?")
_PLAIN_ERROR = re.compile(r"\b((?:[A-Za-z_]\w*\.)*[A-Z]\w*(?:Error|Exception))\b(?::\s?(.*))?")
_LOGFMT_START = re.compile(r"^[A-Za-z_@][\w.@/-]*=")
_LOGFMT_PAIR = re.compile(r"([A-Za-z_@][\w.@/-]*)=(\"(?:[^\"\\]|\\.)*\"|[^\s\"]*)")


def parse_logfmt(text: str) -> dict[str, Any] | None:
    """``key=value key2="quoted value"`` pairs, or ``None`` when the text is not logfmt."""
    pairs = _LOGFMT_PAIR.findall(text)
    if len(pairs) < 2:
        return None
    out: dict[str, Any] = {}
    for key, raw in pairs:
        value: Any = raw
        if raw.startswith('"'):
            try:
                value = orjson.loads(raw)
            except orjson.JSONDecodeError:
                value = raw[1:-1]
        out[key] = value
    return out


def _path(spec: str) -> tuple[str, ...]:
    return tuple(spec.split("."))


def _lookup(mapping: dict[str, Any], spec: str, path: tuple[str, ...]) -> Any:
    """A dotted path, trying the literal key first (``"trace.id"`` as one key is common too)."""
    value = mapping.get(spec)
    if value is not None or len(path) == 1:
        return value
    node: Any = mapping
    for part in path:
        if type(node) is not dict:
            return None
        node = node.get(part)
    return node


class LogParser:
    """Turns raw lines into ``LogRecord``s, or a rejection reason; never raises on bad input."""

    def __init__(self, overrides: FieldOverrides | None = None, max_line_bytes: int = MIB) -> None:
        self.max_line_bytes = max_line_bytes
        self._levels = _base_level_table()
        self._overrides: list[tuple[str, tuple[tuple[str, tuple[str, ...]], ...]]] = []
        self._override_unit = 1e-3
        if overrides is not None:
            for name, level in overrides.levels.items():
                self._levels[name] = level
                self._levels[name.lower()] = level
            self._override_unit = _UNIT_SECONDS[overrides.duration_unit]
            for name in FieldOverrides.__struct_fields__:
                specs = getattr(overrides, name)
                if name in {"levels", "duration_unit"} or not specs:
                    continue
                self._overrides.append((name, tuple((s, _path(s)) for s in specs)))

    def level_of(self, value: Any) -> str:
        """One of ``LEVELS`` for whatever the app wrote as its level."""
        kind = type(value)
        if kind is str or kind is int:
            level = self._levels.get(value)
            if level is not None:
                return level
            if kind is int:
                return _numeric_level(value)
            text = value.strip().lower()
            number = _digits(text, 4)
            if number is not None:
                return _numeric_level(number)
            return self._levels.get(text, UNKNOWN_LEVEL)
        return UNKNOWN_LEVEL

    def parse(self, line: bytes, source: str) -> LogRecord | str:
        """The normalised record, or the reason the line was rejected."""
        if len(line) > self.max_line_bytes:
            return TOO_LONG
        if line[:1] == b"{":
            try:
                obj = orjson.loads(line)
            except orjson.JSONDecodeError:
                return rejection_of_bad_json(line)
            return self.from_mapping(obj, source)
        return self._from_text(line, source)

    def from_mapping(  # noqa: PLR0912, PLR0915 (one pass on the hot path, kept in one frame)
        self, d: dict[str, Any], source: str
    ) -> LogRecord:
        """Extract the normalised fields from a decoded JSON object (or logfmt pairs).

        Lines carrying none of the less common keys (trace IDs, errors, flat or nested access fields,
        Docker's wrapper) are recognised with one set operation and skip those lookups entirely.
        """
        rare = not _RARE_KEYS.isdisjoint(d)
        if rare and "stream" in d and type(d.get("log")) is str:  # Docker's json-file wrapper
            return self._unwrap_docker(d, source)
        lv = d.get("level")
        if lv is None:
            lv = (
                d.get("levelname")
                or d.get("severity")
                or d.get("lvl")
                or d.get("log.level")
                or d.get("loglevel")
            )
        try:
            level = self._levels[lv]
        except (KeyError, TypeError):
            level = self.level_of(lv)
        message = d.get("msg")
        if type(message) is not str:
            message = d.get("message")
            if type(message) is not str:
                message = d.get("event")  # structlog
                if type(message) is not str:
                    message = ""
        raw_time = d.get("time")
        if raw_time is None:
            raw_time = d.get("timestamp") or d.get("@timestamp") or d.get("asctime") or d.get("ts")

        rid = d.get("reqId")
        if rid is None:
            rid = (
                d.get("request_id")
                or d.get("requestId")
                or d.get("req_id")
                or d.get("x-request-id")
                or d.get("requestID")
            )
        # The common cases are tested inline; the helpers handle everything else.
        if type(rid) is str and 0 < len(rid) <= MAX_ID_CHARS:
            request_id: str | None = rid
        else:
            request_id = _ident(rid) if rid is not None else None
        req = d.get("req")
        access: AccessInfo | None = None
        if type(req) is dict:
            if request_id is None:
                request_id = _ident(req.get("id"))
                if request_id is None:
                    headers = req.get("headers")
                    if type(headers) is dict:
                        request_id = _ident(headers.get("x-request-id"))
            res = d.get("res")
            method = req.get("method")
            url = req.get("url") or req.get("originalUrl") or req.get("path")
            code = res.get("statusCode") if type(res) is dict else d.get("statusCode")
            status = code if type(code) is int and 100 <= code <= 599 else _status(code)
            if type(method) is str and status is not None and type(url) is str:
                elapsed = d.get("responseTime")  # pino-http, in milliseconds
                if type(elapsed) is int and 0 <= elapsed < 86_400_000:
                    duration: float | None = elapsed / 1000
                else:
                    duration = _seconds(elapsed, 1e-3) if elapsed is not None else _duration_of(d)
                size = _header_bytes(res) if type(res) is dict and "headers" in res else None
                access = AccessInfo(method, url, None, status, duration, size)

        trace_id = None
        error = None
        if rare:
            trace = (
                d.get("trace_id")
                or d.get("traceId")
                or d.get("otelTraceID")
                or d.get("trace.id")
                or d.get("dd.trace_id")
                or d.get("traceparent")
                or d.get("logging.googleapis.com/trace")
            )
            if trace is None:
                nested = d.get("trace") or d.get("dd")
                if type(nested) is dict:
                    trace = nested.get("id") or nested.get("trace_id")
            trace_id = _trace_id(trace) if trace is not None else None
            err = d.get("err")
            if err is None:
                err = d.get("error") or d.get("exc_info") or d.get("exception") or d.get("stack_trace")
            stack = d.get("stack")
            if err is not None or stack is not None:
                error = _error_of(err, stack)
            if access is None and req is None:
                method = d.get("method") or d.get("http_method") or d.get("request_method")
                access = _flat_access(d, method) if method is not None else _nested_access(d)
            if request_id is None and type(http := d.get("http")) is dict:  # ECS http.request.id
                request = http.get("request")
                if type(request) is dict:
                    request_id = _ident(request.get("id"))

        record = LogRecord(level, message, raw_time, request_id, trace_id, error, access, source, d)
        if self._overrides:
            self._apply_overrides(record, d)
        return record

    def _unwrap_docker(self, d: dict[str, Any], source: str) -> LogRecord:
        inner = d["log"].rstrip("\n")
        parsed: LogRecord | str = INVALID_JSON
        if inner[:1] == "{":
            try:
                obj = orjson.loads(inner)
            except orjson.JSONDecodeError:
                pass
            else:  # a wrapper inside the wrapper is not unwrapped again (no recursion on app input)
                if type(obj) is dict and not ("stream" in obj and "log" in obj):
                    parsed = self.from_mapping(obj, source)
        else:
            parsed = self._from_text(inner.encode(), source)
        if isinstance(parsed, str):  # the wrapper is valid JSON; keep the text as a plain line
            return LogRecord(
                UNKNOWN_LEVEL, d["log"].rstrip("\n"), d.get("time"), None, None, None, None, source, d
            )
        if parsed.raw_time is None:
            parsed.raw_time = d.get("time")
        return parsed

    def _apply_overrides(self, record: LogRecord, d: dict[str, Any]) -> None:
        """Configured paths win over the built-in names for every field they find."""
        found: dict[str, Any] = {}
        for name, specs in self._overrides:
            for spec, path in specs:
                value = _lookup(d, spec, path)
                if value is not None:
                    found[name] = value
                    break
        if not found:
            return
        if "level" in found:
            record.level = self.level_of(found["level"])
        if type(found.get("message")) is str:
            record.message = found["message"]
        if "time" in found:
            record.raw_time = found["time"]
        if "request_id" in found:
            record.request_id = _ident(found["request_id"]) or record.request_id
        if "trace_id" in found:
            record.trace_id = _trace_id(found["trace_id"]) or record.trace_id
        if {"error_type", "error_message", "error_stack"} & found.keys():
            old = record.error or LogError(None, None, None)
            record.error = LogError(
                _ident(found.get("error_type"), 256) or old.type,
                _text(found.get("error_message")) or old.value,
                _text(found.get("error_stack")) or old.stack,
            )
        if {"method", "url", "route", "status", "duration", "bytes"} & found.keys():
            old_access = record.access
            method = found.get("method") or (old_access.method if old_access else None)
            status = _status(found.get("status")) or (old_access.status if old_access else None)
            url = _text(found.get("url")) or (old_access.url if old_access else None)
            route = _text(found.get("route")) or (old_access.route if old_access else None)
            duration = (
                _seconds(found["duration"], self._override_unit)
                if "duration" in found
                else (old_access.duration_seconds if old_access else None)
            )
            size = _count(found.get("bytes")) or (old_access.bytes if old_access else None)
            if type(method) is str and status is not None and (url or route):
                record.access = AccessInfo(method, url, route, status, duration, size)

    def _from_text(  # noqa: PLR0911 (one return per rejection reason and per format)
        self, line: bytes, source: str
    ) -> LogRecord | str:
        if b"\x00" in line:
            return BINARY
        try:
            text = line.decode()
        except UnicodeDecodeError:
            return INVALID_UTF8
        text = text.rstrip()
        if "\x1b" in text:
            text = _ANSI.sub("", text)
        if _CONTROL.search(text):
            return BINARY
        stripped = text.lstrip()
        if not stripped:
            return BINARY
        cri = _CRI_PREFIX.match(stripped)
        if cri is not None:  # Kubernetes CRI log files: "<time> stdout F <line>"; one prefix, no recursion
            stripped = stripped[cri.end() :].lstrip() or stripped
        if stripped[0] == "{":
            try:
                obj = orjson.loads(stripped)
            except orjson.JSONDecodeError:
                return INVALID_JSON
            if type(obj) is dict:
                return self.from_mapping(obj, source)
        if _LOGFMT_START.match(stripped):
            pairs = parse_logfmt(stripped)
            if pairs is not None:
                return self.from_mapping(pairs, source)
        return self._plain(stripped, source)

    def _plain(self, text: str, source: str) -> LogRecord:
        match = _PLAIN_LEVEL.match(text) or _PLAIN_BRACKET_LEVEL.search(text, 0, 80)
        level = self.level_of(match[1]) if match else UNKNOWN_LEVEL
        request = _PLAIN_REQUEST_ID.search(text)
        trace = _PLAIN_TRACE_ID.search(text) or _TRACEPARENT.search(text)
        access = None
        clf = _CLF_REQUEST.search(text)
        if clf is not None:
            status = _status(clf[3])
            if status is not None:
                access = AccessInfo(clf[1], clf[2], None, status, None, _count(clf[4]) if clf[4] else None)
        error = None
        if level in {"error", "fatal"}:
            named = _PLAIN_ERROR.search(text)
            if named is not None:
                error = LogError(named[1], named[2], None)
        return LogRecord(
            level,
            text,
            None,
            request[1] if request else None,
            trace[1].lower() if trace else None,
            error,
            access,
            source,
            {},
        )


def _flat_access(d: dict[str, Any], method: Any) -> AccessInfo | None:
    """morgan-json, python and nginx JSON access lines: method, path, status and duration side by side."""
    status = _status(
        d.get("status") or d.get("status_code") or d.get("statusCode") or d.get("response_status")
    )
    url = d.get("url") or d.get("path") or d.get("request_path") or d.get("uri") or d.get("originalUrl")
    route = d.get("route") or d.get("http.route")
    if type(method) is not str or status is None or not (type(url) is str or type(route) is str):
        return None
    return AccessInfo(
        method,
        url if type(url) is str else None,
        route if type(route) is str else None,
        status,
        _duration_of(d),
        _bytes_of(d, None),
    )


def _nested_access(d: dict[str, Any]) -> AccessInfo | None:
    """express-winston's ``meta.req/res``, ECS ``http.*`` + ``url.path`` and Google's ``httpRequest``."""
    meta = d.get("meta")
    if type(meta) is dict and type(meta.get("req")) is dict:
        req, res = meta["req"], meta.get("res")
        status = _status(res.get("statusCode")) if type(res) is dict else None
        method, url = req.get("method"), req.get("originalUrl") or req.get("url")
        if type(method) is str and type(url) is str and status is not None:
            return AccessInfo(method, url, None, status, _duration_of(meta), _bytes_of(meta, res))
    http = d.get("http")
    if type(http) is dict:
        request, response, url_field = http.get("request"), http.get("response"), d.get("url")
        method = request.get("method") if type(request) is dict else None
        status = _status(response.get("status_code")) if type(response) is dict else None
        path = url_field.get("path") if type(url_field) is dict else None
        route = http.get("route")
        if type(method) is str and status is not None and (type(path) is str or type(route) is str):
            event = d.get("event")
            nanos = event.get("duration") if type(event) is dict else None
            return AccessInfo(
                method,
                path if type(path) is str else None,
                route if type(route) is str else None,
                status,
                _seconds(nanos, 1e-9) if nanos is not None else None,
                None,
            )
    google = d.get("httpRequest")
    if type(google) is dict:
        method, url = google.get("requestMethod"), google.get("requestUrl")
        status = _status(google.get("status"))
        if type(method) is str and type(url) is str and status is not None:
            return AccessInfo(
                method, url, None, status, _duration_of(google), _count(google.get("responseSize"))
            )
    return None


def rejection_of_bad_json(line: bytes) -> str:
    """Why a line that looked like JSON did not decode: binary noise, bad UTF-8 or broken JSON."""
    if b"\x00" in line:
        return BINARY
    try:
        line.decode()
    except UnicodeDecodeError:
        return INVALID_UTF8
    return INVALID_JSON
