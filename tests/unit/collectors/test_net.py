"""HTTP, TCP, host and process collectors without network: options, targets, parsing, arithmetic."""

from __future__ import annotations

import base64
import ssl
from pathlib import Path

import aiohttp
import psutil
import pytest

from collectors import host as host_mod
from collectors import http, load_collector, process, tcp
from collectors.base import CheckTarget, MetricSpec, ProbeError, Reason, Status
from collectors.host import (
    HostCollector,
    HostOptions,
    cpu_utilization,
    own_cgroup_dir,
    read_cgroup_memory,
    read_cgroup_v1_memory,
    read_container_memory,
    read_filefd,
)
from collectors.http import HTTPCollector, HTTPOptions, header_secrets, json_field_value, parse_status_spec
from collectors.process import ProcessCollector, ProcessOptions, ProcessReading, cpu_ratio
from collectors.tcp import TCPCollector, parse_host_port
from sidecar.core.settings_model import ValidationError

pytestmark = pytest.mark.timeout(10)


# --- metric declarations ------------------------------------------------------------------------

# http shares blackbox_exporter's probe_success, probe_duration_seconds and DNS time with tcp
ALL_METRICS: list[MetricSpec] = list(
    dict.fromkeys([*http.METRICS, *tcp.METRICS, *host_mod.METRICS, *process.METRICS])
)


@pytest.mark.parametrize("spec", ALL_METRICS, ids=lambda s: s.name)
def test_metric_specs_follow_conventions(spec: MetricSpec) -> None:
    assert spec.help
    assert "check" not in spec.labels  # the sidecar adds it
    if spec.type != "untyped":  # exporters' counters without _total are untyped here
        assert (spec.type == "counter") == spec.name.endswith("_total")
    assert not spec.name.startswith("process_")  # would collide with the sidecar's own process metrics


def test_metric_names_are_unique_per_family() -> None:
    names = [m.name for m in ALL_METRICS]
    assert len(names) == len(set(names))


@pytest.mark.parametrize(
    ("kind", "cls"),
    [("http", HTTPCollector), ("tcp", TCPCollector), ("host", HostCollector), ("process", ProcessCollector)],
)
def test_registry_loads_the_collectors(kind: str, cls: type) -> None:
    loaded = load_collector(kind)
    assert loaded is cls
    assert loaded.kind == kind


# --- http options -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("item", "expected"),
    [
        (200, (200, 200)),
        ("2xx", (200, 299)),
        ("5XX", (500, 599)),
        ("200-204", (200, 204)),
        ("301", (301, 301)),
    ],
)
def test_parse_status_spec(item: int | str, expected: tuple[int, int]) -> None:
    assert parse_status_spec(item) == expected


@pytest.mark.parametrize("item", ["6xx", "2x", 99, 600, "300-200", "ok", True])
def test_parse_status_spec_rejects(item: int | str) -> None:
    with pytest.raises(ValueError, match="status"):
        parse_status_spec(item)


def test_http_options_defaults() -> None:
    options = HTTPOptions()
    assert options.method == "GET"
    assert options.expect_status == ("2xx",)
    assert options.tls_verify is True
    assert options.tls_warn_days == 14
    assert options.max_body_bytes == 1024 * 1024


def test_http_options_normalise_method_and_map_statuses() -> None:
    options = HTTPOptions(
        method="head", json_field="status", json_status_map={"green": "pass", "yellow": "warn"}
    )
    assert options.method == "HEAD"
    assert options.json_status_map == {"green": Status.PASS, "yellow": Status.WARN}


@pytest.mark.parametrize(
    ("options", "fragment"),
    [
        ({"method": "FETCH"}, "unknown method"),
        ({"expect_status": ["2xx", "7xx"]}, "not a status"),
        ({"expect_status": []}, "at least one"),
        ({"headers": {"Bad Header": "x"}}, "not a valid header name"),
        ({"headers": {"X-A": "one\r\ntwo"}}, "one line"),
        ({"json_field": "status"}, "go together"),
        ({"json_status_map": {"green": "pass"}}, "go together"),
        ({"json_field": "status", "json_status_map": {"green": "ok"}}, "json_status_map"),
        ({"tls_verify": False, "ca_file": "/etc/ca.pem"}, "no effect"),
        ({"tls_warn_days": -1}, "tls_warn_days"),
        ({"expect_staus": ["2xx"]}, "expect_staus"),  # a typo is an error, not ignored
    ],
)
def test_http_options_reject(options: dict[str, object], fragment: str) -> None:
    with pytest.raises(ValidationError, match=fragment):
        HTTPOptions.model_validate(options)


@pytest.mark.parametrize(
    "target", ["http://svc:8080/health", "https://user:pw@es.internal:9200/_cluster/health?local=true"]
)
def test_http_target_accepts(target: str) -> None:
    assert HTTPCollector.validate_target(target) == target


@pytest.mark.parametrize(
    ("target", "fragment"),
    [
        (None, "needs a URL"),
        ("", "needs a URL"),
        ("svc:8080/health", "http://"),
        ("ftp://files.internal/", "http://"),
        ("http:///nohost", "http://"),
        ("http://svc/ health", "without spaces"),
    ],
)
def test_http_target_rejects_with_the_fix(target: str | None, fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment) as info:
        HTTPCollector.validate_target(target)
    assert "https://api.internal" in str(info.value)


def test_http_secrets_cover_url_password_and_credential_headers() -> None:
    basic = base64.b64encode(b"admin:hunter22").decode()
    collector = HTTPCollector(
        CheckTarget("es", "https://elastic:p%40ss-word@es:9200/", 3.0),
        HTTPOptions(
            headers={
                "Authorization": f"Basic {basic}",
                "X-Api-Key": "key-abcdef",
                "Cookie": "session=zzz123",
                "Accept": "application/json",
            }
        ),
    )
    secrets = set(collector.secrets())
    assert {"p%40ss-word", "p@ss-word"} <= secrets
    assert {f"Basic {basic}", basic, "admin:hunter22", "hunter22"} <= secrets
    assert {"key-abcdef", "session=zzz123"} <= secrets
    assert "application/json" not in secrets


def test_header_secrets_ignore_ordinary_headers() -> None:
    assert header_secrets({"Accept": "text/plain", "User-Agent": "sidecar"}) == []
    assert header_secrets({"authorization": "Bearer abc.def"}) == ["Bearer abc.def", "abc.def"]


@pytest.mark.parametrize(
    ("document", "path", "expected"),
    [
        ({"status": "green"}, "status", "green"),
        ({"a": {"b": [{"c": 1}]}}, "a.b.0.c", "1"),
        ({"ok": True}, "ok", "true"),
        ({"status": "green"}, "health", None),
        ({"a": [1]}, "a.3", None),
        (["x"], "status", None),
    ],
)
def test_json_field_value(document: object, path: str, expected: str | None) -> None:
    assert json_field_value(document, path) == expected


def test_http_classify_errors() -> None:
    collector = HTTPCollector(CheckTarget("w", "http://x/", 3.0), HTTPOptions())
    assert collector.classify_error(aiohttp.ServerDisconnectedError()) is Reason.PROTOCOL
    assert collector.classify_error(ssl.SSLError("bad handshake")) is Reason.PROTOCOL
    assert collector.classify_error(aiohttp.ClientPayloadError("cut")) is Reason.PROTOCOL
    assert collector.classify_error(aiohttp.ServerTimeoutError()) is Reason.TIMEOUT
    assert collector.classify_error(aiohttp.ClientOSError(104, "reset")) is Reason.CONNECT
    assert collector.classify_error(ValueError("other")) is None


# --- tcp targets --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("db.internal:5432", ("db.internal", 5432)),
        ("127.0.0.1:1", ("127.0.0.1", 1)),
        ("[::1]:6379", ("::1", 6379)),
        ("[fe80::1%eth0]:80", ("fe80::1%eth0", 80)),
    ],
)
def test_parse_host_port(target: str, expected: tuple[str, int]) -> None:
    assert parse_host_port(target) == expected
    assert TCPCollector.validate_target(target) == target


@pytest.mark.parametrize(
    ("target", "fragment"),
    [
        ("db.internal", "no port"),
        ("db.internal:", "port must be"),
        ("db.internal:70000", "port must be"),
        ("db.internal:0", "port must be"),
        (":5432", "no host"),
        ("::1:5432", "brackets"),
        ("[::1]", "brackets and a port"),
        ("tcp://db:5432", "not an address"),
        ("db internal:5432", "not an address"),
    ],
)
def test_tcp_target_rejects_with_the_fix(target: str, fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment):
        TCPCollector.validate_target(target)


def test_tcp_target_required() -> None:
    with pytest.raises(ValueError, match="host:port"):
        TCPCollector.validate_target(None)


def test_tcp_has_no_options() -> None:
    with pytest.raises(ValidationError):
        load_collector("tcp").options_model.model_validate({"send": "PING"})


# --- host ---------------------------------------------------------------------------------------


def test_host_options_validate_paths() -> None:
    assert HostOptions().paths == ("/",)
    with pytest.raises(ValidationError, match="absolute"):
        HostOptions.model_validate({"paths": ["data"]})
    with pytest.raises(ValidationError, match="at least one"):
        HostOptions.model_validate({"paths": []})
    with pytest.raises(ValidationError, match="twice"):
        HostOptions.model_validate({"paths": ["/", "/"]})
    with pytest.raises(ValidationError, match="at most"):
        HostOptions.model_validate({"paths": [f"/d{i}" for i in range(17)]})
    with pytest.raises(ValidationError, match="absolute"):
        HostOptions.model_validate({"cgroup_root": "sys/fs/cgroup"})


def test_host_takes_no_target() -> None:
    assert HostCollector.target_required is False
    assert HostCollector.validate_target(None) is None
    with pytest.raises(ValueError, match=r"options\.paths"):
        HostCollector.validate_target("/data")


def write(directory: Path, files: dict[str, str]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (directory / name).write_text(text)
    return directory


def test_cgroup_v2_with_limit(tmp_path: Path) -> None:
    root = write(
        tmp_path,
        {"memory.current": "5000\n", "memory.max": "10000\n", "memory.stat": "anon 1\ninactive_file 1000\n"},
    )
    memory = read_cgroup_memory(root)
    assert memory is not None
    assert (memory.usage, memory.working_set, memory.limit) == (5000, 4000, 10000)


def test_cgroup_v2_max_means_no_limit(tmp_path: Path) -> None:
    root = write(tmp_path, {"memory.current": "5000\n", "memory.max": "max\n"})
    memory = read_cgroup_memory(root)
    assert memory is not None
    assert memory.limit is None
    assert memory.working_set == 5000  # no memory.stat: nothing to subtract


def test_cgroup_v2_limit_of_a_parent_applies(tmp_path: Path) -> None:
    write(tmp_path, {"cgroup.controllers": "memory\n"})  # the root cgroup has no memory.max
    write(tmp_path / "kubepods", {"memory.max": "8000\n", "memory.current": "7000\n"})
    leaf = write(tmp_path / "kubepods" / "pod1", {"memory.max": "max\n", "memory.current": "600\n"})
    memory = read_cgroup_memory(leaf, tmp_path)
    assert memory is not None
    assert (memory.usage, memory.limit) == (600, 8000)


def test_cgroup_v2_tightest_limit_wins(tmp_path: Path) -> None:
    write(tmp_path / "parent", {"memory.max": "8000\n"})
    leaf = write(tmp_path / "parent" / "leaf", {"memory.max": "3000\n", "memory.current": "100\n"})
    memory = read_cgroup_memory(leaf, tmp_path)
    assert memory is not None
    assert memory.limit == 3000


def test_cgroup_absent(tmp_path: Path) -> None:
    assert read_cgroup_memory(tmp_path) is None
    assert read_cgroup_memory(write(tmp_path / "bad", {"memory.current": "lots"})) is None
    assert read_container_memory(tmp_path, tmp_path / "no-proc") is None


def test_own_cgroup_dir_follows_proc_self_cgroup(tmp_path: Path) -> None:
    root = tmp_path / "cgroup"
    leaf = write(root / "system.slice" / "app.service", {"memory.current": "42\n"})
    proc_self = write(tmp_path / "proc", {"cgroup": "0::/system.slice/app.service\n"}) / "cgroup"
    assert own_cgroup_dir(root, proc_self) == leaf
    # inside a cgroup namespace the path is "/" (or does not exist under the mount): the mount itself
    write(tmp_path / "ns", {"cgroup": "0::/../other\n"})
    assert own_cgroup_dir(root, tmp_path / "ns" / "cgroup") == root
    assert own_cgroup_dir(root, tmp_path / "missing") == root


def test_cgroup_v1_fallback(tmp_path: Path) -> None:
    root = tmp_path / "cgroup"
    write(
        root / "memory",
        {
            "memory.usage_in_bytes": "9000\n",
            "memory.limit_in_bytes": "20000\n",
            "memory.stat": "inactive_file 1\ntotal_inactive_file 2000\n",
        },
    )
    proc_self = write(tmp_path / "proc", {"cgroup": "4:memory:/docker/abc\n0::/\n"}) / "cgroup"
    memory = read_container_memory(root, proc_self)
    assert memory is not None
    assert (memory.usage, memory.working_set, memory.limit) == (9000, 7000, 20000)


def test_cgroup_v1_unlimited(tmp_path: Path) -> None:
    directory = write(
        tmp_path, {"memory.usage_in_bytes": "9000\n", "memory.limit_in_bytes": "9223372036854771712\n"}
    )
    memory = read_cgroup_v1_memory(directory)
    assert memory is not None
    assert memory.limit is None


def test_read_filefd(tmp_path: Path) -> None:
    assert read_filefd(write(tmp_path, {"file-nr": "1023\t0\t2466177\n"}) / "file-nr") == (1023, 2466177)
    assert read_filefd(write(tmp_path, {"bad": "garbage\n"}) / "bad") is None
    assert read_filefd(tmp_path / "missing") is None


@pytest.mark.parametrize(
    ("previous", "busy", "total", "expected"),
    [
        (None, 25.0, 100.0, 0.25),  # since boot on the first reading
        ((25.0, 100.0), 75.0, 200.0, 0.5),
        ((25.0, 100.0), 25.0, 100.0, 0.0),  # no time passed
        ((25.0, 100.0), 20.0, 200.0, 0.0),  # clamped: counters never go backwards in a useful way
    ],
)
def test_cpu_utilization(
    previous: tuple[float, float] | None, busy: float, total: float, expected: float
) -> None:
    assert cpu_utilization(previous, busy, total) == pytest.approx(expected)


def test_host_classifies_os_errors_as_unexpected() -> None:
    collector = HostCollector(CheckTarget("host", None, 3.0), HostOptions())
    assert collector.classify_error(PermissionError("denied")) is Reason.UNEXPECTED


# --- process ------------------------------------------------------------------------------------


def test_process_options() -> None:
    assert ProcessOptions().pid_file is None
    with pytest.raises(ValidationError, match="not both"):
        ProcessOptions(pid_file="/run/app.pid", name="gunicorn")
    with pytest.raises(ValidationError, match="absolute"):
        ProcessOptions(pid_file="app.pid")
    with pytest.raises(ValidationError, match="empty"):
        ProcessOptions(name="  ")


@pytest.mark.parametrize("target", [None, "", "self"])
def test_process_target_accepts(target: str | None) -> None:
    assert ProcessCollector.validate_target(target) in (None, "self")


def test_process_target_rejects_with_the_fix() -> None:
    with pytest.raises(ValueError, match=r"options\.pid_file"):
        ProcessCollector.validate_target("gunicorn")


def test_process_self_target_conflicts_with_selector() -> None:
    with pytest.raises(ValueError, match="drop it"):
        ProcessCollector(CheckTarget("p", "self", 3.0), ProcessOptions(name="gunicorn"))


def reading(cpu_seconds: float, create_time: float = 1000.0, cpus: int = 4) -> ProcessReading:
    return ProcessReading(
        pid=1,
        name="app",
        create_time=create_time,
        rss=1,
        vms=1,
        cpu_seconds=cpu_seconds,
        num_fds=1,
        num_threads=1,
        max_fds=1024,
        cpus=cpus,
    )


def test_process_cpu_ratio() -> None:
    # first reading: 20 CPU seconds over 10 s of life on 4 CPUs = half of the machine
    assert cpu_ratio(None, reading(20.0), now=1010.0) == pytest.approx(0.5)
    # then: one CPU busy for the 2 s since the previous probe
    assert cpu_ratio((20.0, 1010.0), reading(22.0), now=1012.0) == pytest.approx(0.25)
    assert cpu_ratio((20.0, 1010.0), reading(22.0), now=1010.0) == 0.0


def test_process_classify_errors() -> None:
    collector = ProcessCollector(CheckTarget("p", None, 3.0), ProcessOptions())
    assert collector.classify_error(psutil.NoSuchProcess(1)) is Reason.UNHEALTHY
    assert collector.classify_error(psutil.AccessDenied(1)) is Reason.AUTH


async def test_http_unreadable_ca_file_fails_each_probe_not_open(tmp_path: Path) -> None:
    collector = HTTPCollector(
        CheckTarget("w", "https://127.0.0.1:1/", 3.0), HTTPOptions(ca_file=str(tmp_path / "missing.pem"))
    )
    await collector.open()  # must not raise: a start-up never fails on a probe's problem
    with pytest.raises(ProbeError, match="ca_file") as info:
        await collector.collect()
    assert info.value.reason is Reason.PROTOCOL
    await collector.close()
