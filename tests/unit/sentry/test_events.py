"""Events from log records and gateway 5xx: exceptions, tags, breadcrumbs, de-duplication, correlation."""

from __future__ import annotations

import time
from pathlib import Path

import orjson
import pytest

from sidecar.core.settings_model import SecretStr
from sidecar.correlation.index import CorrelationIndex
from sidecar.logs.parse import LogParser
from sidecar.sentry.envelope import parse
from sidecar.sentry.events import Deduper, event_from_log_record, fingerprint, normalise_value
from sidecar.sentry.forwarder import SentryForwarder
from sidecar.sentry.scrub import FILTERED
from sidecar.sentry.settings import SentrySettings
from sidecar.sentry.stacktrace import parse_stack

pytestmark = pytest.mark.timeout(30)

STACK = "TypeError: x is not a function\n    at foo (/app/src/a.js:10:5)\n    at /app/node_modules/x/y.js:1:2"


def record(**extra: object) -> object:
    line = {
        "level": "error",
        "msg": "request failed password=hunter2",
        "time": 1700000000123,
        "req_id": "req-1",
        "trace_id": "4bf92f3577b34da6a3ce929d0e0e4736",
        "route": "/users/{id}",
        "method": "GET",
        "status": 500,
        "err": {"type": "TypeError", "message": "x is not a function", "stack": STACK},
        **extra,
    }
    parsed = LogParser().parse(orjson.dumps(line), "app")
    assert not isinstance(parsed, str)
    return parsed


def forwarder(**settings: object) -> SentryForwarder:
    settings.setdefault("spool", {"dir": None})
    config = SentrySettings(app_dsn=SecretStr("http://publickey123@127.0.0.1:9/42"), **settings)
    return SentryForwarder(config, CorrelationIndex())


def queued_events(fwd: SentryForwarder) -> list[dict[str, object]]:
    """What the capture API handed to the spool writer (not started in unit tests)."""
    out = []
    for pending in fwd.spool._pending:
        envelope = parse(pending.data)
        assert envelope.headers["dsn"] == "http://publickey123@127.0.0.1:9/42"
        out.append(envelope.items[0].json())
    return out


def test_event_from_a_real_parsed_log_record() -> None:
    built = event_from_log_record(record(), environment="prod", release="app@1.2.3")
    assert built is not None
    event = built.event
    assert event["level"] == "error" and event["platform"] == "node"
    assert event["timestamp"] == pytest.approx(1700000000.123)
    assert event["tags"] == {
        "request_id": "req-1",
        "trace_id": "4bf92f3577b34da6a3ce929d0e0e4736",
        "route": "/users/{id}",
        "http.method": "GET",
        "http.status_code": "500",
        "source": "sidecar.logs",
    }
    assert event["contexts"]["trace"]["trace_id"] == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert len(event["contexts"]["trace"]["span_id"]) == 16
    [exc] = event["exception"]["values"]
    assert (exc["type"], exc["value"]) == ("TypeError", "x is not a function")
    assert [f["in_app"] for f in exc["stacktrace"]["frames"]] == [False, True]
    assert (event["environment"], event["release"]) == ("prod", "app@1.2.3")
    assert built.title == "TypeError: x is not a function"


def test_below_error_is_not_an_event_and_error_without_stack_is() -> None:
    info = LogParser().parse(b'{"level":"info","msg":"fine"}', "app")
    assert event_from_log_record(info, environment=None, release=None) is None
    plain = event_from_log_record(
        {"level": "fatal", "message": "disk full", "error": {"type": "OSError", "value": "ENOSPC"}},
        environment=None,
        release=None,
    )
    assert plain is not None
    assert plain.event["level"] == "fatal"
    assert plain.event["exception"]["values"][0] == {
        "type": "OSError",
        "value": "ENOSPC",
        "mechanism": {"type": "sidecar.logs", "handled": False},
    }
    message_only = event_from_log_record({"level": 50, "msg": "boom"}, environment=None, release=None)
    assert message_only is not None and "exception" not in message_only.event
    assert message_only.event["message"] == {"formatted": "boom"}


def test_fingerprint_normalises_variable_parts() -> None:
    assert normalise_value("retry after 0xdeadbeef00 in 'eu-1'") == "retry after <hex> in <str>"
    assert normalise_value("took 17ms on shard2") == "took <n>ms on shard2"
    assert normalise_value("user 17 not found in 'eu-1' (id 9ec79c33ec9942ab8353589fcb2e04dc)") == (
        "user <n> not found in <str> (id <id>)"
    )
    _, one = parse_stack(STACK.replace("x is not", "user 17 is not"))
    _, two = parse_stack(STACK.replace("x is not", "user 42 is not"))
    _, elsewhere = parse_stack(STACK.replace("foo (/app/src/a.js", "bar (/app/src/b.js"))
    assert fingerprint(one, None, None) == fingerprint(two, None, None)
    assert fingerprint(one, None, None) != fingerprint(elsewhere, None, None)


def test_deduper_windows() -> None:
    now = [0.0]
    dedupe = Deduper(window=60, clock=lambda: now[0])
    assert dedupe.check("k", "e1") == (True, "e1", 0)
    assert dedupe.check("k", "e2") == (False, "e1", 0)
    assert dedupe.check("k", "e3") == (False, "e1", 0)
    now[0] = 61
    assert dedupe.check("k", "e4") == (True, "e4", 2), "the next event carries the suppressed count"
    small = Deduper(window=60, max_keys=2, clock=lambda: now[0])
    for key in "abc":
        small.check(key, key)
    assert small.check("a", "a2")[0], "the oldest fingerprint was forgotten"


def test_capture_dedupes_scrubs_and_records_correlation() -> None:
    fwd = forwarder(environment="staging")
    index = fwd.correlation
    assert index is not None
    index.add("req-1", "log", {"level": "info", "message": "loading user 17"}, at=1700000000.0)
    index.add("req-1", "access", {"method": "GET", "route": "/users/{id}", "status": 200}, at=1700000000.05)
    first = fwd.capture_log_record(record())
    second = fwd.capture_log_record(record())
    assert first is not None and first == second
    assert fwd.stats.outcomes["deduplicated"] == 1
    [event] = queued_events(fwd)
    assert event["event_id"] == first
    assert event["message"] == {"formatted": f"request failed password={FILTERED}"}
    assert event["environment"] == "staging"
    crumbs = event["breadcrumbs"]["values"]  # type: ignore[index]
    assert [c["category"] for c in crumbs] == ["log", "access"]
    assert crumbs[0]["message"] == "loading user 17"
    assert crumbs[1]["data"] == {"method": "GET", "url": "/users/{id}", "status_code": 200}
    timeline = index.get("req-1")
    assert timeline is not None
    sentry = [e["record"] for e in timeline["timeline"] if e["kind"] == "sentry"]
    assert sentry == [
        {"event_id": first, "title": "TypeError: x is not a function", "deduplicated": False},
        {"event_id": first, "title": "TypeError: x is not a function", "deduplicated": True},
    ]


def test_gateway_5xx_only_when_enabled_and_grouped_by_route() -> None:
    off = forwarder()
    assert off.capture_gateway_5xx(method="GET", route="/x", status=502) is None
    fwd = forwarder(forward_gateway_5xx=True)
    assert fwd.capture_gateway_5xx(method="GET", route="/x", status=404) is None
    one = fwd.capture_gateway_5xx(
        method="POST",
        route="/orders/{id}",
        status=502,
        request_id="r9",
        error="connect refused",
        duration_seconds=0.2,
    )
    again = fwd.capture_gateway_5xx(method="POST", route="/orders/{id}", status=502, request_id="r10")
    other = fwd.capture_gateway_5xx(method="POST", route="/orders/{id}", status=504, request_id="r11")
    assert one == again and one != other
    events = queued_events(fwd)
    assert [e["tags"]["http.status_code"] for e in events] == ["502", "504"]  # type: ignore[index]
    assert events[0]["message"] == {"formatted": "POST /orders/{id} answered 502 (connect refused)"}
    assert events[0]["fingerprint"] == ["sidecar-gateway-5xx", "POST", "/orders/{id}", "502"]


def test_disabled_forwarder_is_inert() -> None:
    fwd = SentryForwarder(SentrySettings(), CorrelationIndex())
    assert not fwd.enabled
    assert fwd.capture_log_record(record()) is None
    assert fwd.capture_gateway_5xx(method="GET", route="/", status=500) is None
    no_logs = forwarder(forward_log_errors=False)
    assert no_logs.capture_log_record(record()) is None


def test_capture_never_raises() -> None:
    class Broken:
        @property
        def level(self) -> str:
            raise RuntimeError("boom")

    assert forwarder().capture_log_record(Broken()) is None


def test_queue_bound_drops_oldest_and_counts(tmp_path: Path) -> None:
    fwd = forwarder(spool={"dir": None, "queue_events": 10}, dedupe_window=0)
    for n in range(15):
        fwd.capture_log_record({"level": "error", "message": f"distinct {n} {time.time()}", "logger": str(n)})
    assert len(fwd.spool._pending) == 10
    assert fwd.stats.drops["queue_full"] == 5 and fwd.stats.outcomes["dropped"] == 5
