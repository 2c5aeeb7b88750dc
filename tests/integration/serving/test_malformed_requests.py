"""Malformed requests at every route of every listener of the real sidecar: never a 5xx or a traceback.

The sidecar runs as its own process with the relay and log ingestion on. Each request below is sent
over a raw socket to each route of the health and admin listeners; every answer must be below 500
(or the connection closed without one, for what the guard cuts before HTTP), and the process's own
log must hold no traceback and no error line.
"""

from __future__ import annotations

import contextlib
import gzip
import socket
import time
import zlib
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import orjson
import pytest

from tests.e2e.sidecar_process import SidecarProcess
from tests.sentry_upstream import FakeSentry

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

KEY = "publickey123"
HEALTH_ROUTES = ["/livez", "/readyz", "/readyz/nope", "/health", "/metrics", "/nope"]
ADMIN_ROUTES = [
    "/drain",
    "/undrain",
    "/debug/checks",
    "/debug/requests/abc",
    "/ingest/logs",
    "/api/42/envelope/",
    f"/api/42/envelope/?sentry_key={KEY}",
    f"/api/42/store/?sentry_key={KEY}",
    "/api/7/store/",
    "/nope",
]
GOOD_GZIP = gzip.compress(b'{"msg":"x"}\n')


def bodies() -> list[tuple[str, dict[str, str], bytes]]:
    """(name, headers, body): bodies that lie about their encoding, framing or content."""
    return [
        ("gzip-not-gzip", {"Content-Encoding": "gzip"}, b"this is not gzip"),
        ("gzip-truncated", {"Content-Encoding": "gzip"}, GOOD_GZIP[:-6]),
        ("gzip-trailing-garbage", {"Content-Encoding": "gzip"}, GOOD_GZIP + b"junk"),
        ("deflate-not-deflate", {"Content-Encoding": "deflate"}, b"\x78\x9cnot deflate"),
        ("deflate-truncated", {"Content-Encoding": "deflate"}, zlib.compress(b"x" * 5000)[:-4]),
        ("br-unsupported", {"Content-Encoding": "br"}, b"\x0b\x02\x80hello\x03"),
        ("unknown-coding", {"Content-Encoding": "x-evil, gzip"}, GOOD_GZIP),
        ("empty-gzip", {"Content-Encoding": "gzip"}, b""),
        ("binary", {"Content-Type": "application/json"}, bytes(range(256)) * 4),
        ("json-array", {}, b"[1,2,3]\n"),
        ("json-deep", {}, b"[" * 5000 + b"]" * 5000),
        ("envelope-bad-length", {}, b'{}\n{"type":"event","length":99999}\n{}\n'),
        ("envelope-negative-length", {}, b'{}\n{"type":"event","length":-1}\n{}\n'),
        ("envelope-header-not-object", {}, b'"x"\n{"type":"event"}\n{}\n'),
        ("envelope-dsn-garbage", {}, b'{"dsn":"::::"}\n{"type":"event"}\n{}\n'),
        ("legacy-base64-garbage", {}, b"eJzLSM3JyVcozy/KSQEAGgQEXQ=="[:-5]),
        ("utf8-invalid", {}, b'{"msg":"\xff\xfe"}\n'),
    ]


def raw_requests() -> list[tuple[str, bytes]]:
    """(name, bytes): requests whose head or framing is broken (the path is filled in per route)."""
    return [
        (
            "chunked-bad-size",
            b"POST {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n",
        ),
        (
            "chunked-gzip-bad",
            b"POST {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nTransfer-Encoding: chunked\r\nContent-Encoding: gzip\r\n\r\n"
            b"5\r\nhello\r\n0\r\n\r\n",
        ),
        (
            "cl-te",
            b"POST {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        ),
        (
            "two-cl",
            b"POST {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
        ),
        (
            "cl-short",
            b"POST {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 100\r\n\r\nabc",
        ),
        ("bad-version", b"GET {path} HTTP/9.9\r\nHost: x\r\nConnection: close\r\n\r\n"),
        ("bad-percent", b"GET {path}%zz%ff?a=%ff HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"),
        ("bare-lf", b"GET {path} HTTP/1.1\nHost: x\nConnection: close\n\n"),
        ("nul-in-header", b"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nX-A: a\x00b\r\n\r\n"),
        ("garbage", b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03garbage\r\n\r\n"),
        (
            "auth-garbage",
            b"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: Bearer \xff\xfe\r\nX-Sentry-Auth: Sentry ,,,=\r\n\r\n",
        ),
    ]


def exchange(port: int, data: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        with contextlib.suppress(OSError):  # the listener may refuse and close before reading it all
            sock.sendall(data)
        answer = b""
        try:
            while chunk := sock.recv(65536):
                answer += chunk
        except (ConnectionResetError, TimeoutError):
            pass
    return answer


def statuses(answer: bytes) -> list[int]:
    return [int(line.split(b" ", 2)[1]) for line in answer.split(b"\r\n") if line.startswith(b"HTTP/1.")]


def server_errors(route: str, got: list[int], answer: bytes = b"") -> list[int]:
    """5xx answers, except the 503 of readiness and health while drained.

    The tests drain and undrain the sidecar as they go, and a batch sent at once reaches ``/drain``,
    ``/undrain`` and ``/health`` in any order: a drained sidecar's ``/health`` says ``fail`` with 503,
    as designed (only that 503: its body names the drain).
    """
    drained = route == "/health" and b"draining" in answer
    return [s for s in got if s >= 500 and not (s == 503 and (route.startswith("/readyz") or drained))]


@pytest.fixture(scope="module")
def sidecar(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SidecarProcess]:
    spool = tmp_path_factory.mktemp("spool")
    with FakeSentry() as upstream:
        config = (
            "default_checks: false\n"
            f"sentry:\n  app_dsn: {upstream.dsn(KEY, '42')}\n  spool: {{dir: {spool}}}\n"
            "limits: {header_timeout: 2s, body_timeout: 2s}\n"
        )
        with SidecarProcess(config) as process:
            yield process
            process.stop()
            logs = process.logs()
            assert "Traceback" not in logs, logs
            for line in (process.tmp / "stderr.log").read_text().splitlines():
                if line.startswith("{"):
                    assert str(orjson.loads(line).get("level")).lower() not in ("error", "critical"), line


def listeners(sidecar: SidecarProcess) -> list[tuple[int, str]]:
    return [(sidecar.port, r) for r in HEALTH_ROUTES] + [(sidecar.admin_port, r) for r in ADMIN_ROUTES]


@pytest.mark.parametrize(("name", "headers", "body"), bodies(), ids=[b[0] for b in bodies()])
@pytest.mark.parametrize("method", ["POST", "GET"])
def test_bodies_that_lie_get_4xx_everywhere(
    sidecar: SidecarProcess, name: str, headers: dict[str, str], body: bytes, method: str
) -> None:
    for port, route in listeners(sidecar):
        head = f"{method} {route} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {len(body)}\r\n"
        head += "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "Connection: close\r\n\r\n"
        answer = exchange(port, head.encode() + body)
        got = statuses(answer)
        assert got, f"{name} {method} {route}: no answer"
        assert not server_errors(route, got), f"{name} {method} {route}: {answer[:300]!r}"
        body_route = route.startswith(("/ingest", "/api/42/envelope/?", "/api/42/store/?"))
        if body_route and method == "POST" and "Encoding" in str(headers) and name != "empty-gzip":
            assert got[0] in (400, 415), f"{name} {route}: {answer[:300]!r}"


@pytest.mark.parametrize(("name", "template"), raw_requests(), ids=[r[0] for r in raw_requests()])
def test_broken_heads_and_framing_never_get_5xx(sidecar: SidecarProcess, name: str, template: bytes) -> None:
    targets = listeners(sidecar)
    with ThreadPoolExecutor(len(targets)) as pool:  # a short body waits out the body deadline: at once
        answers = pool.map(lambda t: exchange(t[0], template.replace(b"{path}", t[1].encode())), targets)
        for (_, route), answer in zip(targets, answers, strict=True):
            assert not server_errors(route, statuses(answer), answer), f"{name} {route}: {answer[:300]!r}"
    assert sidecar.proc is not None and sidecar.proc.poll() is None


def test_clients_that_hang_up_mid_body_leave_no_traceback(sidecar: SidecarProcess) -> None:
    """Checked with the rest when the module's sidecar stops: no traceback, no error line."""
    for port, route in listeners(sidecar):
        for encoding in ("", "Content-Encoding: gzip\r\n"):
            with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
                head = f"POST {route} HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n{encoding}\r\n"
                sock.sendall(head.encode() + GOOD_GZIP[:10])
                time.sleep(0.05)
    time.sleep(0.5)
    assert sidecar.proc is not None and sidecar.proc.poll() is None
    assert "Traceback" not in sidecar.logs()
