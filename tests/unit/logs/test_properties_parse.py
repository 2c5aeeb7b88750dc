"""Property tests for the log line parser: app logs are outside input, and ``LogParser.parse`` promises
to never raise; it returns a normalised record or a rejection reason from a closed set.

The explicit examples are bugs these properties found (since fixed in ``sidecar/logs/parse.py``):
``str.isdigit()`` accepting "²" and 5000-digit strings before ``int()``, one recursion per Kubernetes
CRI prefix, and "nan"/"inf" accepted as a time.
"""

from __future__ import annotations

import math
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from sidecar.logs.parse import LEVELS, MAX_ID_CHARS, REJECT_REASONS, LogParser, LogRecord

pytestmark = pytest.mark.timeout(180)
FAST = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
PARSER = LogParser()

# Values an app may put in any field: JSON scalars with the awkward corners (Unicode digits, huge ints).
scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)  # orjson's range
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=24)
    | st.sampled_from(["²", "٣", "1" * 5000, "-1", " 42 ", "nan", "inf", "12ms", "0x1F", "ERROR"])
)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
)
KNOWN_KEYS = [
    "level", "lvl", "severity", "levelname", "msg", "message", "time", "timestamp", "ts", "@timestamp",
    "request_id", "requestId", "req_id", "reqId", "x-request-id", "trace_id", "traceId", "traceparent",
    "err", "error", "exc_info", "stack", "method", "url", "path", "status", "statusCode", "duration",
    "responseTime", "bytes", "res", "req", "httpRequest", "log", "stream",
]  # fmt: skip
records = st.dictionaries(st.sampled_from(KNOWN_KEYS) | st.text(max_size=10), json_values, max_size=8)


def check(result: LogRecord | str) -> None:
    """What every answer of ``parse`` must look like."""
    if isinstance(result, str):
        assert result in REJECT_REASONS, result
        return
    assert result.level in LEVELS, result.level
    assert isinstance(result.message, str)
    assert result.request_id is None or 0 < len(result.request_id) <= MAX_ID_CHARS
    assert result.trace_id is None or len(result.trace_id) <= 64
    if result.access is not None:
        assert 100 <= result.access.status <= 599
        assert result.access.bytes is None or result.access.bytes >= 0
        seconds = result.access.duration_seconds
        assert seconds is None or (math.isfinite(seconds) and seconds >= 0)


@FAST
@given(st.binary(max_size=300))
def test_arbitrary_bytes_never_raise(line: bytes) -> None:
    check(PARSER.parse(line, "test"))


@FAST
@given(st.text(max_size=200))
def test_arbitrary_text_never_raises(text: str) -> None:
    check(PARSER.parse(text.encode("utf-8", "surrogatepass"), "test"))


@FAST
@given(records)
@example({"level": "²", "msg": "x"})
@example({"level": "1" * 5000, "msg": "x"})
@example({"method": "GET", "url": "/", "status": "²"})
@example({"method": "GET", "url": "/", "status": 200, "bytes": "²"})
def test_any_json_object_never_raises(record: dict[str, Any]) -> None:
    check(PARSER.parse(orjson.dumps(record, option=orjson.OPT_NON_STR_KEYS), "test"))


@FAST
@given(st.dictionaries(st.sampled_from(KNOWN_KEYS[:8]), st.text(max_size=12), min_size=2, max_size=5))
@example({"level": "²", "msg": "hi"})
def test_any_logfmt_line_never_raises(pairs: dict[str, str]) -> None:
    line = " ".join(f"{k}={orjson.dumps(v).decode()}" for k, v in pairs.items() if k.isidentifier())
    check(PARSER.parse(line.encode(), "test"))


@settings(max_examples=20, deadline=None)
@given(st.integers(1, 4000))
@example(3000)
def test_nested_cri_prefixes_never_raise(depth: int) -> None:
    line = b"2024-01-01T00:00:00.000000000Z stdout F " * depth + b"hello"
    check(PARSER.parse(line, "test"))


@FAST
@given(scalars)
@example("nan")
@example("inf")
def test_record_times_are_finite_or_absent(value: Any) -> None:
    result = PARSER.parse(orjson.dumps({"msg": "x", "time": value}), "test")
    assert isinstance(result, LogRecord)
    moment = result.time
    assert moment is None or math.isfinite(moment), (value, moment)
