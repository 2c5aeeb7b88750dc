"""The relay and the forwarder against a local server speaking Sentry's envelope ingestion protocol.

The core app comes from ``create_app`` (so the forwarder's cleanup context runs for real) and the admin
app from ``create_admin_app`` plus the relay routes, as ``Server`` wires them. Envelopes are written by
sentry-sdk's own serializer.
"""

from __future__ import annotations

import asyncio
import gzip
import io
import subprocess
import time
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import generate_latest
from sentry_sdk.envelope import Envelope as SdkEnvelope
from sentry_sdk.envelope import Item as SdkItem
from sentry_sdk.envelope import PayloadRef

from sidecar.app_keys import HEALTH, REGISTRY, SENTRY, STORE
from sidecar.config import Settings
from sidecar.logs.parse import LogParser
from sidecar.sentry.forwarder import SentryForwarder
from sidecar.sentry.relay import add_relay_routes
from sidecar.sentry.scrub import FILTERED
from sidecar.server import create_app
from sidecar.serving.admin_api import create_admin_app
from tests.sentry_upstream import FakeSentry
from tests.servers import require_binary

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

KEY = "publickey123"
PROJECT = "42"
AUTH = {"X-Sentry-Auth": f"Sentry sentry_version=7, sentry_key={KEY}, sentry_client=test/1.0"}


@pytest.fixture
def upstream() -> Iterator[FakeSentry]:
    with FakeSentry() as fake:
        yield fake


Relay = Callable[..., Awaitable[tuple[web.Application, TestClient[Any, Any]]]]


@pytest.fixture
async def relay(upstream: FakeSentry, tmp_path: Path) -> AsyncIterator[Relay]:
    """Start core + admin apps with the given settings overrides; everything is torn down afterwards."""
    started: list[Any] = []

    async def start(**sentry: Any) -> tuple[web.Application, TestClient[Any, Any]]:
        token = sentry.pop("admin_token", None)
        config = {
            "app_dsn": upstream.dsn(KEY, PROJECT),
            "spool": {"dir": str(tmp_path / "spool")},
            "backoff_initial": 0.05,
            "backoff_max": 0.3,
            "send_timeout": 3,
            **sentry,
        }
        settings = Settings(default_checks=False, admin_token=token, sentry=config)
        core = create_app(settings)
        server = TestServer(core)
        await server.start_server()
        started.append(server)
        admin = create_admin_app(settings, core[STORE], core[HEALTH])
        add_relay_routes(admin, core)
        client: TestClient[Any, Any] = TestClient(TestServer(admin))
        await client.start_server()
        started.append(client)
        return core, client

    yield start
    for item in reversed(started):
        await item.close()


def envelope_body(
    *items: SdkItem, event_id: str = "9ec79c33ec9942ab8353589fcb2e04dc", **headers: Any
) -> bytes:
    env = SdkEnvelope(headers={"event_id": event_id, "sent_at": "2020-01-01T00:00:00Z", **headers})
    for item in items:
        env.add_item(item)
    out = io.BytesIO()
    env.serialize_into(out)
    return out.getvalue()


def event_item(event_id: str = "9ec79c33ec9942ab8353589fcb2e04dc", **fields: Any) -> SdkItem:
    return SdkItem(payload=PayloadRef(json={"event_id": event_id, "level": "error", **fields}), type="event")


def sensitive_event() -> SdkItem:
    return event_item(
        message="login failed for Bearer abcdef123456",
        request={
            "url": "http://app/login?next=/&token=s3cr3t-token",
            "headers": {"Authorization": "Bearer abcdef123456", "Cookie": "sid=xyz", "User-Agent": "curl"},
            "cookies": "sid=xyz",
        },
        extra={"password": "hunter2", "author": "ann", "card": "4111 1111 1111 1111"},
        tags={"request_id": "req-77"},
    )


async def wait_until(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        await asyncio.sleep(0.02)
    raise AssertionError("condition not met in time")


async def test_relay_scrubs_spools_and_forwards_with_the_upstream_dsn(
    relay: Relay, upstream: FakeSentry
) -> None:
    core, client = await relay()
    body = envelope_body(sensitive_event(), dsn=f"http://{KEY}@127.0.0.1:9798/{PROJECT}")
    response = await client.post(
        f"/api/{PROJECT}/envelope/", data=gzip.compress(body), headers={**AUTH, "Content-Encoding": "gzip"}
    )
    assert response.status == 200, await response.text()
    assert await response.json() == {"id": "9ec79c33ec9942ab8353589fcb2e04dc"}
    await asyncio.to_thread(upstream.wait_for, lambda: len(upstream.accepted()) == 1)
    [got] = upstream.accepted()
    assert got.headers["dsn"] == upstream.dsn(KEY, PROJECT)
    assert "sent_at" not in got.headers
    assert f"sentry_key={KEY}" in got.auth
    [event] = got.json_items("event")
    assert event["message"] == f"login failed for Bearer {FILTERED}"
    assert event["request"]["headers"] == {
        "Authorization": FILTERED,
        "Cookie": FILTERED,
        "User-Agent": "curl",
    }
    assert event["request"]["cookies"] == FILTERED
    assert event["request"]["url"] == f"http://app/login?next=/&token={FILTERED}"
    assert event["extra"] == {"password": FILTERED, "author": "ann", "card": FILTERED}
    stats = core[SENTRY].stats
    await wait_until(lambda: stats.outcomes["sent"] == 1)
    assert stats.outcomes["spooled"] == 1 and stats.relay["200"] == 1
    timeline = core[SENTRY].correlation.get("req-77")  # type: ignore[union-attr]
    assert (
        timeline is not None
        and timeline["timeline"][0]["record"]["event_id"] == "9ec79c33ec9942ab8353589fcb2e04dc"
    )
    assert not list((core[SENTRY].spool.directory or Path("/nonexistent")).glob("*.env")), "removed after 2xx"


async def test_key_from_query_or_envelope_header_and_deflate(relay: Relay, upstream: FakeSentry) -> None:
    _, client = await relay()
    body = envelope_body(event_item("a" * 32), event_id="a" * 32)
    response = await client.post(
        f"/api/{PROJECT}/envelope/?sentry_key={KEY}&sentry_version=7",
        data=zlib.compress(body),
        headers={"Content-Encoding": "deflate"},
    )
    assert response.status == 200, await response.text()
    body = envelope_body(event_item("b" * 32), event_id="b" * 32, dsn=f"http://{KEY}@localhost/{PROJECT}")
    response = await client.post(f"/api/{PROJECT}/envelope/", data=body)
    assert response.status == 200, await response.text()
    await asyncio.to_thread(
        upstream.wait_for, lambda: sorted(upstream.accepted_ids()) == ["a" * 32, "b" * 32]
    )


@pytest.mark.parametrize(
    ("path", "headers", "body", "status", "fragment"),
    [
        ("/api/42/envelope/", {}, envelope_body(event_item()), 401, "missing sentry_key"),
        (
            "/api/42/envelope/",
            {"X-Sentry-Auth": "Sentry sentry_key=wrong, sentry_version=7"},
            envelope_body(event_item()),
            403,
            "unknown sentry_key",
        ),
        (
            "/api/42/envelope/",
            {},
            envelope_body(event_item(), dsn="http://wrong@h/42"),
            403,
            "unknown sentry_key",
        ),
        ("/api/7/envelope/", AUTH, envelope_body(event_item()), 403, "not the app's"),
        ("/api/42/envelope/", AUTH, b"{not json\n", 400, "envelope header is not valid JSON"),
        ("/api/42/envelope/", AUTH, b'{}\n{"type":"event","length":4}\n{"a":1}\n', 400, "length mismatch"),
        ("/api/42/envelope/", AUTH, b'{}\n{"type":"event","length":99}\n{"a":1}\n', 400, "truncated item"),
        (
            "/api/42/envelope/",
            AUTH,
            b'{}\n{"type":"event"}\nnot json\n',
            400,
            "event item payload is not valid JSON",
        ),
        ("/api/42/envelope/", {**AUTH, "Content-Encoding": "compress"}, b"\x1f\x9d...", 415, "not supported"),
        ("/api/42/store/", AUTH, b"[1, 2]", 400, "must be a JSON object"),
    ],
)
async def test_bad_requests_are_refused_clearly(
    relay: Relay,
    upstream: FakeSentry,
    path: str,
    headers: dict[str, str],
    body: bytes,
    status: int,
    fragment: str,
) -> None:
    core, client = await relay()
    response = await client.post(path, data=body, headers=headers)
    assert response.status == status
    assert fragment in (await response.json())["detail"]
    assert core[SENTRY].stats.relay[str(status)] == 1
    assert core[SENTRY].stats.outcomes["spooled"] == 0


async def test_size_limits_on_the_wire_and_after_inflating(relay: Relay) -> None:
    _, client = await relay(relay={"max_body_bytes": 4096, "max_decompressed_bytes": 65536})
    big = envelope_body(event_item(message="x" * 10_000))
    response = await client.post(f"/api/{PROJECT}/envelope/", data=big, headers=AUTH)
    assert response.status == 413 and "max_body_bytes" in (await response.json())["detail"]

    async def chunked() -> AsyncIterator[bytes]:
        for _ in range(10):
            yield b"x" * 1000

    response = await client.post(f"/api/{PROJECT}/envelope/", data=chunked(), headers=AUTH)
    assert response.status == 413, "no Content-Length: counted while reading"
    bomb = gzip.compress(envelope_body(event_item(message="y" * 1_000_000)))
    assert len(bomb) < 4096
    response = await client.post(
        f"/api/{PROJECT}/envelope/", data=bomb, headers={**AUTH, "Content-Encoding": "gzip"}
    )
    assert response.status == 413 and "max_decompressed_bytes" in (await response.json())["detail"]


async def test_admin_token_does_not_apply_to_exactly_the_relay_routes(
    relay: Relay, upstream: FakeSentry
) -> None:
    _, client = await relay(admin_token="a-long-admin-token-0123456789")
    assert (await client.post("/drain")).status == 401
    assert (await client.get(f"/api/{PROJECT}/envelope/")).status == 401
    assert (await client.post(f"/api/{PROJECT}/other/")).status == 401
    response = await client.post(f"/api/{PROJECT}/envelope/", data=envelope_body(event_item()), headers=AUTH)
    assert response.status == 200
    bearer = {"Authorization": "Bearer a-long-admin-token-0123456789"}
    assert (await client.post("/undrain", headers=bearer)).status == 200


async def test_opaque_items_dropped_by_default_and_forwarded_when_configured(
    relay: Relay, upstream: FakeSentry
) -> None:
    attachment = SdkItem(payload=PayloadRef(bytes=b"binary \x00 data"), type="attachment", filename="a.bin")
    core, client = await relay()
    response = await client.post(
        f"/api/{PROJECT}/envelope/",
        data=envelope_body(event_item("c" * 32), attachment, event_id="c" * 32),
        headers=AUTH,
    )
    assert response.status == 200
    await asyncio.to_thread(upstream.wait_for, lambda: len(upstream.accepted()) == 1)
    assert [h["type"] for h, _ in upstream.accepted()[0].items] == ["event"]
    assert core[SENTRY].stats.drops["opaque_item"] == 1
    assert core[SENTRY].stats.outcomes["dropped"] == 0, "an item, not an event"


async def test_opaque_items_forwarded_when_configured(relay: Relay, upstream: FakeSentry) -> None:
    attachment = SdkItem(payload=PayloadRef(bytes=b"binary \x00 data\n"), type="attachment", filename="a.bin")
    _, client = await relay(relay={"opaque_items": "forward"})
    response = await client.post(
        f"/api/{PROJECT}/envelope/",
        data=envelope_body(event_item("d" * 32), attachment, event_id="d" * 32),
        headers=AUTH,
    )
    assert response.status == 200
    await asyncio.to_thread(upstream.wait_for, lambda: len(upstream.accepted()) == 1)
    items = upstream.accepted()[0].items
    assert [(h["type"], p) for h, p in items][1] == ("attachment", b"binary \x00 data\n")


async def test_legacy_store_endpoint(relay: Relay, upstream: FakeSentry) -> None:
    _, client = await relay()
    event = {"event_id": "e" * 32, "message": "old sdk", "extra": {"api_key": "k"}}
    response = await client.post(f"/api/{PROJECT}/store/", data=orjson.dumps(event), headers=AUTH)
    assert response.status == 200 and (await response.json()) == {"id": "e" * 32}
    await asyncio.to_thread(upstream.wait_for, lambda: upstream.accepted_ids() == ["e" * 32])
    assert upstream.events()[0]["extra"] == {"api_key": FILTERED}


async def test_outage_then_recovery_delivers_each_event_once(relay: Relay, upstream: FakeSentry) -> None:
    upstream.stop()
    core, client = await relay()
    ids = [f"{n:032x}" for n in range(1, 21)]
    for event_id in ids:
        response = await client.post(
            f"/api/{PROJECT}/envelope/",
            data=envelope_body(event_item(event_id), event_id=event_id),
            headers=AUTH,
        )
        assert response.status == 200, "accepted while Sentry is down: spooled"
    stats = core[SENTRY].stats
    await wait_until(lambda: stats.send_failures["connect"] >= 2)
    assert stats.outcomes["spooled"] == 20 and stats.outcomes["sent"] == 0
    upstream.start()
    await asyncio.to_thread(upstream.wait_for, lambda: len(upstream.accepted_ids()) == 20)
    await wait_until(lambda: stats.outcomes["sent"] == 20)
    assert sorted(upstream.accepted_ids()) == ids
    assert core[SENTRY].spool.size() == (0, 0)


async def test_server_errors_back_off_then_deliver(relay: Relay, upstream: FakeSentry) -> None:
    upstream.fail_status = 500
    core, client = await relay()
    await client.post(f"/api/{PROJECT}/envelope/", data=envelope_body(event_item()), headers=AUTH)
    stats = core[SENTRY].stats
    await wait_until(lambda: stats.send_failures["http_5xx"] >= 3)
    upstream.fail_status = None
    await asyncio.to_thread(upstream.wait_for, lambda: len(upstream.accepted()) == 1)
    await asyncio.sleep(0.3)
    assert upstream.accepted_ids() == ["9ec79c33ec9942ab8353589fcb2e04dc"]


async def test_permanent_rejection_is_counted_and_not_retried(relay: Relay, upstream: FakeSentry) -> None:
    upstream.fail_status = 400
    core, client = await relay()
    await client.post(f"/api/{PROJECT}/envelope/", data=envelope_body(event_item()), headers=AUTH)
    stats = core[SENTRY].stats
    await wait_until(lambda: stats.outcomes["rejected"] == 1)
    await asyncio.sleep(0.3)
    assert len(upstream.received) == 1 and core[SENTRY].spool.size() == (0, 0)


async def test_rate_limited_errors_wait_while_transactions_flow(relay: Relay, upstream: FakeSentry) -> None:
    core, client = await relay()
    upstream.limit("error", 2)
    await client.post(
        f"/api/{PROJECT}/envelope/", data=envelope_body(event_item("1" * 32), event_id="1" * 32), headers=AUTH
    )
    stats = core[SENTRY].stats
    await wait_until(lambda: stats.outcomes["rate_limited"] == 1)
    attempts = len(upstream.received)
    transaction = SdkItem(
        payload=PayloadRef(
            json={"event_id": "2" * 32, "type": "transaction", "transaction": "GET /", "spans": []}
        ),
        type="transaction",
    )
    await client.post(
        f"/api/{PROJECT}/envelope/", data=envelope_body(transaction, event_id="2" * 32), headers=AUTH
    )
    await client.post(
        f"/api/{PROJECT}/envelope/", data=envelope_body(event_item("3" * 32), event_id="3" * 32), headers=AUTH
    )
    await asyncio.to_thread(upstream.wait_for, lambda: upstream.accepted_ids() == ["2" * 32], 5)
    assert len(upstream.received) == attempts + 1, "no error envelope was tried while error was limited"
    assert stats.outcomes["rate_limited"] == 2
    await asyncio.to_thread(upstream.wait_for, lambda: len(upstream.accepted_ids()) == 3, 10)
    assert sorted(upstream.accepted_ids()) == ["1" * 32, "2" * 32, "3" * 32]


async def test_retry_after_without_categories_limits_everything(relay: Relay, upstream: FakeSentry) -> None:
    upstream.retry_after_only = True
    upstream.limit("", 1)
    core, client = await relay()
    await client.post(f"/api/{PROJECT}/envelope/", data=envelope_body(event_item()), headers=AUTH)
    await wait_until(lambda: core[SENTRY].stats.outcomes["rate_limited"] == 1)
    assert core[SENTRY].limiter.limited("transaction")
    await asyncio.to_thread(upstream.wait_for, lambda: len(upstream.accepted()) == 1, 10)


async def test_log_records_become_events_and_metrics_show_it(relay: Relay, upstream: FakeSentry) -> None:
    core, _ = await relay(environment="production", release="shop@2.1.0")
    forwarder: SentryForwarder = core[SENTRY]
    line = {
        "level": "error",
        "msg": "checkout failed",
        "request_id": "req-1",
        "err": {
            "type": "TypeError",
            "message": "x is not a function",
            "stack": "TypeError: x is not a function\n    at pay (/app/src/pay.js:10:5)\n    at /app/node_modules/x/y.js:1:2",
        },
    }
    record = LogParser().parse(orjson.dumps(line), "app")
    for _ in range(5):
        forwarder.capture_log_record(record)
    await asyncio.to_thread(upstream.wait_for, lambda: len(upstream.accepted()) == 1)
    [event] = upstream.events()
    assert (event["environment"], event["release"], event["tags"]["request_id"]) == (
        "production",
        "shop@2.1.0",
        "req-1",
    )
    assert event["exception"]["values"][0]["stacktrace"]["frames"][-1]["function"] == "pay"
    await wait_until(lambda: forwarder.stats.outcomes["sent"] == 1)
    text = generate_latest(core[REGISTRY]).decode()
    assert 'sidecar_sentry_events_total{outcome="sent"} 1.0' in text
    assert 'sidecar_sentry_events_total{outcome="deduplicated"} 4.0' in text
    assert "sidecar_sentry_spool_events 0.0" in text
    assert "sidecar_sentry_spool_bytes 0.0" in text
    assert 'sidecar_sentry_dropped_total{reason="spool_full"} 0.0' in text


async def test_big_envelopes_are_scrubbed_off_the_event_loop(relay: Relay, upstream: FakeSentry) -> None:
    _, client = await relay()
    padding = {f"field{n}": "x" * 100 for n in range(3000)}
    body = envelope_body(event_item(extra={"password": "hunter2", **padding}))
    assert len(body) > 256 * 1024
    response = await client.post(
        f"/api/{PROJECT}/envelope/", data=gzip.compress(body), headers={**AUTH, "Content-Encoding": "gzip"}
    )
    assert response.status == 200, await response.text()
    await asyncio.to_thread(upstream.wait_for, lambda: len(upstream.accepted()) == 1)
    assert upstream.events()[0]["extra"]["password"] == FILTERED


async def test_exposition_passes_promtool(relay: Relay) -> None:
    promtool = require_binary("promtool")
    core, _ = await relay()
    text = generate_latest(core[REGISTRY]).decode()
    sentry_lines = "\n".join(line for line in text.splitlines() if "sidecar_sentry_" in line) + "\n"
    done = await asyncio.to_thread(
        subprocess.run,
        [promtool, "check", "metrics"],
        input=sentry_lines,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 0, done.stdout + done.stderr
