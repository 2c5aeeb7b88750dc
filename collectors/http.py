"""HTTP(S) endpoint probe, modelled on blackbox_exporter's ``http`` prober.

One ``aiohttp.ClientSession`` per check keeps its connection alive between probes, so a probe
measures the endpoint and not a TCP+TLS handshake every time (the ``connect`` phase shows when a
new connection was needed). Metric names and units are blackbox_exporter's, so its community
dashboards and alerts (``probe_ssl_earliest_cert_expiry - time() < 86400 * 14``) keep working.

Verdicts:

* status code outside ``expect_status`` or body not matching ``expect_body`` -> ``ProbeError(UNHEALTHY)``;
* ``json_field`` mapped through ``json_status_map`` (Elasticsearch ``_cluster/health``: green/yellow/red)
  -> the observation's status (warn/fail), keeping every sample;
* the server certificate expiring within ``tls_warn_days`` -> warn; already expired -> fail.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import contextvars
import json
import re
import socket
import ssl
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import TYPE_CHECKING, Annotated, Any, ClassVar

if TYPE_CHECKING:
    from cryptography import x509

import aiohttp
from aiohttp.connector import Connection
from yarl import URL

from collectors.base import (
    CheckTarget,
    Collector,
    CollectorOptions,
    Measurement,
    MetricSpec,
    Observation,
    ProbeError,
    Reason,
    Sample,
    Status,
)
from collectors.tcp import PROBE_DNS_LOOKUP_TIME, PROBE_DURATION, PROBE_IP_PROTOCOL, PROBE_SUCCESS
from sidecar.core.settings_model import Meta, ValidationInfo, check_each, field_validator

# --- metric families (blackbox_exporter names) ---------------------------------------------------

PROBE_HTTP_STATUS_CODE = MetricSpec("probe_http_status_code", "Response HTTP status code.")
PROBE_HTTP_DURATION = MetricSpec(
    "probe_http_duration_seconds",
    "Duration of the HTTP request by phase, summed over all redirects: resolve, connect (TCP "
    "handshake), tls (TLS handshake), processing, transfer; connect and tls are 0 when a kept-alive "
    "connection was reused.",
    labels=("phase",),
)
PROBE_HTTP_CONTENT_LENGTH = MetricSpec(
    "probe_http_content_length", "Length of HTTP content response from Content-Length, -1 when unknown."
)
PROBE_HTTP_BODY_LENGTH = MetricSpec(
    "probe_http_uncompressed_body_length", "Length of the uncompressed response body read, in bytes."
)
PROBE_HTTP_REDIRECTS = MetricSpec("probe_http_redirects", "The number of redirects followed.")
PROBE_HTTP_SSL = MetricSpec("probe_http_ssl", "Whether TLS was used for the final response (1/0).")
PROBE_HTTP_VERSION = MetricSpec("probe_http_version", "HTTP version of the response, e.g. 1.1.")
PROBE_SSL_EARLIEST_CERT_EXPIRY = MetricSpec(
    "probe_ssl_earliest_cert_expiry",
    "Expiry of the server's leaf certificate, in unix seconds.",
)

METRICS: tuple[MetricSpec, ...] = (
    PROBE_SUCCESS,
    PROBE_DURATION,
    PROBE_DNS_LOOKUP_TIME,
    PROBE_IP_PROTOCOL,
    PROBE_HTTP_STATUS_CODE,
    PROBE_HTTP_DURATION,
    PROBE_HTTP_CONTENT_LENGTH,
    PROBE_HTTP_BODY_LENGTH,
    PROBE_HTTP_REDIRECTS,
    PROBE_HTTP_SSL,
    PROBE_HTTP_VERSION,
    PROBE_SSL_EARLIEST_CERT_EXPIRY,
)

PHASES: tuple[str, ...] = ("resolve", "connect", "tls", "processing", "transfer")
MAX_BODY_BYTES = 1024 * 1024
_CHUNK = 64 * 1024
_SECONDS_PER_DAY = 86400.0

_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
_HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
_STATUS_CLASS = re.compile(r"^([1-5])xx$", re.IGNORECASE)
_STATUS_RANGE = re.compile(r"^(\d{3})\s*-\s*(\d{3})$")
# Header names whose values are credentials: never shown in an error text.
_SECRET_HEADER = re.compile(r"(?i)(authorization|cookie|token|secret|api[-_]?key|password|passwd|auth)")
_AUTH_SCHEME = re.compile(r"^\s*([A-Za-z][A-Za-z0-9-]*)\s+(\S+)\s*$")


# --- options ------------------------------------------------------------------------------------


def parse_status_spec(item: int | str) -> tuple[int, int]:
    """One ``expect_status`` entry as an inclusive range: ``200``, ``"2xx"``, ``"200-299"``."""
    if isinstance(item, int) and not isinstance(item, bool):
        lo = hi = item
    elif isinstance(item, str) and (cls := _STATUS_CLASS.match(item.strip())):
        lo, hi = int(cls[1]) * 100, int(cls[1]) * 100 + 99
    elif isinstance(item, str) and (rng := _STATUS_RANGE.match(item.strip())):
        lo, hi = int(rng[1]), int(rng[2])
    elif isinstance(item, str) and item.strip().isdigit():
        lo = hi = int(item.strip())
    else:
        raise ValueError(f'{item!r} is not a status: write 200, "2xx" or "200-299"')
    if not (100 <= lo <= hi <= 599):
        raise ValueError(f"{item!r} is not a status range within 100-599")
    return lo, hi


def _one_header(entry: tuple[str, str]) -> str:
    name, text = entry
    if not _HEADER_NAME.match(name):
        raise ValueError(f"{name!r} is not a valid header name")
    if "\r" in text or "\n" in text:
        raise ValueError(f"the value of header {name!r} must be one line")
    return text


class HTTPOptions(CollectorOptions, frozen=True):
    """Options of an ``http`` check."""

    method: str = "GET"
    headers: dict[str, str] = {}
    expect_status: tuple[int | str, ...] = ("2xx",)
    expect_body: Annotated[
        str | None, Meta(description="substring or regular expression the body must contain")
    ] = None
    json_field: Annotated[str | None, Meta(description="dotted path of a JSON field, e.g. status")] = None
    json_status_map: dict[str, Status] = {}
    tls_verify: bool = True
    ca_file: Annotated[str | None, Meta(description="PEM bundle of CAs trusted for this check")] = None
    tls_warn_days: Annotated[float, Meta(ge=0)] = 14.0
    follow_redirects: bool = True
    max_body_bytes: Annotated[int, Meta(ge=0, le=16 * MAX_BODY_BYTES)] = MAX_BODY_BYTES
    unix_socket: Annotated[
        str | None, Meta(description="connect through this unix socket (the URL names host and path)")
    ] = None

    @field_validator("method")
    @classmethod
    def _known_method(cls, value: str) -> str:
        method = value.upper()
        if method not in _METHODS:
            raise ValueError(f"unknown method {value!r}; use one of: {', '.join(sorted(_METHODS))}")
        return method

    @field_validator("headers")
    @classmethod
    def _header_names(cls, value: dict[str, str]) -> dict[str, str]:
        check_each(((name, (name, text)) for name, text in value.items()), _one_header)  # each at its name
        return value

    @field_validator("expect_status")
    @classmethod
    def _statuses(cls, value: tuple[int | str, ...]) -> tuple[int | str, ...]:
        if not value:
            raise ValueError('list at least one expected status, e.g. ["2xx"]')
        for item in value:
            parse_status_spec(item)
        return value

    # Checks across fields read the valid fields before them (``info.data``): one pass reports all.

    @field_validator("json_status_map", always=True)
    @classmethod
    def _json_pair(cls, value: dict[str, Status], info: ValidationInfo) -> dict[str, Status]:
        if "json_field" in info.data and bool(info.data["json_field"]) != bool(value):
            raise ValueError(
                "json_field and json_status_map go together, e.g. json_field: status and "
                "json_status_map: {green: pass, yellow: warn, red: fail}"
            )
        return value

    @field_validator("ca_file")
    @classmethod
    def _ca_needs_verify(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value and info.data.get("tls_verify") is False:
            raise ValueError("ca_file has no effect with tls_verify: false; drop one of them")
        return value


# --- helpers ------------------------------------------------------------------------------------


@dataclass(slots=True)
class _Timings:
    """Per-request phase durations, filled by the aiohttp trace hooks below."""

    resolve: float = 0.0
    connect: float = 0.0
    handshake: float = 0.0  # the part of ``connect`` after the TCP handshake: TLS on an https URL
    resolve_started: float = 0.0
    connect_started: float = 0.0
    resolve_at_connect_start: float = 0.0
    tcp_connected: float = 0.0


# The timings of the probe in flight, for the sockets its connections create (see _TimedSocket).
_current_timings: contextvars.ContextVar[_Timings | None] = contextvars.ContextVar(
    "http_probe_timings", default=None
)


class _TimedSocket(socket.socket):
    """A client socket that notes when its TCP handshake completed, so TLS can be timed apart.

    aiohttp (through aiohappyeyeballs) connects the socket with ``loop.sock_connect`` and only then
    starts TLS on it; asyncio calls ``connect`` and, when that would block, reads ``SO_ERROR`` once
    the socket is writable. Either moment that reports success is the end of blackbox_exporter's
    ``connect`` phase; what follows until the connection is set up is its ``tls`` phase.
    """

    timings: _Timings | None = None

    def connect(self, address: Any) -> None:
        super().connect(address)
        self._stamp()

    def getsockopt(self, *args: Any) -> Any:
        value = super().getsockopt(*args)
        if args[:2] == (socket.SOL_SOCKET, socket.SO_ERROR) and value == 0:
            self._stamp()
        return value

    def _stamp(self) -> None:
        if self.timings is not None:
            self.timings.tcp_connected = time.perf_counter()


def _timed_socket(addr_info: tuple[Any, ...]) -> socket.socket:
    """``TCPConnector(socket_factory=...)``: aiohappyeyeballs' default socket, with a TCP clock."""
    family, type_, proto = addr_info[0], addr_info[1], addr_info[2]
    sock = _TimedSocket(family=family, type=type_, proto=proto)
    sock.timings = _current_timings.get()
    return sock


async def _on_dns_start(_s: aiohttp.ClientSession, ctx: SimpleNamespace, _p: object) -> None:
    ctx.trace_request_ctx.resolve_started = time.perf_counter()


async def _on_dns_end(_s: aiohttp.ClientSession, ctx: SimpleNamespace, _p: object) -> None:
    timings: _Timings = ctx.trace_request_ctx
    timings.resolve += time.perf_counter() - timings.resolve_started


async def _on_connect_start(_s: aiohttp.ClientSession, ctx: SimpleNamespace, _p: object) -> None:
    timings: _Timings = ctx.trace_request_ctx
    timings.connect_started = time.perf_counter()
    timings.resolve_at_connect_start = timings.resolve


async def _on_connect_end(_s: aiohttp.ClientSession, ctx: SimpleNamespace, _p: object) -> None:
    """Connection set-up minus the name resolution done inside it: TCP and TLS handshakes."""
    timings: _Timings = ctx.trace_request_ctx
    now = time.perf_counter()
    elapsed = now - timings.connect_started
    timings.connect += max(0.0, elapsed - (timings.resolve - timings.resolve_at_connect_start))
    if timings.tcp_connected >= timings.connect_started:
        timings.handshake += now - timings.tcp_connected


def _trace_config() -> aiohttp.TraceConfig:
    """Trace hooks that split the request into blackbox_exporter's phases."""
    config = aiohttp.TraceConfig()
    config.on_dns_resolvehost_start.append(_on_dns_start)
    config.on_dns_resolvehost_end.append(_on_dns_end)
    config.on_connection_create_start.append(_on_connect_start)
    config.on_connection_create_end.append(_on_connect_end)
    return config


def _in_ranges(status: int, ranges: Sequence[tuple[int, int]]) -> bool:
    return any(lo <= status <= hi for lo, hi in ranges)


def _body_matches(pattern: str, compiled: re.Pattern[str] | None, body: str) -> bool:
    """A literal substring or a regular expression match, whichever the user meant."""
    return pattern in body or (compiled is not None and compiled.search(body) is not None)


def _compile_or_none(pattern: str | None) -> re.Pattern[str] | None:
    if pattern is None:
        return None
    try:
        return re.compile(pattern)
    except re.error:
        return None  # not a regular expression: matched as a plain substring


def json_field_value(document: Any, path: str) -> str | None:
    """The field at a dotted path as text (JSON spelling for non-strings), ``None`` when absent."""
    node = document
    for key in path.split("."):
        if isinstance(node, dict) and key in node:
            node = node[key]
        elif isinstance(node, list) and key.isdigit() and int(key) < len(node):
            node = node[int(key)]
        else:
            return None
    return node if isinstance(node, str) else json.dumps(node)


def header_secrets(headers: dict[str, str]) -> list[str]:
    """Credential values of sensitive headers, with the token alone and decoded Basic credentials."""
    found: list[str] = []
    for name, value in headers.items():
        if not _SECRET_HEADER.search(name):
            continue
        found.append(value)
        scheme = _AUTH_SCHEME.match(value)
        if scheme:
            found.append(scheme[2])
            if scheme[1].lower() == "basic":
                found.extend(_basic_secrets(scheme[2]))
    return found


def _basic_secrets(token: str) -> list[str]:
    try:
        decoded = base64.b64decode(token, validate=True).decode("utf-8", "replace")
    except (binascii.Error, ValueError):
        return []
    _user, _sep, password = decoded.partition(":")
    return [decoded, password] if password else [decoded]


def url_password_secrets(url: URL) -> list[str]:
    """The URL's password as written and as decoded; error texts may show either."""
    found = [p for p in (url.raw_password, url.password) if p]
    return list(dict.fromkeys(found))


def _ssl_object(transport: asyncio.BaseTransport | None) -> ssl.SSLObject | ssl.SSLSocket | None:
    obj = transport.get_extra_info("ssl_object") if transport is not None else None
    return obj if isinstance(obj, ssl.SSLObject | ssl.SSLSocket) else None


class _TLSAwareResponse(aiohttp.ClientResponse):
    """Remembers the peer certificate of the connection the response arrived on.

    aiohttp hands the connection back to the pool as soon as a small body has arrived, so by the
    time the caller sees the response ``resp.connection`` is often ``None``; ``start`` is the one
    moment the connection is known to be attached. The DER bytes work with verification off too.
    """

    peer_certificate_der: bytes | None = None
    tls_version: str | None = None
    ip_protocol: int | None = None

    async def start(self, connection: Connection) -> aiohttp.ClientResponse:
        transport = connection.transport
        sock = transport.get_extra_info("socket") if transport is not None else None
        family = getattr(sock, "family", None)
        if family in (socket.AF_INET, socket.AF_INET6):
            self.ip_protocol = 6 if family == socket.AF_INET6 else 4
        ssl_object = _ssl_object(transport)
        if ssl_object is not None:
            self.peer_certificate_der = ssl_object.getpeercert(binary_form=True)
            self.tls_version = ssl_object.version()
        return await super().start(connection)


def _peer_certificate(resp: aiohttp.ClientResponse) -> x509.Certificate | None:
    """The server's leaf certificate of the final response, parsed from the remembered DER."""
    der = resp.peer_certificate_der if isinstance(resp, _TLSAwareResponse) else None
    if der is None and resp.connection is not None:
        ssl_object = _ssl_object(resp.connection.transport)
        der = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
    if not der:
        return None
    # Imported on first TLS probe only: cryptography's bindings cost ~6 MB of RSS.
    from cryptography import x509  # noqa: PLC0415

    return x509.load_der_x509_certificate(der)


def _tls_version(resp: aiohttp.ClientResponse) -> str | None:
    return resp.tls_version if isinstance(resp, _TLSAwareResponse) else None


async def _read_bounded(resp: aiohttp.ClientResponse, limit: int) -> tuple[bytes, bool]:
    """At most ``limit`` bytes of the body, and whether it was cut (a huge body never fills memory)."""
    buf = bytearray()
    async for chunk in resp.content.iter_chunked(_CHUNK):
        buf += chunk
        if len(buf) > limit:
            return bytes(buf[:limit]), True
    return bytes(buf), False


def _display(url: URL) -> str:
    """The URL as shown in messages: no credentials, no query (which may hold tokens)."""
    return str(url.with_user(None).with_query(None).with_fragment(None))


@dataclass(frozen=True, slots=True)
class _Response:
    """What one exchange gave, gathered before the connection goes back to the pool."""

    status: int
    version: float
    redirects: int
    content_length: int | None
    body: bytes
    truncated: bool
    tls: bool
    tls_version: str | None
    certificate: x509.Certificate | None
    ip_protocol: int | None = None


# --- collector ----------------------------------------------------------------------------------


class HTTPCollector(Collector[HTTPOptions]):
    """Probes one HTTP(S) URL: status, body, JSON health field, latency by phase, certificate expiry."""

    kind: ClassVar[str] = "http"
    measurements: ClassVar[tuple[str, ...]] = ("responseTime", "statusCode", "certificateDaysLeft")
    options_model: ClassVar[type[CollectorOptions]] = HTTPOptions
    component_type: ClassVar[str] = "component"
    critical_by_default: ClassVar[bool] = True
    up_metric: ClassVar[MetricSpec | None] = PROBE_SUCCESS
    up_follows_verdict: ClassVar[bool] = True
    duration_metric: ClassVar[MetricSpec | None] = PROBE_DURATION

    def __init__(self, check: CheckTarget, options: HTTPOptions) -> None:
        super().__init__(check, options)
        self._url = URL(check.target or "")
        self._ranges = [parse_status_spec(item) for item in options.expect_status]
        self._body_regex = _compile_or_none(options.expect_body)
        self._session: aiohttp.ClientSession | None = None

    @classmethod
    def validate_target(cls, target: str | None) -> str | None:
        example = "write a URL such as https://api.internal:8443/healthz"
        if not target or any(c.isspace() for c in target):
            raise ValueError(f"an http check needs a URL without spaces: {example}")
        try:
            url = URL(target)
        except ValueError as exc:
            raise ValueError(f"{target!r} is not a URL ({exc}): {example}") from None
        if url.scheme not in {"http", "https"} or not url.host:
            raise ValueError(f"the target must start with http:// or https:// and name a host: {example}")
        return target

    def _ssl(self) -> ssl.SSLContext | bool:
        if not self.options.tls_verify:
            return False
        if self.options.ca_file:
            return ssl.create_default_context(cafile=self.options.ca_file)
        return True

    async def open(self) -> None:
        """Create the session; it connects lazily on the first probe.

        An unreadable ``ca_file`` does not fail here: every probe reports it until it is fixed.
        """
        if self._session is None:
            with contextlib.suppress(OSError, ssl.SSLError):
                self._session = self._new_session()

    def _new_session(self) -> aiohttp.ClientSession:
        connector: aiohttp.BaseConnector
        if self.options.unix_socket:
            connector = aiohttp.UnixConnector(self.options.unix_socket, limit=4, keepalive_timeout=30)
        else:
            connector = aiohttp.TCPConnector(
                ssl=self._ssl(), limit=4, keepalive_timeout=30, socket_factory=_timed_socket
            )
        return aiohttp.ClientSession(
            connector=connector,
            cookie_jar=aiohttp.DummyCookieJar(),  # probes must not carry state between them
            trace_configs=[_trace_config()],
            timeout=aiohttp.ClientTimeout(total=self.check.timeout),
            response_class=_TLSAwareResponse,
        )

    def _session_or_fail(self) -> aiohttp.ClientSession:
        if self._session is None:
            try:
                self._session = self._new_session()
            except (OSError, ssl.SSLError) as exc:
                raise ProbeError(
                    Reason.PROTOCOL, f"cannot load ca_file {self.options.ca_file}: {exc}"
                ) from exc
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def secrets(self) -> Sequence[str]:
        return [*url_password_secrets(self._url), *header_secrets(self.options.headers)]

    def classify_error(self, exc: BaseException) -> Reason | None:
        if isinstance(exc, aiohttp.ClientSSLError | ssl.SSLError):
            return Reason.PROTOCOL
        if isinstance(exc, TimeoutError):
            return Reason.TIMEOUT
        if isinstance(exc, aiohttp.ClientConnectorError):
            return Reason.CONNECT
        if isinstance(
            exc,
            aiohttp.ServerDisconnectedError
            | aiohttp.ClientResponseError
            | aiohttp.ClientPayloadError
            | aiohttp.InvalidURL,
        ):
            return Reason.PROTOCOL
        if isinstance(exc, aiohttp.ClientOSError):
            return Reason.CONNECT
        return None

    async def collect(self) -> Observation:
        timings = _Timings()
        started = time.perf_counter()
        token = _current_timings.set(timings)
        try:
            response, headers_at = await self._exchange(timings)
        finally:
            _current_timings.reset(token)
        finished = time.perf_counter()
        observation = self._observe(response, timings, started, headers_at, finished)
        self._check_expectations(response)
        self._judge_json(response, observation)
        self._judge_certificate(response, observation)
        return observation

    async def _exchange(self, timings: _Timings) -> tuple[_Response, float]:
        """Send the request and read a bounded body, gathering TLS facts while the connection is held."""
        session = self._session_or_fail()
        url = self._url
        if any(k.lower() == "authorization" for k in self.options.headers):
            url = url.with_user(None)  # an explicit Authorization header wins over URL credentials
        async with session.request(
            self.options.method,
            url,
            headers=self.options.headers,
            allow_redirects=self.options.follow_redirects,
            trace_request_ctx=timings,
        ) as resp:
            headers_at = time.perf_counter()
            certificate = _peer_certificate(resp)
            tls_version = _tls_version(resp)
            body, truncated = await _read_bounded(resp, self.options.max_body_bytes)
            return _Response(
                status=resp.status,
                version=resp.version.major + resp.version.minor / 10 if resp.version else 0.0,
                redirects=len(resp.history),
                content_length=resp.content_length,
                body=body,
                truncated=truncated,
                tls=resp.url.scheme == "https",
                tls_version=tls_version,
                certificate=certificate,
                ip_protocol=resp.ip_protocol if isinstance(resp, _TLSAwareResponse) else None,
            ), headers_at

    def _observe(
        self, response: _Response, timings: _Timings, started: float, headers_at: float, finished: float
    ) -> Observation:
        processing = max(0.0, headers_at - started - timings.resolve - timings.connect)
        # TLS only where the response came over TLS; plain HTTP has no tls phase (0, as in blackbox)
        tls = min(timings.handshake, timings.connect) if response.tls else 0.0
        phases = {
            "resolve": timings.resolve,
            "connect": timings.connect - tls,
            "tls": tls,
            "processing": processing,
            "transfer": finished - headers_at,
        }
        samples = [
            Sample(PROBE_HTTP_STATUS_CODE, float(response.status)),
            *(Sample(PROBE_HTTP_DURATION, phases[p], (p,)) for p in PHASES),
            Sample(PROBE_DNS_LOOKUP_TIME, timings.resolve),
            Sample(
                PROBE_HTTP_CONTENT_LENGTH,
                float(response.content_length if response.content_length is not None else -1),
            ),
            Sample(PROBE_HTTP_BODY_LENGTH, float(len(response.body))),
            Sample(PROBE_HTTP_REDIRECTS, float(response.redirects)),
            Sample(PROBE_HTTP_SSL, 1.0 if response.tls else 0.0),
            Sample(PROBE_HTTP_VERSION, response.version),
        ]
        measurements = {
            "responseTime": Measurement(finished - started, "s"),
            "statusCode": Measurement(float(response.status)),
        }
        if response.ip_protocol is not None:
            samples.append(Sample(PROBE_IP_PROTOCOL, float(response.ip_protocol)))
        info = {"statusCode": str(response.status)}
        if response.tls_version:
            info["tlsVersion"] = response.tls_version
        if response.truncated:
            info["bodyTruncatedAt"] = str(self.options.max_body_bytes)
        cert = response.certificate
        if cert is not None:
            expiry = cert.not_valid_after_utc
            samples.append(Sample(PROBE_SSL_EARLIEST_CERT_EXPIRY, expiry.timestamp()))
            days_left = (expiry - datetime.now(UTC)).total_seconds() / _SECONDS_PER_DAY
            measurements["certificateDaysLeft"] = Measurement(round(days_left, 3), "days")
            info["certificateNotAfter"] = expiry.isoformat()
        return Observation(measurements=measurements, samples=samples, info=info)

    def _check_expectations(self, response: _Response) -> None:
        """Raise ``UNHEALTHY`` when the status or the body is not what the check expects."""
        where = f"{self.options.method} {_display(self._url)}"
        if not _in_ranges(response.status, self._ranges):
            expected = ", ".join(str(s) for s in self.options.expect_status)
            raise ProbeError(Reason.UNHEALTHY, f"{where} answered {response.status}; expected {expected}")
        pattern = self.options.expect_body
        if pattern is not None:
            text = response.body.decode("utf-8", "replace")
            if not _body_matches(pattern, self._body_regex, text):
                raise ProbeError(
                    Reason.UNHEALTHY,
                    f"{where}: body does not match expect_body {pattern!r}" + _cut_note(response),
                )

    def _judge_json(self, response: _Response, observation: Observation) -> None:
        """Map the JSON health field onto the observation's status (green/yellow/red style)."""
        field_path = self.options.json_field
        if not field_path:
            return
        try:
            document = json.loads(response.body)
        except ValueError:
            raise ProbeError(
                Reason.PROTOCOL,
                f"the body is not JSON, json_field {field_path!r} cannot be read" + _cut_note(response),
            ) from None
        value = json_field_value(document, field_path)
        if value is None:
            raise ProbeError(Reason.PROTOCOL, f"the JSON body has no field {field_path!r}")
        observation.info[field_path] = value[:64]
        status = self.options.json_status_map.get(value)
        if status is None:
            known = ", ".join(self.options.json_status_map)
            raise ProbeError(
                Reason.UNHEALTHY, f"{field_path} is {value[:64]!r}, not one of json_status_map: {known}"
            )
        if status is not Status.PASS:
            observation.status = Status.worst([observation.status, status])
            _note(observation, f"{field_path} is {value[:64]!r}")

    def _judge_certificate(self, response: _Response, observation: Observation) -> None:
        """Warn while the certificate nears its expiry; fail once it has expired (verification off)."""
        days = observation.measurements.get("certificateDaysLeft")
        if days is None or response.certificate is None:
            return
        left = float(days.value)
        if left < 0:
            observation.status = Status.FAIL
            _note(observation, f"the server certificate expired {-left:.1f} days ago")
        elif left < self.options.tls_warn_days:
            observation.status = Status.worst([observation.status, Status.WARN])
            _note(observation, f"the server certificate expires in {left:.1f} days")


def _note(observation: Observation, text: str) -> None:
    observation.output = f"{observation.output}; {text}" if observation.output else text


def _cut_note(response: _Response) -> str:
    return " (body cut at max_body_bytes)" if response.truncated else ""
