"""The real sidecar process as a Sentry relay: real SDK clients, a Sentry outage, ``kill -9``, own errors.

The fake Sentry (``tests/sentry_upstream.py``) parses real envelopes on a free loopback port; it can be
stopped (connection refused) and started again on the same port.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.e2e.sidecar_process import SidecarProcess, metric_value
from tests.sentry_upstream import FakeSentry

pytestmark = [pytest.mark.e2e]

KEY = "0123456789abcdef0123456789abcdef"
PROJECT = "42"
FILTERED = "[Filtered]"


def config(upstream: FakeSentry, spool: Path, **extra: str) -> str:
    lines = [
        "default_checks: false",
        "sentry:",
        f"  app_dsn: {upstream.dsn(KEY, PROJECT)}",
        f"  spool: {{dir: {spool}}}",
        "  backoff_initial: 0.05",
        "  backoff_max: 0.5",
        *(f"  {k}: {v}" for k, v in extra.items()),
    ]
    return "\n".join(lines) + "\n"


SDK_CLIENT = textwrap.dedent(
    """
    import sys
    import sentry_sdk
    from sentry_sdk.scrubber import EventScrubber

    # The SDK's own scrubbing is switched off and PII on, so whatever reaches Sentry scrubbed was
    # scrubbed by the sidecar.
    sentry_sdk.init(
        dsn=sys.argv[1],
        send_default_pii=True,
        event_scrubber=EventScrubber(denylist=[], pii_denylist=[]),
        traces_sample_rate=1.0,
        default_integrations=False,
        include_source_context=False,  # the literals below are test data, not code under test
        release="shop@1.0.0",
    )

    def add_request(event, hint):
        event["request"] = {
            "method": "POST",
            "url": "http://shop.local/login?next=/cart&token=url-token-123",
            "headers": {
                "Authorization": "Bearer sdk-secret-bearer-token",
                "Cookie": "session=abc123; theme=dark",
                "X-Api-Key": "key-123456",
                "User-Agent": "pytest",
            },
            "data": {"username": "ann", "password": "hunter2", "card": "4111 1111 1111 1111"},
        }
        return event

    with sentry_sdk.new_scope() as scope:
        scope.add_event_processor(add_request)
        scope.set_tag("request_id", "req-sdk-1")
        scope.set_extra("db_password", "pg-secret")
        scope.set_extra("author", "ann")
        sentry_sdk.add_breadcrumb(category="auth", message="login", data={"access_token": "crumb-token"})
        with sentry_sdk.start_transaction(name="POST /login", op="http.server") as tx:
            with tx.start_child(op="db", description="select") as span:
                span.set_data("password", "span-secret")
            try:
                raise ValueError("bad credentials for Bearer exc-bearer-token")
            except ValueError:
                print(sentry_sdk.capture_exception())
    sentry_sdk.flush(10)
    """
)


@pytest.mark.timeout(90)
def test_real_python_sdk_through_the_relay_arrives_scrubbed(tmp_path: Path) -> None:
    with FakeSentry() as upstream, SidecarProcess(config(upstream, tmp_path / "spool")) as sidecar:
        script = tmp_path / "client.py"
        script.write_text(SDK_CLIENT)
        dsn = f"http://{KEY}@127.0.0.1:{sidecar.admin_port}/{PROJECT}"
        done = subprocess.run(
            [sys.executable, str(script), dsn], capture_output=True, text=True, timeout=60, check=False
        )
        assert done.returncode == 0, done.stderr
        event_id = done.stdout.strip().splitlines()[-1]
        upstream.wait_for(
            lambda: {"error", "transaction"} <= {c for r in upstream.accepted() for c in r.categories}
        )
        [event] = [e for e in upstream.events() if e["event_id"] == event_id]
        request = event["request"]
        assert request["headers"]["Authorization"] == FILTERED
        assert request["headers"]["Cookie"] == FILTERED
        assert request["headers"]["X-Api-Key"] == FILTERED
        assert request["headers"]["User-Agent"] == "pytest"
        assert request["data"] == {"username": "ann", "password": FILTERED, "card": FILTERED}
        assert request["url"] == f"http://shop.local/login?next=/cart&token={FILTERED}"
        assert event["extra"]["db_password"] == FILTERED and event["extra"]["author"] == "ann"
        assert event["exception"]["values"][-1]["value"] == f"bad credentials for Bearer {FILTERED}"
        crumbs = event["breadcrumbs"]["values"]
        assert any(c.get("data", {}).get("access_token") == FILTERED for c in crumbs)
        [transaction] = [e for r in upstream.accepted() for e in r.json_items("transaction")]
        assert transaction["spans"][0]["data"]["password"] == FILTERED
        everything = json.dumps(
            [[h, p.decode("utf-8", "replace")] for r in upstream.accepted() for h, p in r.items]
        )
        for secret in (
            "sdk-secret-bearer-token",
            "hunter2",
            "pg-secret",
            "span-secret",
            "url-token-123",
            "abc123",
        ):
            assert secret not in everything, secret
        assert all(r.headers["dsn"] == upstream.dsn(KEY, PROJECT) for r in upstream.accepted())
        assert f"sentry_key={KEY}" in upstream.accepted()[0].auth


def envelope(event_id: str) -> bytes:
    header = json.dumps({"event_id": event_id, "dsn": f"http://{KEY}@127.0.0.1/{PROJECT}"})
    payload = json.dumps({"event_id": event_id, "level": "error", "message": f"error {event_id}"})
    return f'{header}\n{{"type":"event","length":{len(payload)}}}\n{payload}\n'.encode()


def post(url: str, body: bytes) -> int:
    req = urllib.request.Request(
        url, data=body, method="POST", headers={"Content-Type": "application/x-sentry-envelope"}
    )
    with urllib.request.urlopen(req, timeout=20) as response:
        return int(response.status)


@pytest.mark.timeout(180)
def test_a_thousand_errors_survive_an_outage_and_kill_9_and_arrive_exactly_once(tmp_path: Path) -> None:
    upstream = FakeSentry()  # not started: Sentry is down, connections are refused
    spool = tmp_path / "spool"
    ids = [f"{n:032x}" for n in range(1, 1001)]
    first = SidecarProcess(config(upstream, spool)).start()
    try:
        url = f"{first.admin}/api/{PROJECT}/envelope/"
        with ThreadPoolExecutor(16) as pool:
            statuses = list(pool.map(lambda i: post(url, envelope(i)), ids))
        assert statuses == [200] * 1000, "every event is acknowledged while Sentry is down"
        text = first.get("/metrics")[1].decode()
        assert metric_value(text, "sidecar_sentry_spool_events") == 1000
        assert (metric_value(text, "sidecar_sentry_send_failures_total", reason="connect") or 0) >= 1
        assert first.proc is not None
        first.proc.kill()  # SIGKILL: no shutdown, no flush
        first.proc.wait(10)
    finally:
        first.stop()
    assert len(list(spool.glob("*.env"))) == 1000, "acknowledged means on disk"

    with upstream, SidecarProcess(config(upstream, spool)) as second:
        upstream.wait_for(lambda: len(upstream.accepted_ids()) >= 1000, timeout=90)
        time.sleep(1.0)  # anything sent twice would arrive now
        delivered = upstream.accepted_ids()
        assert len(set(delivered)) == 1000 and sorted(delivered) == ids
        assert len(delivered) == 1000, "each event delivered exactly once"
        text = second.get("/metrics")[1].decode()
        assert metric_value(text, "sidecar_sentry_events_total", outcome="sent") == 1000
        assert metric_value(text, "sidecar_sentry_spool_events") == 0
        assert metric_value(text, "sidecar_sentry_events_total", outcome="dropped") == 0
    assert not list(spool.glob("*.env"))


@pytest.mark.timeout(60)
def test_own_errors_go_to_sentry_dsn_through_sentry_sdk(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("x")
    with FakeSentry() as upstream:
        own = upstream.dsn("ownkey0123456789", "7")
        env = {"SENTRY_DSN": own, "SENTRY_ENVIRONMENT": "e2e", "SENTRY_RELEASE": "sidecar-test@1"}
        # an unusable spool directory is logged as an error: the sidecar's own error, sent via sentry-sdk
        with SidecarProcess(config(upstream, blocker / "spool"), env=env) as sidecar:
            upstream.wait_for(lambda: any(r.project == "7" for r in upstream.accepted()), timeout=30)
            own_events = [e for r in upstream.accepted() if r.project == "7" for e in r.json_items("event")]
            assert own_events, sidecar.logs()
            event = own_events[0]
            assert "spool directory unusable" in json.dumps(event)
            assert (event["environment"], event["release"]) == ("e2e", "sidecar-test@1")
            assert "aiohttp" in event["sdk"]["integrations"]
            assert KEY not in json.dumps(event), "the app DSN's key never appears"
            assert "ownkey0123456789" in upstream.accepted()[0].auth


@pytest.mark.timeout(60)
def test_error_log_lines_become_events_with_breadcrumbs_and_correlation(tmp_path: Path) -> None:
    stack = "TypeError: x is not a function\n    at pay (/app/src/pay.js:10:5)\n    at /app/node_modules/x/y.js:1:2"
    lines = [
        {"level": "info", "msg": "cart loaded for ann", "req_id": "req-log-1", "time": 1700000000000},
        {
            "level": "error",
            "msg": "payment failed token=tok_123456",
            "req_id": "req-log-1",
            "time": 1700000000500,
            "err": {"type": "TypeError", "message": "x is not a function", "stack": stack},
        },
        {
            "level": "error",
            "msg": "payment failed token=tok_999999",
            "req_id": "req-log-2",
            "time": 1700000000900,
            "err": {"type": "TypeError", "message": "x is not a function", "stack": stack},
        },
    ]
    body = "\n".join(json.dumps(line) for line in lines).encode() + b"\n"
    with FakeSentry() as upstream, SidecarProcess(config(upstream, tmp_path / "spool")) as sidecar:
        req = urllib.request.Request(f"{sidecar.admin}/ingest/logs", data=body, method="POST")
        with urllib.request.urlopen(req, timeout=10) as response:
            assert response.status in (200, 202)
        upstream.wait_for(lambda: len(upstream.events()) == 1)
        time.sleep(0.5)
        [event] = upstream.events()
        assert len(upstream.events()) == 1, "the second, identical error was de-duplicated"
        assert event["tags"]["request_id"] == "req-log-1"
        assert event["message"]["formatted"] == f"payment failed token={FILTERED}"
        assert event["exception"]["values"][0]["stacktrace"]["frames"][-1]["function"] == "pay"
        assert [c["message"] for c in event["breadcrumbs"]["values"]] == ["cart loaded for ann"]
        for request_id in ("req-log-1", "req-log-2"):
            with urllib.request.urlopen(
                f"{sidecar.admin}/debug/requests/{request_id}", timeout=10
            ) as response:
                timeline = json.loads(response.read())
            sentry = [e["record"] for e in timeline["timeline"] if e["kind"] == "sentry"]
            assert [s["event_id"] for s in sentry] == [event["event_id"]]
        text = sidecar.get("/metrics")[1].decode()
        assert metric_value(text, "sidecar_sentry_events_total", outcome="deduplicated") == 1
