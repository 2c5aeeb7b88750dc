"""The log parser on each library's real output format, on logfmt and plain text, and on hostile input.

Fixture lines are copied from the libraries' documented output (and from runs of them); the Python
ones (``logging`` + python-json-logger, structlog) are produced by the real libraries in the test.
"""

from __future__ import annotations

import io
import logging
import os
from typing import Any

import orjson
import pytest
import structlog
from pythonjsonlogger.json import JsonFormatter

from sidecar.logs.parse import (
    BINARY,
    INVALID_JSON,
    INVALID_UTF8,
    TOO_LONG,
    LogParser,
    LogRecord,
    parse_logfmt,
    parse_time,
)
from sidecar.logs.settings import FieldOverrides

pytestmark = pytest.mark.timeout(10)


def parse(line: str | bytes, parser: LogParser | None = None) -> LogRecord:
    raw = line.encode() if isinstance(line, str) else line
    record = (parser or LogParser()).parse(raw, "app")
    assert isinstance(record, LogRecord), record
    return record


# --- Node loggers -----------------------------------------------------------------------------------

PINO_INFO = '{"level":30,"time":1700000000123,"pid":6409,"hostname":"vm","reqId":"req-1","msg":"user loaded"}'
PINO_ERROR = (
    '{"level":50,"time":1700000000124,"pid":6409,"hostname":"vm","err":{"type":"TypeError",'
    '"message":"cannot read properties of undefined (reading \'id\')","stack":"TypeError: cannot read '
    "properties of undefined (reading 'id')\\n    at boom (/app/emit.js:9:15)\\n    at main "
    '(/app/emit.js:19:23)"},"reqId":"req-1","msg":"handler failed"}'
)
PINO_HTTP = (
    '{"level":30,"time":1700000000362,"pid":6409,"hostname":"vm","req":{"id":"req-2","method":"GET",'
    '"url":"/users/123?expand=true","headers":{"x-request-id":"req-2","host":"127.0.0.1:38809",'
    '"connection":"keep-alive"},"remoteAddress":"127.0.0.1","remotePort":46000},"res":{"statusCode":200,'
    '"headers":{"content-length":"42"}},"responseTime":12,"msg":"request completed"}'
)
WINSTON_INFO = (
    '{"level":"info","message":"order created","orderId":7,"requestId":"w-1",'
    '"timestamp":"2026-11-23T18:11:34.426Z"}'
)
WINSTON_ERROR = (
    '{"level":"error","message":"boom","stack":"Error: boom\\n    at main (/app/index.js:47:14)",'
    '"timestamp":"2026-11-23T18:11:34.428Z"}'
)
EXPRESS_WINSTON = (
    '{"meta":{"req":{"url":"/users/5","headers":{"host":"localhost"},"method":"GET","httpVersion":"1.1",'
    '"originalUrl":"/users/5","query":{}},"res":{"statusCode":200},"responseTime":4},"level":"info",'
    '"message":"HTTP GET /users/5"}'
)
MORGAN_JSON = (
    '{"method":"POST","url":"/orders","status":"201","contentLength":"17","responseTime":"3.5",'
    '"requestId":"m-1"}'
)
BUNYAN_INFO = (
    '{"name":"api","hostname":"vm","pid":6409,"level":30,"req_id":"b-1","msg":"listening",'
    '"time":"2026-11-23T18:11:34.440Z","v":0}'
)
BUNYAN_ERROR = (
    '{"name":"api","hostname":"vm","pid":6409,"level":50,"err":{"message":"boom","name":"TypeError",'
    '"stack":"TypeError: boom\\n    at main (/app/emit.js:55:21)"},"req_id":"b-1","msg":"request failed",'
    '"time":"2026-11-23T18:11:34.440Z","v":0}'
)
NEST_LOG = (
    '{"level":"log","pid":19096,"timestamp":1607370779834,"message":"Starting Nest application...",'
    '"context":"NestFactory"}'
)
NEST_ERROR = (
    '{"level":"error","pid":19096,"timestamp":1607370779834,"message":"boom","context":"ExceptionsHandler",'
    '"stack":["Error: boom\\n    at AppController.get (/app/dist/app.controller.js:20:15)"]}'
)


def test_pino_info_line() -> None:
    record = parse(PINO_INFO)
    assert (record.level, record.message, record.request_id) == ("info", "user loaded", "req-1")
    assert record.time == pytest.approx(1700000000.123)
    assert record.error is None and record.access is None
    assert record.fields["hostname"] == "vm"


def test_pino_error_has_type_message_and_stack() -> None:
    record = parse(PINO_ERROR)
    assert record.level == "error"
    assert record.error is not None
    assert record.error.type == "TypeError"
    assert record.error.value is not None and "reading 'id'" in record.error.value
    assert record.error.stack is not None and "at boom" in record.error.stack


def test_pino_http_access_line() -> None:
    record = parse(PINO_HTTP)
    assert record.request_id == "req-2"
    access = record.access
    assert access is not None
    assert (access.method, access.url, access.status) == ("GET", "/users/123?expand=true", 200)
    assert access.duration_seconds == pytest.approx(0.012)
    assert access.bytes == 42


def test_winston_lines() -> None:
    info = parse(WINSTON_INFO)
    assert (info.level, info.message, info.request_id) == ("info", "order created", "w-1")
    assert info.time == pytest.approx(1795457494.426)
    error = parse(WINSTON_ERROR)
    assert error.error is not None
    assert (error.error.type, error.error.value) == ("Error", "boom")
    assert parse('{"level":"http","message":"GET /health 200"}').level == "info"
    assert parse('{"level":"silly","message":"x"}').level == "trace"


def test_express_winston_and_morgan_json_access() -> None:
    express = parse(EXPRESS_WINSTON).access
    assert express is not None
    assert (express.method, express.url, express.status) == ("GET", "/users/5", 200)
    assert express.duration_seconds == pytest.approx(0.004)
    morgan = parse(MORGAN_JSON)
    assert morgan.request_id == "m-1"
    assert morgan.access is not None
    assert (morgan.access.method, morgan.access.status, morgan.access.bytes) == ("POST", 201, 17)
    assert morgan.access.duration_seconds == pytest.approx(0.0035)


def test_bunyan_lines() -> None:
    info = parse(BUNYAN_INFO)
    assert (info.level, info.message, info.request_id) == ("info", "listening", "b-1")
    error = parse(BUNYAN_ERROR)
    assert error.level == "error"
    assert error.error is not None
    assert (error.error.type, error.error.value) == ("TypeError", "boom")


def test_nestjs_json_logger() -> None:
    log_line = parse(NEST_LOG)
    assert (log_line.level, log_line.message) == ("info", "Starting Nest application...")
    assert log_line.fields["context"] == "NestFactory"
    assert log_line.time == pytest.approx(1607370779.834)
    error = parse(NEST_ERROR)
    assert error.error is not None
    assert error.error.type == "Error"
    assert error.error.stack is not None and "AppController.get" in error.error.stack


# --- Python loggers, produced by the real libraries ------------------------------------------------


def _python_json_logger_lines() -> list[str]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    logger = logging.getLogger("test_logs_parse.pjl")
    logger.propagate = False
    logger.handlers = [handler]
    logger.setLevel(logging.DEBUG)
    logger.warning("disk almost full", extra={"request_id": "py-1"})
    try:
        raise KeyError("missing")
    except KeyError:
        logger.exception("lookup failed", extra={"request_id": "py-2"})
    return stream.getvalue().splitlines()


def test_python_json_logger_output() -> None:
    warning, error = (parse(line) for line in _python_json_logger_lines())
    assert (warning.level, warning.message, warning.request_id) == ("warn", "disk almost full", "py-1")
    assert warning.time is not None
    assert error.level == "error"
    assert error.error is not None
    assert error.error.type == "KeyError"
    assert error.error.stack is not None and "Traceback" in error.error.stack


def _structlog_lines(*, dict_tracebacks: bool) -> list[str]:
    stream = io.StringIO()
    processors: list[Any] = [
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso"),
        structlog.processors.dict_tracebacks if dict_tracebacks else structlog.processors.format_exc_info,
        structlog.processors.JSONRenderer(),
    ]
    logger = structlog.wrap_logger(structlog.PrintLogger(stream), processors=processors)
    logger.info("user signed in", request_id="sl-1", trace_id="0AF7651916CD43DD8448EB211C80319C")
    try:
        raise ValueError("bad input")
    except ValueError:
        logger.exception("request failed", request_id="sl-2")
    return stream.getvalue().splitlines()


@pytest.mark.parametrize("dict_tracebacks", [False, True])
def test_structlog_output(dict_tracebacks: bool) -> None:
    info, error = (parse(line) for line in _structlog_lines(dict_tracebacks=dict_tracebacks))
    assert (info.level, info.message, info.request_id) == ("info", "user signed in", "sl-1")
    assert info.trace_id == "0af7651916cd43dd8448eb211c80319c"
    assert info.time is not None
    assert error.level == "error"
    assert error.error is not None
    assert (error.error.type, error.error.value) == ("ValueError", "bad input")


def test_python_access_lines() -> None:
    structured = parse(
        '{"event":"request finished","method":"GET","path":"/users/5","status_code":200,'
        '"duration":0.0123,"request_id":"p-1","level":"info","timestamp":"2024-05-01T10:00:00Z"}'
    )
    assert structured.access is not None
    assert structured.access.duration_seconds == pytest.approx(0.0123)
    assert (structured.access.url, structured.access.status) == ("/users/5", 200)
    uvicorn = parse('INFO:     127.0.0.1:52344 - "GET /users/5 HTTP/1.1" 200 OK')
    assert uvicorn.level == "info"
    assert uvicorn.access is not None and (uvicorn.access.method, uvicorn.access.status) == ("GET", 200)
    assert uvicorn.access.duration_seconds is None


def test_ecs_and_google_cloud_shapes() -> None:
    ecs = parse(
        '{"@timestamp":"2024-01-01T00:00:00.000Z","log.level":"warning","message":"GET /x",'
        '"http":{"request":{"method":"GET","id":"ecs-1"},"response":{"status_code":503}},'
        '"url":{"path":"/x"},"event":{"duration":12000000},"trace":{"id":"0af7651916cd43dd8448eb211c80319c"}}'
    )
    assert (ecs.level, ecs.request_id, ecs.trace_id) == ("warn", "ecs-1", "0af7651916cd43dd8448eb211c80319c")
    assert ecs.access is not None and ecs.access.duration_seconds == pytest.approx(0.012)
    google = parse(
        '{"severity":"ERROR","message":"x","httpRequest":{"requestMethod":"POST",'
        '"requestUrl":"https://api.example.com/v1/items?x=1","status":500,"latency":"0.250s"},'
        '"logging.googleapis.com/trace":"projects/p/traces/4bf92f3577b34da6a3ce929d0e0e4736"}'
    )
    assert google.level == "error"
    assert google.trace_id == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert google.access is not None and google.access.duration_seconds == pytest.approx(0.25)


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ('{"msg":"x","trace_id":"ABCDEF0123456789ABCDEF0123456789"}', "abcdef0123456789abcdef0123456789"),
        ('{"msg":"x","traceId":"4bf92f3577b34da6a3ce929d0e0e4736"}', "4bf92f3577b34da6a3ce929d0e0e4736"),
        ('{"msg":"x","trace.id":"4bf92f3577b34da6a3ce929d0e0e4736"}', "4bf92f3577b34da6a3ce929d0e0e4736"),
        (
            '{"msg":"x","traceparent":"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}',
            "4bf92f3577b34da6a3ce929d0e0e4736",
        ),
        ('{"msg":"x","dd":{"trace_id":"1234567890123456789"}}', "1234567890123456789"),
        ('{"msg":"x","dd.trace_id":"42"}', "42"),
    ],
)
def test_trace_id_fields(line: str, expected: str) -> None:
    assert parse(line).trace_id == expected


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ('{"msg":"x","request_id":"a"}', "a"),
        ('{"msg":"x","requestId":"b"}', "b"),
        ('{"msg":"x","x-request-id":"c"}', "c"),
        ('{"msg":"x","req":{"id":7}}', "7"),
        ('{"msg":"x","req":{"headers":{"x-request-id":"d"}}}', "d"),
        ('{"msg":"x","request_id":""}', None),
        ('{"msg":"x","request_id":{"nested":true}}', None),
    ],
)
def test_request_id_fields(line: str, expected: str | None) -> None:
    assert parse(line).request_id == expected


# --- logfmt and plain text --------------------------------------------------------------------------


def test_logfmt_line() -> None:
    record = parse(
        'time=2024-05-01T10:00:00Z level=warn msg="slow request" method=GET path=/a/1 status=200 '
        "duration=250ms request_id=lf-1"
    )
    assert (record.level, record.message, record.request_id) == ("warn", "slow request", "lf-1")
    assert record.access is not None and record.access.duration_seconds == pytest.approx(0.25)
    assert parse_logfmt("just words") is None


@pytest.mark.parametrize(
    ("line", "level"),
    [
        ("ERROR something broke", "error"),
        ("2024-05-01 10:00:00,123 WARNING app.db: pool exhausted", "warn"),
        ("[2024-05-01 10:00:00] INFO: started", "info"),
        ("WARNING:root:low disk", "warn"),
        ("2024/05/01 10:00:00 [error] 12#0: *1 connect() failed", "error"),
        ("hello world", "unknown"),
        ("\x1b[32minfo\x1b[39m: DEBUG colourful", "debug"),
    ],
)
def test_plain_text_level_guess(line: str, level: str) -> None:
    record = parse(line)
    assert record.level == level
    assert record.message


def test_plain_text_request_and_trace_ids() -> None:
    record = parse("ERROR ValueError: bad thing request_id=abc-123 trace_id=4bf92f3577b34da6a3ce929d0e0e4736")
    assert record.request_id == "abc-123"
    assert record.trace_id == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert record.error is not None and record.error.type == "ValueError"


def test_docker_and_cri_wrappers() -> None:
    docker = parse(
        '{"log":"{\\"level\\":40,\\"msg\\":\\"careful\\"}\\n","stream":"stdout","time":"2024-05-01T10:00:00Z"}'
    )
    assert (docker.level, docker.message) == ("warn", "careful")
    assert docker.time is not None
    cri = parse('2024-05-01T10:00:00.123456789Z stdout F {"level":"error","message":"x","requestId":"k-1"}')
    assert (cri.level, cri.request_id) == ("error", "k-1")


# --- levels, times, overrides ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "level"),
    [
        (10, "trace"),
        (20, "debug"),
        (30, "info"),
        (35, "info"),
        (40, "warn"),
        (50, "error"),
        (60, "fatal"),
        (3, "error"),
        ("WARNING", "warn"),
        ("Critical", "fatal"),
        ("30", "info"),
        ("verbose", "debug"),
        ("nonsense", "unknown"),
        (None, "unknown"),
        ([1], "unknown"),
    ],
)
def test_levels(value: object, level: str) -> None:
    assert LogParser().level_of(value) == level
    assert parse(orjson.dumps({"level": value, "msg": "x"})).level == level


def test_times() -> None:
    assert parse_time(1_700_000_000) == 1_700_000_000
    assert parse_time(1_700_000_000_123) == pytest.approx(1_700_000_000.123)
    assert parse_time(1_700_000_000_123_456) == pytest.approx(1_700_000_000.123456)
    assert parse_time(1_700_000_000_123_456_789) == pytest.approx(1_700_000_000.123456789)
    assert parse_time("2024-01-02 03:04:05,678") == pytest.approx(1704164645.678)
    assert parse_time("2024-01-02T03:04:05+01:00") == pytest.approx(1704161045)
    assert parse_time("yesterday") is None
    assert parse_time(True) is None


def test_field_overrides() -> None:
    parser = LogParser(
        FieldOverrides(
            level=["sev"],
            message=["text"],
            request_id=["ctx.rid"],
            method=["http.verb"],
            url=["http.target"],
            status=["http.code"],
            duration=["http.took_us"],
            duration_unit="us",
            levels={"W": "warn"},
        )
    )
    record = parse(
        '{"sev":"W","text":"done","ctx":{"rid":"o-1"},"http":{"verb":"PUT","target":"/a/9","code":204,'
        '"took_us":1500}}',
        parser,
    )
    assert (record.level, record.message, record.request_id) == ("warn", "done", "o-1")
    assert record.access is not None
    assert (record.access.method, record.access.status) == ("PUT", 204)
    assert record.access.duration_seconds == pytest.approx(0.0015)


# --- hostile input -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        (b'{"level":30,"msg":"caf\xc3"}', INVALID_UTF8),
        (b"plain text with bad \xff\xfe bytes", INVALID_UTF8),
        (b'{"level":30,"msg":"unterminated', INVALID_JSON),
        (b'{"level":30,}', INVALID_JSON),
        (b"\x00\x01\x02\x03binary\x00", BINARY),
        (b"ok text \x07 with a bell", BINARY),
        (b'{"a":"\x00"}', BINARY),
    ],
)
def test_bad_lines_are_rejected_with_a_reason(line: bytes, reason: str) -> None:
    assert LogParser().parse(line, "app") == reason


def test_random_binary_noise_never_raises() -> None:
    parser = LogParser()
    for _ in range(2000):
        result = parser.parse(os.urandom(64).replace(b"\n", b" "), "app")
        assert isinstance(result, str | LogRecord)


def test_too_long_line() -> None:
    parser = LogParser(max_line_bytes=1024)
    assert parser.parse(b'{"msg":"' + b"x" * 2000 + b'"}', "app") == TOO_LONG
