"""HTTP, TCP, host and process collectors against real local servers, sockets and processes."""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import os
import socket
import ssl
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypeVar

import psutil
import pytest
from aiohttp import web
from aiohttp.test_utils import unused_port
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from collectors.base import CheckTarget, Collector, Observation, ProbeError, Reason, Sample, Status
from collectors.host import HostCollector, HostOptions
from collectors.http import HTTPCollector, HTTPOptions
from collectors.process import ProcessCollector, ProcessOptions
from collectors.tcp import TCPCollector, TCPOptions
from sidecar.probing.probe import Probe
from sidecar.probing.settings import CheckConfig

pytestmark = [pytest.mark.integration, pytest.mark.timeout(30)]


# --- helpers ------------------------------------------------------------------------------------


def sample(observation: Observation, name: str, labels: tuple[str, ...] = ()) -> float:
    values = [s.value for s in observation.samples if s.spec.name == name and s.label_values == labels]
    assert len(values) == 1, f"{name}{labels}: {values} in {[s.spec.name for s in observation.samples]}"
    return values[0]


def names(samples: list[Sample]) -> set[str]:
    return {s.spec.name for s in samples}


async def failure(collector: Collector[Any]) -> Exception:
    """Run one probe that must fail and return what it raised."""
    try:
        await collector.collect()
    except Exception as exc:
        return exc
    raise AssertionError("the probe did not fail")


async def failure_reason(collector: Collector[Any]) -> Reason:
    """Run one probe that must fail and map its exception the way the probe template does."""
    exc = await failure(collector)
    if isinstance(exc, ProbeError):
        return exc.reason
    reason = collector.classify_error(exc)
    assert reason is not None, f"unclassified {exc!r}"
    return reason


def http_collector(url: str, timeout: float = 5.0, **options: object) -> HTTPCollector:
    HTTPCollector.validate_target(url)
    return HTTPCollector(CheckTarget("web", url, timeout), HTTPOptions.model_validate(options))


@dataclass
class Server:
    """A local aiohttp server; ``peers`` collects the client ports of every request it served."""

    port: int
    scheme: str = "http"
    peers: list[tuple[str, int]] = field(default_factory=list)

    def url(self, path: str, userinfo: str = "") -> str:
        return f"{self.scheme}://{userinfo}127.0.0.1:{self.port}{path}"


def build_app(server: Server) -> web.Application:
    cluster_state = {"status": "green"}

    @web.middleware
    async def remember_peer(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        assert request.transport is not None
        server.peers.append(request.transport.get_extra_info("peername"))
        return await handler(request)

    async def ok(_request: web.Request) -> web.Response:
        return web.Response(text="service ok: version 1.2.3")

    async def failing(_request: web.Request) -> web.Response:
        return web.Response(status=503, text="down for maintenance")

    async def cluster_health(request: web.Request) -> web.Response:
        state = request.query.get("state", cluster_state["status"])
        return web.json_response({"cluster_name": "es", "status": state, "number_of_nodes": 3})

    async def big(_request: web.Request) -> web.Response:
        return web.Response(body=b"x" * (2 * 1024 * 1024 + 17))

    async def auth(request: web.Request) -> web.Response:
        if request.headers.get("Authorization") not in {"Basic dXNlcjpzM2NyZXQtcHc=", "Bearer tok-123456789"}:
            return web.Response(status=401, text="who are you")
        return web.Response(text="welcome")

    async def redirect(_request: web.Request) -> web.Response:
        raise web.HTTPFound("/ok")

    app = web.Application(middlewares=[remember_peer])
    app.router.add_get("/ok", ok)
    app.router.add_get("/fail", failing)
    app.router.add_get("/_cluster/health", cluster_health)
    app.router.add_get("/big", big)
    app.router.add_get("/auth", auth)
    app.router.add_get("/redirect", redirect)
    return app


@pytest.fixture
async def http_server() -> AsyncIterator[Server]:
    server = Server(port=unused_port())
    runner = web.AppRunner(build_app(server))
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", server.port).start()
    yield server
    await runner.cleanup()


@dataclass(frozen=True)
class TLSFiles:
    cert: Path
    key: Path
    not_after: dt.datetime


def make_self_signed(directory: Path, days: float) -> TLSFiles:
    """A self-signed certificate for 127.0.0.1/localhost expiring in ``days``."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    not_after = now + dt.timedelta(days=days)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(not_after)
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return TLSFiles(cert_path, key_path, not_after)


@pytest.fixture
def tls_files(tmp_path: Path) -> TLSFiles:
    return make_self_signed(tmp_path, days=5)


@pytest.fixture
async def https_server(tls_files: TLSFiles) -> AsyncIterator[Server]:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(tls_files.cert, tls_files.key)
    server = Server(port=unused_port(), scheme="https")
    runner = web.AppRunner(build_app(server))
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", server.port, ssl_context=context).start()
    yield server
    await runner.cleanup()


CollectorT = TypeVar("CollectorT", bound=Collector[Any])


class Opener(Protocol):
    def __call__(self, collector: CollectorT) -> Awaitable[CollectorT]: ...


@pytest.fixture
async def opened() -> AsyncIterator[Opener]:
    """Open collectors for a test and close them all at its end."""
    collectors: list[Collector[Any]] = []

    async def _open(collector: CollectorT) -> CollectorT:
        await collector.open()
        collectors.append(collector)
        return collector

    yield _open
    for collector in collectors:
        await collector.close()


# --- http ---------------------------------------------------------------------------------------


async def test_http_pass_measures_status_latency_and_body(http_server: Server, opened: Opener) -> None:
    collector = await opened(http_collector(http_server.url("/ok"), expect_body=r"version \d+\.\d+"))
    observation = await collector.collect()
    assert observation.status is Status.PASS
    assert sample(observation, "probe_http_status_code") == 200
    assert sample(observation, "probe_http_uncompressed_body_length") == len("service ok: version 1.2.3")
    assert sample(observation, "probe_http_content_length") == len("service ok: version 1.2.3")
    assert sample(observation, "probe_http_ssl") == 0
    assert sample(observation, "probe_http_version") == pytest.approx(1.1)
    assert "probe_ssl_earliest_cert_expiry" not in names(observation.samples)
    response_time = observation.measurements["responseTime"]
    assert response_time.unit == "s"
    assert 0 < float(response_time.value) < 5
    phases = [sample(observation, "probe_http_duration_seconds", (p,)) for p in ("connect", "processing")]
    assert all(p >= 0 for p in phases)
    assert phases[0] > 0  # the first probe had to open a connection
    assert sample(observation, "probe_http_duration_seconds", ("tls",)) == 0  # plain HTTP, as blackbox says
    assert sample(observation, "probe_ip_protocol") == 4


async def test_http_wrong_status_is_unhealthy(http_server: Server, opened: Opener) -> None:
    collector = await opened(http_collector(http_server.url("/fail")))
    with pytest.raises(ProbeError) as info:
        await collector.collect()
    assert info.value.reason is Reason.UNHEALTHY
    assert "503" in str(info.value)
    assert "2xx" in str(info.value)


async def test_http_expected_non_2xx_status_passes(http_server: Server, opened: Opener) -> None:
    collector = await opened(http_collector(http_server.url("/fail"), expect_status=["500-503", 200]))
    observation = await collector.collect()
    assert observation.status is Status.PASS
    assert sample(observation, "probe_http_status_code") == 503


async def test_http_body_mismatch_is_unhealthy(http_server: Server, opened: Opener) -> None:
    collector = await opened(http_collector(http_server.url("/ok"), expect_body=r"^version \d"))
    with pytest.raises(ProbeError) as info:
        await collector.collect()
    assert info.value.reason is Reason.UNHEALTHY
    assert "expect_body" in str(info.value)


async def test_http_body_plain_substring_with_regex_characters(http_server: Server, opened: Opener) -> None:
    collector = await opened(http_collector(http_server.url("/ok"), expect_body="version 1.2.3"))
    assert (await collector.collect()).status is Status.PASS
    broken_regex = await opened(http_collector(http_server.url("/ok"), expect_body="ok: ("))
    with pytest.raises(ProbeError):
        await broken_regex.collect()


@pytest.mark.parametrize(
    ("state", "expected"),
    [("green", Status.PASS), ("yellow", Status.WARN), ("red", Status.FAIL)],
)
async def test_http_elasticsearch_cluster_health_maps_status(
    http_server: Server,
    opened: Opener,
    state: str,
    expected: Status,
) -> None:
    collector = await opened(
        http_collector(
            http_server.url(f"/_cluster/health?state={state}"),
            json_field="status",
            json_status_map={"green": "pass", "yellow": "warn", "red": "fail"},
        )
    )
    observation = await collector.collect()
    assert observation.status is expected
    assert observation.info["status"] == state
    assert sample(observation, "probe_http_status_code") == 200  # samples kept on warn/fail
    if expected is not Status.PASS:
        assert state in observation.output


async def test_http_json_value_outside_map_and_missing_field(http_server: Server, opened: Opener) -> None:
    mapping = {"green": "pass", "yellow": "warn", "red": "fail"}
    unknown = await opened(
        http_collector(
            http_server.url("/_cluster/health?state=purple"), json_field="status", json_status_map=mapping
        )
    )
    with pytest.raises(ProbeError) as info:
        await unknown.collect()
    assert info.value.reason is Reason.UNHEALTHY
    missing = await opened(
        http_collector(
            http_server.url("/_cluster/health"), json_field="health.state", json_status_map=mapping
        )
    )
    with pytest.raises(ProbeError) as info:
        await missing.collect()
    assert info.value.reason is Reason.PROTOCOL
    not_json = await opened(
        http_collector(http_server.url("/ok"), json_field="status", json_status_map=mapping)
    )
    with pytest.raises(ProbeError) as info:
        await not_json.collect()
    assert info.value.reason is Reason.PROTOCOL


async def test_http_closed_port_is_connect(opened: Opener) -> None:
    collector = await opened(http_collector(f"http://127.0.0.1:{unused_port()}/health"))
    assert await failure_reason(collector) is Reason.CONNECT


async def test_http_open_does_not_touch_the_network() -> None:
    collector = http_collector(f"http://127.0.0.1:{unused_port()}/health")
    started = time.perf_counter()
    await collector.open()
    await collector.close()
    assert time.perf_counter() - started < 0.5


async def test_http_reuses_one_connection(http_server: Server, opened: Opener) -> None:
    collector = await opened(http_collector(http_server.url("/ok")))
    observations = [await collector.collect() for _ in range(4)]
    assert len(http_server.peers) == 4
    assert len(set(http_server.peers)) == 1, http_server.peers
    later_connects = [sample(o, "probe_http_duration_seconds", ("connect",)) for o in observations[1:]]
    assert later_connects == [0.0, 0.0, 0.0]


async def test_http_follows_redirects(http_server: Server, opened: Opener) -> None:
    collector = await opened(http_collector(http_server.url("/redirect")))
    observation = await collector.collect()
    assert sample(observation, "probe_http_redirects") == 1
    assert sample(observation, "probe_http_status_code") == 200
    no_follow = await opened(http_collector(http_server.url("/redirect"), follow_redirects=False))
    with pytest.raises(ProbeError) as info:
        await no_follow.collect()
    assert "302" in str(info.value)


async def test_http_body_read_is_bounded(http_server: Server, opened: Opener) -> None:
    collector = await opened(http_collector(http_server.url("/big")))
    observation = await collector.collect()
    assert sample(observation, "probe_http_uncompressed_body_length") == 1024 * 1024
    assert sample(observation, "probe_http_content_length") == 2 * 1024 * 1024 + 17
    assert observation.info["bodyTruncatedAt"] == str(1024 * 1024)
    # the connection with an unread body is dropped, and the next probe still works
    assert (await collector.collect()).status is Status.PASS


async def test_http_basic_auth_from_url_and_secrets(http_server: Server, opened: Opener) -> None:
    good = await opened(http_collector(http_server.url("/auth", "user:s3cret-pw@")))
    assert (await good.collect()).status is Status.PASS
    assert "s3cret-pw" in good.secrets()

    bad = await opened(http_collector(http_server.url("/auth", "user:wr0ng-pw@")))
    with pytest.raises(ProbeError) as info:
        await bad.collect()
    assert "401" in str(info.value)
    assert "wr0ng-pw" not in str(info.value)
    assert "wr0ng-pw" in bad.secrets()


async def test_http_bearer_header_is_sent_and_secret(http_server: Server, opened: Opener) -> None:
    collector = await opened(
        http_collector(http_server.url("/auth"), headers={"Authorization": "Bearer tok-123456789"})
    )
    assert (await collector.collect()).status is Status.PASS
    assert "tok-123456789" in collector.secrets()
    assert "Bearer tok-123456789" in collector.secrets()


async def test_https_certificate_expiring_soon_warns(
    https_server: Server, tls_files: TLSFiles, opened: Opener
) -> None:
    collector = await opened(http_collector(https_server.url("/ok"), tls_verify=False, tls_warn_days=14))
    observation = await collector.collect()
    assert observation.status is Status.WARN
    assert "certificate expires" in observation.output
    days = observation.measurements["certificateDaysLeft"]
    assert days.unit == "days"
    assert float(days.value) == pytest.approx(5, abs=0.01)
    assert sample(observation, "probe_ssl_earliest_cert_expiry") == tls_files.not_after.timestamp()
    assert sample(observation, "probe_http_ssl") == 1
    assert observation.info["tlsVersion"].startswith("TLS")


async def test_https_certificate_far_from_expiry_passes(https_server: Server, opened: Opener) -> None:
    collector = await opened(http_collector(https_server.url("/ok"), tls_verify=False, tls_warn_days=3))
    observation = await collector.collect()
    assert observation.status is Status.PASS
    assert float(observation.measurements["certificateDaysLeft"].value) > 4.9


async def test_https_untrusted_certificate_is_protocol(https_server: Server, opened: Opener) -> None:
    collector = await opened(http_collector(https_server.url("/ok")))
    exc = await failure(collector)
    assert collector.classify_error(exc) is Reason.PROTOCOL
    assert "certificate" in str(exc).lower()


async def test_https_ca_file_verifies_and_reuses_tls_connection(
    https_server: Server, tls_files: TLSFiles, opened: Opener
) -> None:
    collector = await opened(http_collector(https_server.url("/ok"), ca_file=str(tls_files.cert)))
    first = await collector.collect()
    second = await collector.collect()
    assert first.status is Status.WARN  # verified, but the certificate expires in 5 days
    assert "certificateDaysLeft" in second.measurements  # read on a reused connection too
    assert len(set(https_server.peers)) == 1
    # blackbox's phases: the TLS handshake apart from the TCP connect, both 0 on the reused connection
    tls, connect = (sample(first, "probe_http_duration_seconds", (p,)) for p in ("tls", "connect"))
    assert tls > 0
    assert connect > 0
    assert first.measurements["responseTime"].value > tls + connect
    assert [sample(second, "probe_http_duration_seconds", (p,)) for p in ("tls", "connect")] == [0, 0]


# --- tcp ----------------------------------------------------------------------------------------


@pytest.fixture
async def tcp_listener() -> AsyncIterator[tuple[int, list[int]]]:
    accepted: list[int] = []

    async def handle(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(writer.get_extra_info("peername")[1])
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    yield port, accepted
    server.close()
    await server.wait_closed()


def tcp_collector(target: str) -> TCPCollector:
    TCPCollector.validate_target(target)
    return TCPCollector(CheckTarget("tcp", target, 3.0), TCPOptions())


async def test_tcp_connects_and_closes(tcp_listener: tuple[int, list[int]], opened: Opener) -> None:
    port, accepted = tcp_listener
    collector = await opened(tcp_collector(f"127.0.0.1:{port}"))
    observation = await collector.collect()
    await collector.collect()
    assert observation.status is Status.PASS
    assert sample(observation, "probe_ip_protocol") == 4
    assert sample(observation, "sidecar_tcp_connect_duration_seconds") >= 0
    assert 0 < float(observation.measurements["responseTime"].value) < 3
    await asyncio.sleep(0.05)
    assert len(accepted) == 2  # one connection per probe, each closed again


async def test_tcp_localhost_name(tcp_listener: tuple[int, list[int]], opened: Opener) -> None:
    port, _ = tcp_listener
    observation = await (await opened(tcp_collector(f"localhost:{port}"))).collect()
    assert sample(observation, "probe_dns_lookup_time_seconds") >= 0


async def test_tcp_ipv6_loopback(opened: Opener) -> None:
    if not socket.has_ipv6:
        pytest.skip("no IPv6")
    try:
        server = await asyncio.start_server(lambda _r, w: w.close(), "::1", 0)
    except OSError:
        pytest.skip("no IPv6 loopback here")
    try:
        port = server.sockets[0].getsockname()[1]
        observation = await (await opened(tcp_collector(f"[::1]:{port}"))).collect()
        assert sample(observation, "probe_ip_protocol") == 6
    finally:
        server.close()
        await server.wait_closed()


async def test_tcp_closed_port_is_connect(opened: Opener) -> None:
    collector = await opened(tcp_collector(f"127.0.0.1:{unused_port()}"))
    assert await failure_reason(collector) is Reason.CONNECT


# --- host ---------------------------------------------------------------------------------------


def host_collector(**options: object) -> HostCollector:
    return HostCollector(CheckTarget("host", None, 3.0), HostOptions.model_validate(options))


async def test_host_values_are_plausible(tmp_path: Path, opened: Opener) -> None:
    collector = await opened(host_collector(paths=["/", str(tmp_path)]))
    deadline = time.perf_counter() + 0.3
    while time.perf_counter() < deadline:  # keep one CPU busy so utilisation is above zero
        sum(range(10_000))
    observation = await collector.collect()
    measurements = observation.measurements
    for key in ("cpuUtilization", "memoryUtilization", "diskUtilization"):
        assert 0.0 <= float(measurements[key].value) <= 1.0, key
        assert measurements[key].unit == "ratio"
    assert float(measurements["cpuUtilization"].value) > 0
    assert sample(observation, "sidecar_host_memory_total_bytes") == psutil.virtual_memory().total
    available = sample(observation, "sidecar_host_memory_available_bytes")
    assert 0 < available <= psutil.virtual_memory().total
    assert sample(observation, "node_load1") == pytest.approx(os.getloadavg()[0], abs=5)
    # node_exporter's labels: the filesystem's device, fstype and mount point (psutil's reading of the
    # mount table), one series per filesystem however many watched paths are on it
    partitions = psutil.disk_partitions(all=True)
    expected = set()
    for path in ("/", str(tmp_path)):
        part = max(
            (p for p in partitions if (path + "/").startswith(p.mountpoint.rstrip("/") + "/")),
            key=lambda p: len(p.mountpoint),
        )
        labels = (part.device, "", part.fstype, part.mountpoint)
        expected.add(labels)
        size = sample(observation, "node_filesystem_size_bytes", labels)
        avail = sample(observation, "node_filesystem_avail_bytes", labels)
        assert 0 <= avail <= sample(observation, "node_filesystem_free_bytes", labels) <= size
        assert sample(observation, "node_filesystem_readonly", labels) == 0
    assert {
        s.label_values for s in observation.samples if s.spec.name == "node_filesystem_size_bytes"
    } == expected
    assert sample(observation, "node_memory_MemTotal_bytes") == psutil.virtual_memory().total
    cpu_series = {s.label_values for s in observation.samples if s.spec.name == "node_cpu_seconds_total"}
    assert len(cpu_series) == 8 * (psutil.cpu_count() or 0)
    idle = sample(observation, "node_cpu_seconds_total", ("0", "idle"))
    assert idle == pytest.approx(psutil.cpu_times(percpu=True)[0].idle, rel=0.05)
    assert sample(observation, "node_vmstat_pgfault") > 0
    assert float(measurements["uptime"].value) > 0
    if Path("/proc/sys/fs/file-nr").exists():
        assert sample(observation, "node_filefd_allocated") > 0
    second = await collector.collect()
    assert 0.0 <= float(second.measurements["cpuUtilization"].value) <= 1.0


async def test_host_missing_path_is_unhealthy(tmp_path: Path, opened: Opener) -> None:
    collector = await opened(host_collector(paths=[str(tmp_path / "not-mounted")]))
    with pytest.raises(ProbeError) as info:
        await collector.collect()
    assert info.value.reason is Reason.UNHEALTHY
    assert "not-mounted" in str(info.value)


async def test_host_reads_an_injected_cgroup_v2(tmp_path: Path, opened: Opener) -> None:
    cgroup = tmp_path / "cgroup"
    cgroup.mkdir()
    (cgroup / "memory.current").write_text("300\n")
    (cgroup / "memory.max").write_text("1000\n")
    (cgroup / "memory.stat").write_text("anon 100\ninactive_file 50\n")
    proc = tmp_path / "proc" / "self"
    proc.mkdir(parents=True)
    (proc / "cgroup").write_text("0::/\n")
    collector = await opened(host_collector(cgroup_root=str(cgroup), proc_root=str(tmp_path / "proc")))
    observation = await collector.collect()
    assert sample(observation, "sidecar_container_memory_limit_bytes") == 1000
    assert sample(observation, "sidecar_container_memory_usage_bytes") == 300
    assert sample(observation, "sidecar_container_memory_working_set_bytes") == 250
    assert observation.measurements["containerMemoryUtilization"].value == 0.25
    assert "node_filefd_allocated" not in names(observation.samples)  # no file-nr under the fake /proc


# --- process ------------------------------------------------------------------------------------


def process_collector(target: str | None = None, **options: object) -> ProcessCollector:
    target = ProcessCollector.validate_target(target)
    return ProcessCollector(CheckTarget("proc", target, 3.0), ProcessOptions.model_validate(options))


@pytest.fixture
def sleeper() -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    marker = f"sidecar-test-{uuid.uuid4().hex}"
    child = subprocess.Popen([sys.executable, "-c", f"import time; time.sleep(30)  # {marker}"])
    yield child, marker
    if child.poll() is None:
        child.kill()
    child.wait(timeout=5)


async def test_process_self(opened: Opener) -> None:
    collector = await opened(process_collector("self"))
    first = await collector.collect()
    sum(range(200_000))
    second = await collector.collect()
    me = psutil.Process()
    assert first.info["pid"] == str(os.getpid())
    assert sample(second, "sidecar_app_process_resident_memory_bytes") > 1_000_000
    assert sample(second, "sidecar_app_process_cpu_seconds_total") >= sample(
        first, "sidecar_app_process_cpu_seconds_total"
    )
    assert sample(second, "sidecar_app_process_open_fds") > 0
    assert sample(second, "sidecar_app_process_threads") >= 1
    assert sample(second, "sidecar_app_process_start_time_seconds") == me.create_time()
    soft = me.rlimit(psutil.RLIMIT_NOFILE)[0]
    assert sample(second, "sidecar_app_process_max_fds") == soft
    for key in ("cpuUtilization", "fdUtilization"):
        assert 0 <= float(second.measurements[key].value) <= 1
    assert float(second.measurements["uptime"].value) > 0
    assert next(s for s in second.samples if s.spec.name.endswith("_total")).spec.type == "counter"


async def test_process_default_target_is_self(opened: Opener) -> None:
    observation = await (await opened(process_collector())).collect()
    assert observation.info["pid"] == str(os.getpid())


async def test_process_by_pid_file_then_killed(
    sleeper: tuple[subprocess.Popen[bytes], str], tmp_path: Path, opened: Opener
) -> None:
    child, _ = sleeper
    pid_file = tmp_path / "app.pid"
    pid_file.write_text(f"{child.pid}\n")
    collector = await opened(process_collector(pid_file=str(pid_file)))
    observation = await collector.collect()
    assert observation.info["pid"] == str(child.pid)
    assert sample(observation, "sidecar_app_process_resident_memory_bytes") > 0
    child.kill()
    child.wait(timeout=5)
    with pytest.raises(ProbeError) as info:
        await collector.collect()
    assert info.value.reason is Reason.UNHEALTHY
    assert "process not running" in str(info.value)


async def test_process_killed_but_not_reaped_is_not_running(
    sleeper: tuple[subprocess.Popen[bytes], str], tmp_path: Path, opened: Opener
) -> None:
    child, _ = sleeper
    pid_file = tmp_path / "app.pid"
    pid_file.write_text(str(child.pid))
    collector = await opened(process_collector(pid_file=str(pid_file)))
    await collector.collect()
    child.kill()
    for _ in range(100):  # wait until it is a zombie, without reaping it
        if psutil.Process(child.pid).status() == psutil.STATUS_ZOMBIE:
            break
        await asyncio.sleep(0.02)
    with pytest.raises(ProbeError) as info:
        await collector.collect()
    assert info.value.reason is Reason.UNHEALTHY


async def test_process_missing_pid_file(tmp_path: Path, opened: Opener) -> None:
    collector = await opened(process_collector(pid_file=str(tmp_path / "nope.pid")))
    with pytest.raises(ProbeError) as info:
        await collector.collect()
    assert info.value.reason is Reason.UNHEALTHY


async def test_process_by_cmdline_then_killed(
    sleeper: tuple[subprocess.Popen[bytes], str], opened: Opener
) -> None:
    child, marker = sleeper
    collector = await opened(process_collector(name=marker))
    observation = await collector.collect()
    assert observation.info["pid"] == str(child.pid)
    assert observation.info["processName"].startswith("python")
    child.kill()
    child.wait(timeout=5)
    with pytest.raises(ProbeError) as info:
        await collector.collect()
    assert info.value.reason is Reason.UNHEALTHY
    assert marker in str(info.value)


async def test_process_by_name_picks_the_oldest(opened: Opener) -> None:
    marker = f"sidecar-test-{uuid.uuid4().hex}"
    code = f"import time; time.sleep(30)  # {marker}"
    older = subprocess.Popen([sys.executable, "-c", code])
    try:
        await asyncio.sleep(0.1)  # distinct start times (clock ticks)
        younger = subprocess.Popen([sys.executable, "-c", code])
        try:
            observation = await (await opened(process_collector(name=marker))).collect()
            assert observation.info["pid"] == str(older.pid)
        finally:
            younger.kill()
            younger.wait(timeout=5)
    finally:
        older.kill()
        older.wait(timeout=5)


# --- the exporters' up-style families, through the probe template -------------------------------


async def test_up_families_are_there_when_the_dependency_fails_too(http_server: Server) -> None:
    """``probe_success``/``redis_up`` exist on failed probes with 0, as the exporters' alerts expect."""
    closed = unused_port()
    cases = [
        (CheckConfig(name="web", kind="http", target=http_server.url("/ok")), "probe_success", 1.0),
        (CheckConfig(name="web", kind="http", target=http_server.url("/fail")), "probe_success", 0.0),
        (CheckConfig(name="port", kind="tcp", target=f"127.0.0.1:{closed}"), "probe_success", 0.0),
        (CheckConfig(name="cache", kind="redis", target=f"redis://127.0.0.1:{closed}/0"), "redis_up", 0.0),
        (
            CheckConfig(name="db", kind="postgres", target=f"postgresql://u@127.0.0.1:{closed}/x"),
            "pg_up",
            0.0,
        ),
        (CheckConfig(name="my", kind="mysql", target=f"mysql://u@127.0.0.1:{closed}/"), "mysql_up", 0.0),
    ]
    for config, family, expected in cases:
        probe = Probe(config)
        await probe.collector.open()
        try:
            result = await probe.run()
        finally:
            await probe.collector.close()
        values = {s.spec.name: s.value for s in result.samples if not s.spec.labels}
        assert values.get(family) == expected, (config.target, result.output, values)
        assert result.up is (expected == 1.0)
        if family == "probe_success":  # blackbox's probe_duration_seconds: the probe's own duration
            assert values["probe_duration_seconds"] == result.duration_seconds
