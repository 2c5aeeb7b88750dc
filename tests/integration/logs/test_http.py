"""``POST /ingest/logs`` and ``GET /debug/requests/{id}`` through the real aiohttp admin app.

The core app is built with ``create_app`` and the admin app with ``create_admin_app`` plus the log
routes, as ``Server`` wires them; requests go through aiohttp's real HTTP stack (pytest-aiohttp).
"""

from __future__ import annotations

import gzip
import os
import zlib
from collections.abc import AsyncIterator, Callable
from typing import Any

import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from sidecar.app_keys import CORRELATION, HEALTH, REGISTRY, STORE
from sidecar.config import Settings
from sidecar.logs.wiring import add_log_admin_routes
from sidecar.server import create_app
from sidecar.serving.admin_api import create_admin_app

pytestmark = [pytest.mark.integration, pytest.mark.timeout(30)]

AiohttpClient = Callable[[web.Application], Any]
TOKEN = "test-admin-token-0123456789"


def apps(**settings: Any) -> tuple[web.Application, web.Application]:
    config = Settings(default_checks=False, **settings)
    core = create_app(config)
    admin = create_admin_app(config, core[STORE], core[HEALTH])
    add_log_admin_routes(admin, core)
    return core, admin


def metric(core: web.Application, name: str, **labels: str) -> float:
    return core[REGISTRY].get_sample_value(name, labels) or 0.0


def ndjson(*records: dict[str, Any]) -> bytes:
    return b"".join(orjson.dumps(r) + b"\n" for r in records)


@pytest.fixture
async def client(aiohttp_client: AiohttpClient) -> tuple[web.Application, TestClient[Any, Any]]:
    core, admin = apps(logs={"http": {"max_body_bytes": 64 * 1024, "max_decompressed_bytes": 256 * 1024}})
    return core, await aiohttp_client(admin)


async def test_ndjson_lines_are_parsed_and_counted(
    client: tuple[web.Application, TestClient[Any, Any]],
) -> None:
    core, http = client
    body = (
        ndjson(
            {"level": 30, "msg": "ok", "reqId": "h-1"},
            {"level": "error", "message": "bad", "requestId": "h-1"},
        )
        + b"{broken json\n"
        + b"\xff\xfe\xfd\n"
        + b"\n"
        + b"INFO plain text line"  # the last line needs no newline
    )
    response = await http.post("/ingest/logs?source=web", data=body)
    assert response.status == 200
    assert await response.json() == {
        "accepted": 3,
        "rejected": 2,
        "rejected_by_reason": {"invalid_json": 1, "invalid_utf8": 1},
        "source": "web",
    }
    assert metric(core, "sidecar_log_lines_total", source="web", level="info") == 2
    assert metric(core, "sidecar_log_lines_total", source="web", level="error") == 1
    assert metric(core, "sidecar_log_lines_rejected_total", source="web", reason="invalid_utf8") == 1
    assert core[CORRELATION].get("h-1") is not None


async def test_over_long_lines_in_a_body_are_rejected(aiohttp_client: AiohttpClient) -> None:
    core, admin = apps(logs={"max_line_bytes": 1024})
    http = await aiohttp_client(admin)
    body = b'{"msg":"' + b"x" * 2000 + b'"}\n{"msg":"short"}\n'
    response = await http.post("/ingest/logs", data=body)
    assert await response.json() == {
        "accepted": 1,
        "rejected": 1,
        "rejected_by_reason": {"too_long": 1},
        "source": "http",
    }
    assert metric(core, "sidecar_log_lines_rejected_total", source="http", reason="too_long") == 1


async def test_gzip_body_is_accepted(client: tuple[web.Application, TestClient[Any, Any]]) -> None:
    core, http = client
    body = gzip.compress(ndjson(*({"level": 30, "msg": f"m{i}"} for i in range(1000))))
    response = await http.post("/ingest/logs", data=body, headers={"Content-Encoding": "gzip"})
    assert response.status == 200
    assert (await response.json())["accepted"] == 1000
    assert metric(core, "sidecar_log_lines_total", source="http", level="info") == 1000


async def test_gzip_bomb_is_refused_without_inflating_it(
    client: tuple[web.Application, TestClient[Any, Any]],
) -> None:
    core, http = client
    compressor = zlib.compressobj(9, zlib.DEFLATED, 31)
    bomb = compressor.compress(b"{}" * (20 * 1024 * 1024)) + compressor.flush()  # 40 MB inflated
    assert len(bomb) < 64 * 1024  # well under the limit as sent
    response = await http.post("/ingest/logs", data=bomb, headers={"Content-Encoding": "gzip"})
    assert response.status == 413
    assert "decompressed" in (await response.json())["error"]
    assert metric(core, "sidecar_log_lines_total", source="http", level="unknown") == 0


async def test_oversized_body_gets_413(client: tuple[web.Application, TestClient[Any, Any]]) -> None:
    _, http = client
    big = ndjson(*({"msg": "x" * 100} for _ in range(1000)))  # ~110 KB > 64 KiB
    response = await http.post("/ingest/logs", data=big)
    assert response.status == 413
    assert (await response.json())["limit_bytes"] == 64 * 1024

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: the limit applies while reading
        for _ in range(100):
            yield b'{"msg":"' + b"y" * 1000 + b'"}\n'

    response = await http.post("/ingest/logs", data=chunks())
    assert response.status == 413


async def test_compressed_body_over_the_raw_limit(
    client: tuple[web.Application, TestClient[Any, Any]],
) -> None:
    _, http = client
    noise = gzip.compress(os.urandom(100 * 1024))  # incompressible: > 64 KiB as sent
    response = await http.post("/ingest/logs", data=noise, headers={"Content-Encoding": "gzip"})
    assert response.status == 413


async def test_unsupported_encoding_and_disabled_ingest(aiohttp_client: AiohttpClient) -> None:
    _, admin = apps(logs={"http": {"enabled": False}})
    http = await aiohttp_client(admin)
    response = await http.post("/ingest/logs", data=b'{"msg":"x"}\n')
    assert response.status == 404
    _, admin = apps()
    http = await aiohttp_client(admin)
    response = await http.post("/ingest/logs", data=b"x", headers={"Content-Encoding": "compress"})
    assert response.status == 415


async def test_ingest_and_timeline_require_the_admin_token(aiohttp_client: AiohttpClient) -> None:
    _, admin = apps(admin_token=TOKEN)
    http = await aiohttp_client(admin)
    assert (await http.post("/ingest/logs", data=b'{"msg":"x","reqId":"t"}\n')).status == 401
    assert (await http.get("/debug/requests/t")).status == 401
    auth = {"Authorization": f"Bearer {TOKEN}"}
    assert (await http.post("/ingest/logs", data=b'{"msg":"x","reqId":"t"}\n', headers=auth)).status == 200
    assert (await http.get("/debug/requests/t", headers=auth)).status == 200


async def test_request_timeline_in_order(client: tuple[web.Application, TestClient[Any, Any]]) -> None:
    core, http = client
    index = core[CORRELATION]
    index.add(
        "req-42",
        "access",
        {"method": "GET", "route": "/users/{id}", "status": 500},
        trace_id="4bf92f3577b34da6a3ce929d0e0e4736",
        at=1_700_000_000.5,
    )
    body = ndjson(
        {
            "level": 50,
            "time": 1_700_000_000_400,
            "reqId": "req-42",
            "msg": "query failed",
            "err": {"type": "QueryError", "message": "timeout", "stack": "QueryError: timeout\n at db"},
        },
        {"level": 30, "time": 1_700_000_000_100, "reqId": "req-42", "msg": "loading user"},
    )
    assert (await http.post("/ingest/logs", data=body)).status == 200
    index.add("req-42", "sentry", {"event_id": "0123456789abcdef0123456789abcdef"}, at=1_700_000_000.6)
    response = await http.get("/debug/requests/req-42")
    assert response.status == 200
    found = await response.json()
    assert found["trace_id"] == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert [e["kind"] for e in found["timeline"]] == ["log", "log", "access", "sentry"]
    assert [e["record"].get("message") for e in found["timeline"][:2]] == ["loading user", "query failed"]
    assert found["timeline"][1]["record"]["error_type"] == "QueryError"
    assert found["sentry_event_ids"] == ["0123456789abcdef0123456789abcdef"]
    missing = await http.get("/debug/requests/nope")
    assert missing.status == 404
    assert (await missing.json())["request_id"] == "nope"


async def test_many_http_source_names_are_capped(
    client: tuple[web.Application, TestClient[Any, Any]],
) -> None:
    core, http = client
    for i in range(40):
        assert (await http.post(f"/ingest/logs?source=s{i}", data=b'{"msg":"x"}\n')).status == 200
    assert metric(core, "sidecar_log_lines_total", source="s31", level="unknown") == 1
    assert metric(core, "sidecar_log_lines_total", source="http", level="unknown") == 8
    assert (await (await http.post("/ingest/logs?source=bad%20name!", data=b"{}\n")).json())[
        "source"
    ] == "http"
