"""MySQL / MariaDB collector: round-trip latency, version, connections against max_connections.

It keeps one lazily opened aiomysql connection rather than an aiomysql pool: the pool creates
connections inside ``aiomysql.connect()``, whose handshake cleanup only catches ``Exception``, so a
probe cancelled during the handshake (a hung server, the template's timeout) would leave the socket
open with no way to reach it. Holding the ``Connection`` ourselves lets every failed or cancelled
probe close it at once. A pool of ``maxsize=1`` would have held exactly one connection too.

Metric names follow mysqld_exporter, so its community dashboards keep working.
"""

from __future__ import annotations

import asyncio
import calendar
import contextlib
import re
import ssl
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar
from urllib.parse import parse_qsl, unquote, urlsplit

import aiomysql
import pymysql
from pymysql.constants import CR, ER

from collectors.base import (
    CheckTarget,
    Collector,
    CollectorOptions,
    Measurement,
    MetricSpec,
    MetricType,
    Observation,
    Reason,
    Sample,
)

SCHEMES = ("mysql", "mariadb")
DEFAULT_PORT = 3306
EXAMPLE_TARGET = "mysql://user:password@db.internal:3306/app"

PING_QUERY = "SELECT 1"
# What the mysqld mixin's alerts, rules and dashboard query, in the round trips the probe already
# made, named and shaped as mysqld_exporter does. Not all of SHOW GLOBAL STATUS (~550 rows) and
# VARIABLES (~650, some long text): parsing every row in Python cost ten times the rest of the probe.
STATUS = (
    "Aborted_clients",
    "Aborted_connects",
    "Bytes_received",
    "Bytes_sent",
    "Created_tmp_disk_tables",
    "Created_tmp_files",
    "Created_tmp_tables",
    "Innodb_mem_adaptive_hash",
    "Innodb_mem_dictionary",
    "Innodb_num_open_files",
    "Innodb_page_size",
    "Max_used_connections",
    "Open_files",
    "Open_table_definitions",
    "Open_tables",
    "Opened_files",
    "Opened_table_definitions",
    "Opened_tables",
    "Qcache_free_memory",
    "Qcache_hits",
    "Qcache_inserts",
    "Qcache_lowmem_prunes",
    "Qcache_not_cached",
    "Qcache_queries_in_cache",
    "Queries",
    "Questions",
    "Select_full_join",
    "Select_full_range_join",
    "Select_range",
    "Select_range_check",
    "Select_scan",
    "Slow_queries",
    "Sort_merge_passes",
    "Sort_range",
    "Sort_rows",
    "Sort_scan",
    "Table_locks_immediate",
    "Table_locks_waited",
    "Table_open_cache_hits",
    "Table_open_cache_misses",
    "Table_open_cache_overflows",
    "Threads_cached",
    "Threads_connected",
    "Threads_created",
    "Threads_running",
    "Uptime",
)
# the labelled families, whole: Com_* (commands_total), Handler_*, Connection_errors_*, buffer pool
STATUS_PREFIXES = (
    "Com\\_",
    "Handler\\_",
    "Connection\\_errors\\_",
    "Innodb\\_buffer\\_pool\\_pages\\_",
    "Innodb\\_rows\\_",
)
STATUS_QUERY = "SHOW GLOBAL STATUS WHERE Variable_name IN ({}) OR {}".format(
    ", ".join(f"'{name}'" for name in STATUS),
    " OR ".join(f"Variable_name LIKE '{prefix}%'" for prefix in STATUS_PREFIXES),
)
VARIABLES = (
    "innodb_additional_mem_pool_size",
    "innodb_buffer_pool_size",
    "innodb_log_buffer_size",
    "innodb_version",
    "key_buffer_size",
    "max_connections",
    "open_files_limit",
    "query_cache_size",
    "read_only",
    "table_definition_cache",
    "table_open_cache",
    "thread_cache_size",
    "tokudb_cache_size",
    "version",
    "version_comment",
)
VARIABLES_QUERY = "SHOW GLOBAL VARIABLES WHERE Variable_name IN ({})".format(
    ", ".join(f"'{name}'" for name in VARIABLES)
)

EXPORTER = "mysqld_exporter"

MYSQL_UP = MetricSpec(
    "mysql_up", "1 when the last probe could connect to MySQL and query it, else 0.", exporter=EXPORTER
)
# Templates of the generic families, one per numeric status variable / variable (``mysql_global_status_*``,
# ``mysql_global_variables_*``); kept apart from the module's MetricSpecs since their names vary.
_GENERIC_STATUS: tuple[str, MetricType] = ("Generic metric from SHOW GLOBAL STATUS.", "untyped")
_GENERIC_VARIABLE: tuple[str, MetricType] = ("Generic gauge metric from SHOW GLOBAL VARIABLES.", "gauge")
MYSQL_COMMANDS = MetricSpec(
    "mysql_global_status_commands_total",
    "Total number of executed MySQL commands (status Com_*).",
    type="counter",
    labels=("command",),
    exporter=EXPORTER,
)
MYSQL_HANDLERS = MetricSpec(
    "mysql_global_status_handlers_total",
    "Total number of executed MySQL handlers (status Handler_*).",
    type="counter",
    labels=("handler",),
    exporter=EXPORTER,
)
MYSQL_CONNECTION_ERRORS = MetricSpec(
    "mysql_global_status_connection_errors_total",
    "Connection errors by cause (status Connection_errors_*).",
    type="counter",
    labels=("error",),
    exporter=EXPORTER,
)
MYSQL_BUFFER_POOL_PAGES = MetricSpec(
    "mysql_global_status_buffer_pool_pages",
    "Innodb buffer pool pages by state.",
    labels=("state",),
    exporter=EXPORTER,
)
MYSQL_BUFFER_POOL_DIRTY_PAGES = MetricSpec(
    "mysql_global_status_buffer_pool_dirty_pages", "Innodb buffer pool dirty pages.", exporter=EXPORTER
)
MYSQL_BUFFER_POOL_PAGE_CHANGES = MetricSpec(
    "mysql_global_status_buffer_pool_page_changes_total",
    "Innodb buffer pool page state changes.",
    type="counter",
    labels=("operation",),
    exporter=EXPORTER,
)
MYSQL_INNODB_ROW_OPS = MetricSpec(
    "mysql_global_status_innodb_row_ops_total",
    "Total number of MySQL InnoDB row operations.",
    type="counter",
    labels=("operation",),
    exporter=EXPORTER,
)
MYSQL_PERFORMANCE_SCHEMA_LOST = MetricSpec(
    "mysql_global_status_performance_schema_lost_total",
    "Total number of MySQL instrumentations that could not be loaded or created due to memory constraints.",
    type="counter",
    labels=("instrumentation",),
    exporter=EXPORTER,
)
MYSQL_VERSION_INFO = MetricSpec(
    "mysql_version_info",
    "MySQL version and distribution, as labels; the value is always 1.",
    labels=("innodb_version", "version", "version_comment"),
    exporter=EXPORTER,
)
METRICS: tuple[MetricSpec, ...] = (
    MYSQL_UP,
    MYSQL_COMMANDS,
    MYSQL_HANDLERS,
    MYSQL_CONNECTION_ERRORS,
    MYSQL_BUFFER_POOL_PAGES,
    MYSQL_BUFFER_POOL_DIRTY_PAGES,
    MYSQL_BUFFER_POOL_PAGE_CHANGES,
    MYSQL_INNODB_ROW_OPS,
    MYSQL_PERFORMANCE_SCHEMA_LOST,
    MYSQL_VERSION_INFO,
)
# mysqld_exporter's split of status variables into labelled families (global_status.go)
_STATUS_GROUPS = re.compile(
    r"^(com|handler|connection_errors|innodb_buffer_pool_pages|innodb_rows|performance_schema)_(.*)$"
)
_LABELLED: Mapping[str, MetricSpec] = {
    "com": MYSQL_COMMANDS,
    "handler": MYSQL_HANDLERS,
    "connection_errors": MYSQL_CONNECTION_ERRORS,
    "innodb_rows": MYSQL_INNODB_ROW_OPS,
    "performance_schema": MYSQL_PERFORMANCE_SCHEMA_LOST,
}
_BUFFER_POOL_STATES = frozenset({"data", "free", "misc", "old"})
_INVALID_NAME_CHARS = re.compile(r"[^a-zA-Z0-9_]")
_WORDS: Mapping[str, float] = {
    "yes": 1.0,
    "on": 1.0,
    "no": 0.0,
    "off": 0.0,
    "disabled": 0.0,
    "connecting": 0.0,
    "primary": 1.0,
    "non-primary": 0.0,
    "disconnected": 0.0,
}
_TIME_FORMATS = ("%b %d %H:%M:%S %Y %Z", "%Y-%m-%d %H:%M:%S")
_LONGEST_DATE = 32
MAX_GENERIC_FAMILIES = 4096  # bounds the name cache below whatever a server reports
_generic: dict[str, MetricSpec] = {}

CLOSE_TIMEOUT = 1.0  # seconds for a polite goodbye (COM_QUIT) before the socket is simply closed
UNIT_SECONDS = "s"
UNIT_RATIO = "ratio"

# URL query keys (several spellings in use: mysql CLI, Prisma, SQLAlchemy)
SOCKET_KEYS = ("unix_socket", "socket")
SSL_MODE_KEYS = ("ssl-mode", "ssl_mode", "sslmode")
SSL_CA_KEYS = ("ssl-ca", "ssl_ca", "sslca", "sslrootcert")
SSL_MODES = ("disabled", "preferred", "required", "verify_ca", "verify_identity")


class MySQLOptions(CollectorOptions, frozen=True):
    """No options yet; the target URL says everything."""


@dataclass(frozen=True, slots=True)
class MySQLTarget:
    """Connection parameters parsed from a ``mysql://`` or ``mariadb://`` URL."""

    host: str = "localhost"
    port: int = DEFAULT_PORT
    user: str | None = None
    password: str = field(default="", repr=False)
    database: str | None = None
    unix_socket: str | None = None
    ssl_mode: str = "disabled"
    ssl_ca: str | None = None


def _first(query: Mapping[str, str], keys: Sequence[str]) -> str | None:
    return next((query[k] for k in keys if k in query), None)


def parse_mysql_url(url: str) -> MySQLTarget:
    """Parse a MySQL URL; ``ValueError`` with the fix when it cannot be used."""
    parts = urlsplit(url)
    if parts.scheme not in SCHEMES:
        raise ValueError(
            f"mysql target must start with mysql:// or mariadb://, not {parts.scheme or 'nothing'}://; "
            f"e.g. {EXAMPLE_TARGET}"
        )
    try:
        port = parts.port or DEFAULT_PORT
    except ValueError:
        raise ValueError(
            f"mysql target has an invalid port; use a number 1-65535, e.g. {EXAMPLE_TARGET}"
        ) from None
    query = dict(parse_qsl(parts.query, keep_blank_values=True))
    unix_socket = _first(query, SOCKET_KEYS) or None
    if not parts.hostname and not unix_socket:
        raise ValueError(f"mysql target needs a host (or ?socket=/path/mysqld.sock), e.g. {EXAMPLE_TARGET}")
    ssl_mode = (_first(query, SSL_MODE_KEYS) or "disabled").lower().replace("-", "_")
    if ssl_mode not in SSL_MODES:
        raise ValueError(f"mysql target ssl-mode must be one of {', '.join(SSL_MODES)}, not {ssl_mode!r}")
    database = unquote(parts.path.lstrip("/")) or None
    return MySQLTarget(
        host=parts.hostname or "localhost",
        port=port,
        user=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else "",
        database=database,
        unix_socket=unix_socket,
        ssl_mode=ssl_mode,
        ssl_ca=_first(query, SSL_CA_KEYS) or None,
    )


def ssl_context(target: MySQLTarget) -> ssl.SSLContext | None:
    """TLS per ``ssl-mode``; ``preferred`` is treated as disabled (no opportunistic TLS here)."""
    if target.ssl_mode in ("disabled", "preferred"):
        return None
    context = ssl.create_default_context(cafile=target.ssl_ca)
    if target.ssl_mode == "required":
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    elif target.ssl_mode == "verify_ca":
        context.check_hostname = False
    return context


def client_name(check_name: str) -> str:
    """``program_name`` connection attribute, visible where performance_schema is on."""
    return f"sidecar-{check_name}"[:64]


class MySQLCollector(Collector[MySQLOptions]):
    """Probes one MySQL or MariaDB server through a single reused connection."""

    kind: ClassVar[str] = "mysql"
    measurements: ClassVar[tuple[str, ...]] = ("responseTime", "connections", "connectionsUsedRatio")
    options_model: ClassVar[type[CollectorOptions]] = MySQLOptions
    component_type: ClassVar[str] = "datastore"
    up_metric: ClassVar[MetricSpec | None] = MYSQL_UP

    def __init__(self, check: CheckTarget, options: MySQLOptions) -> None:
        super().__init__(check, options)
        self._target: MySQLTarget | None = None
        self._conn: Any = None  # aiomysql.Connection (untyped library)

    async def open(self) -> None:
        """Parse the target; the connection is made by the first probe."""
        self._target = parse_mysql_url(self.check.target or "")

    async def close(self) -> None:
        """Say goodbye (COM_QUIT) when the server answers quickly; close the socket regardless."""
        conn, self._conn = self._conn, None
        if conn is None:
            return
        with contextlib.suppress(Exception):
            async with asyncio.timeout(CLOSE_TIMEOUT):
                await conn.ensure_closed()
        conn.close()

    async def collect(self) -> Observation:
        conn = await self._connection()
        try:
            async with conn.cursor() as cursor:
                started = time.perf_counter()
                await cursor.execute(PING_QUERY)
                await cursor.fetchall()
                response_time = time.perf_counter() - started
                await cursor.execute(STATUS_QUERY)
                status = dict(await cursor.fetchall())
                await cursor.execute(VARIABLES_QUERY)
                variables = dict(await cursor.fetchall())
        except BaseException:
            self._discard()  # cancelled mid-query or broken: never reuse it
            raise
        # ~260 status rows were just parsed in one go (aiomysql reads buffered rows without
        # yielding); let other tasks run before they are turned into samples.
        await asyncio.sleep(0)
        return observe(response_time, _lower_keys(status), _lower_keys(variables))

    async def _connection(self) -> Any:
        """The open connection, or a new one when there is none or the server closed it."""
        if self._conn is not None and not _is_stale(self._conn):
            return self._conn
        self._discard()
        target = self._target
        if target is None:
            raise RuntimeError("MySQLCollector.collect() called before open()")
        conn = aiomysql.Connection(
            host=target.host,
            port=target.port,
            user=target.user,
            password=target.password,
            db=target.database,
            unix_socket=target.unix_socket,
            connect_timeout=self.check.timeout,
            ssl=ssl_context(target),
            autocommit=True,
            charset="utf8mb4",
            program_name=client_name(self.check.name),
        )
        try:
            await conn._connect()  # what aiomysql.connect() awaits; we keep the object to close it
        except BaseException:
            conn.close()
            raise
        self._conn = conn
        return conn

    def _discard(self) -> None:
        """Close the current connection without any network wait."""
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()

    def classify_error(self, exc: BaseException) -> Reason | None:
        return classify_mysql_error(exc)

    def secrets(self) -> Sequence[str]:
        return url_passwords(self.check.target)

    @classmethod
    def validate_target(cls, target: str | None) -> str | None:
        if not target:
            raise ValueError(f"a mysql check needs a target URL, e.g. {EXAMPLE_TARGET}")
        parse_mysql_url(target)
        return target


def _is_stale(conn: Any) -> bool:
    """True when the server closed an idle connection (restart, wait_timeout).

    The same test aiomysql's own pool makes before handing out a free connection.
    """
    reader = conn._reader
    return bool(conn.closed or reader is None or reader.at_eof() or getattr(reader, "eof_received", False))


def _lower_keys(rows: Mapping[Any, Any]) -> dict[str, str]:
    """SHOW output as ``{lowercase name: text value}`` (servers differ in case)."""
    return {str(key).lower(): _text(value) for key, value in rows.items()}


def _text(value: Any) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes | bytearray) else str(value)


def _number(values: Mapping[str, str], key: str) -> float | None:
    try:
        return float(values[key])
    except (KeyError, ValueError):
        return None


def parse_status(text: str) -> float | None:
    """mysqld_exporter's ``parseStatus``: ON/OFF and friends, dates, and numbers as Go parses them.

    (Its log-file branch parses the whole value as a number too, so ``binlog.000012`` and
    ``8.0.36`` are text, not numbers.) Numbers are tried before dates: they are most values, and a
    date never reads as a number.
    """
    word = _WORDS.get(text.lower())
    if word is not None:
        return word
    if text and text.strip() == text and "_" not in text:  # Go's ParseFloat takes neither
        try:
            return float(text)
        except ValueError:
            pass
    if ":" in text and len(text) <= _LONGEST_DATE:
        for fmt in _TIME_FORMATS:
            try:
                return float(calendar.timegm(time.strptime(text, fmt)))
            except ValueError:
                continue
    return None


def _generic_spec(prefix: str, key: str, template: tuple[str, MetricType]) -> MetricSpec | None:
    """``mysql_global_status_<key>`` / ``mysql_global_variables_<key>``, one spec per name, cached."""
    name = prefix + key
    spec = _generic.get(name)
    if spec is None:
        if len(_generic) >= MAX_GENERIC_FAMILIES:
            return None
        spec = _generic[name] = MetricSpec(name, template[0], type=template[1], exporter=EXPORTER)
    return spec


def _key(variable: str) -> str:
    return _INVALID_NAME_CHARS.sub("_", variable).lower()


def _declared_generic_families() -> tuple[MetricSpec, ...]:
    """The generic families this collector asks the server for, declared up front (dashboards, catalogue)."""
    specs = []
    for prefix, names, template in (
        ("mysql_global_status_", STATUS, _GENERIC_STATUS),
        ("mysql_global_variables_", VARIABLES, _GENERIC_VARIABLE),
    ):
        for name in names:
            spec = None if name in MYSQL_VERSION_INFO.labels else _generic_spec(prefix, _key(name), template)
            if spec is not None:
                specs.append(spec)
    return tuple(specs)


GENERIC_FAMILIES: tuple[MetricSpec, ...] = _declared_generic_families()


# status variable -> (family, label values), or None for rows the exporter skips; worked out once
# per name (the regex and name clean-up were a quarter of a probe's CPU), bounded like _generic.
_status_routes: dict[str, tuple[MetricSpec, tuple[str, ...]] | None] = {}


def _status_route(raw_key: str) -> tuple[MetricSpec, tuple[str, ...]] | None:
    """Where mysqld_exporter puts one status variable (global_status.go)."""
    key = _key(raw_key)
    group = _STATUS_GROUPS.match(key)
    if group is None:
        spec = _generic_spec("mysql_global_status_", key, _GENERIC_STATUS)
        return (spec, ()) if spec is not None else None
    prefix, rest = group.groups()
    if prefix in _LABELLED:
        return _LABELLED[prefix], (rest,)
    if rest in _BUFFER_POOL_STATES:
        return MYSQL_BUFFER_POOL_PAGES, (rest,)
    if rest == "dirty":
        return MYSQL_BUFFER_POOL_DIRTY_PAGES, ()
    if rest == "total":
        return None
    return MYSQL_BUFFER_POOL_PAGE_CHANGES, (rest,)


def status_samples(status: Mapping[str, str]) -> list[Sample]:
    """SHOW GLOBAL STATUS the way mysqld_exporter exposes it (global_status.go)."""
    samples: list[Sample] = []
    for raw_key, text in status.items():
        value = parse_status(text)
        if value is None:
            continue
        if raw_key in _status_routes:
            route = _status_routes[raw_key]
        else:
            route = _status_route(raw_key)
            if len(_status_routes) < MAX_GENERIC_FAMILIES:
                _status_routes[raw_key] = route
        if route is not None:
            samples.append(Sample(route[0], value, route[1]))
    return samples


def variables_samples(variables: Mapping[str, str]) -> list[Sample]:
    """SHOW GLOBAL VARIABLES the way mysqld_exporter exposes it (global_variables.go)."""
    samples: list[Sample] = []
    text_items: dict[str, str] = {}
    for raw_key, text in variables.items():
        key = _key(raw_key)
        value = parse_status(text)
        if value is None:
            text_items[key] = text
            continue
        spec = _generic_spec("mysql_global_variables_", key, _GENERIC_VARIABLE)
        if spec is not None:
            samples.append(Sample(spec, value))
    labels = tuple(text_items.get(label, "") for label in MYSQL_VERSION_INFO.labels)
    samples.append(Sample(MYSQL_VERSION_INFO, 1.0, labels))
    return samples


def observe(response_time: float, status: Mapping[str, str], variables: Mapping[str, str]) -> Observation:
    """Turn SHOW GLOBAL STATUS / VARIABLES output into measurements and samples."""
    samples = status_samples(status) + variables_samples(variables)
    max_connections = _number(variables, "max_connections")
    read_only = variables.get("read_only", "").upper() in ("ON", "1")
    version = variables.get("version", "")
    measurements = {"responseTime": Measurement(response_time, UNIT_SECONDS)}
    connections = _number(status, "threads_connected")
    if connections is not None:
        measurements["connections"] = Measurement(connections)
        if max_connections:
            measurements["connectionsUsedRatio"] = Measurement(connections / max_connections, UNIT_RATIO)
    info = {
        "version": version,
        "flavor": "mariadb" if "mariadb" in version.lower() else "mysql",
        "readOnly": "true" if read_only else "false",
    }
    return Observation(measurements=measurements, samples=samples, info=info)


# MySQL error code -> reason (client codes 2xxx come from pymysql/aiomysql, server codes from the server)
ERROR_CODE_REASONS: Mapping[int, Reason] = {
    ER.ACCESS_DENIED_ERROR: Reason.AUTH,  # 1045 wrong user or password
    ER.DBACCESS_DENIED_ERROR: Reason.AUTH,  # 1044 no rights on the database
    ER.SPECIFIC_ACCESS_DENIED_ERROR: Reason.AUTH,  # 1227
    ER.TABLEACCESS_DENIED_ERROR: Reason.AUTH,  # 1142
    1698: Reason.AUTH,  # ER_ACCESS_DENIED_NO_PASSWORD_ERROR (e.g. root via unix_socket plugin)
    ER.CON_COUNT_ERROR: Reason.UNHEALTHY,  # 1040 too many connections
    ER.HOST_IS_BLOCKED: Reason.UNHEALTHY,  # 1129 max_connect_errors reached
    ER.SERVER_SHUTDOWN: Reason.CONNECT,  # 1053
    CR.CR_CONNECTION_ERROR: Reason.CONNECT,  # 2002 unix socket
    CR.CR_CONN_HOST_ERROR: Reason.CONNECT,  # 2003 refused / unreachable / connect timeout
    CR.CR_UNKNOWN_HOST: Reason.CONNECT,  # 2005
    CR.CR_SERVER_GONE_ERROR: Reason.CONNECT,  # 2006
    CR.CR_SERVER_LOST: Reason.CONNECT,  # 2013
    CR.CR_COMMANDS_OUT_OF_SYNC: Reason.PROTOCOL,  # 2014
    CR.CR_MALFORMED_PACKET: Reason.PROTOCOL,  # 2027
}


def classify_mysql_error(exc: BaseException) -> Reason | None:
    """pymysql/aiomysql exception -> reason; ``None`` leaves it to the generic mapping."""
    if isinstance(exc, pymysql.err.MySQLError) and exc.args and isinstance(exc.args[0], int):
        reason = ERROR_CODE_REASONS.get(exc.args[0])
        if reason is not None:
            return reason
    if isinstance(exc, pymysql.err.InternalError | pymysql.err.InterfaceError):
        return Reason.PROTOCOL  # e.g. packet sequence errors, "Not connected"
    if isinstance(exc, TimeoutError):
        return Reason.TIMEOUT
    if isinstance(exc, OSError):
        return Reason.CONNECT
    return None


def url_passwords(url: str | None) -> tuple[str, ...]:
    """The password in a URL, decoded and as written, for redaction."""
    if not url:
        return ()
    raw = urlsplit(url).password
    if not raw:
        return ()
    return tuple(dict.fromkeys((unquote(raw), raw)))
