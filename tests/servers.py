"""Throwaway real servers (Redis, PostgreSQL, MariaDB) on free loopback ports, for tests.

Each server lives in its own temporary directory (data, sockets, log) that ``close()`` removes.
``stop()`` keeps that directory so ``start()``/``restart()`` bring the same server back on the same
port. ``pause()``/``resume()`` send SIGSTOP/SIGCONT to the server and all its child processes
(PostgreSQL backends are their own process groups), which is how a hung dependency looks from
outside: TCP connects succeed (kernel backlog) but nothing ever answers.

Initialised data directories (``initdb``, ``mariadb-install-db``) are built once per process and
copied for each start, so a start costs well under a second. Every wait is bounded.

We may run as root: PostgreSQL refuses that, so its processes run as the ``postgres`` system user;
MariaDB switches to ``mysql`` itself with ``--user``.
"""

from __future__ import annotations

import atexit
import contextlib
import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import weakref
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType
from typing import IO, Literal, NoReturn, Self
from urllib.parse import quote

import psutil
import pytest

HOST = "127.0.0.1"
START_TIMEOUT = 30.0
STOP_TIMEOUT = 15.0
INIT_TIMEOUT = 120.0
_POLL = 0.05

PgAuth = Literal["trust", "md5", "scram-sha-256"]


# --------------------------------------------------------------------------------------------------
# small helpers


_HANDED_OUT: set[int] = set()


def free_port() -> int:
    """A TCP port that was free on 127.0.0.1 a moment ago (the kernel picked it).

    Never the same port twice in one test session: the kernel may pick a port it just released
    again, and two ports asked for together (a sidecar's listen and admin ports) then collide.
    """
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind((HOST, 0))
            port: int = sock.getsockname()[1]
        if port not in _HANDED_OUT:
            _HANDED_OUT.add(port)
            return port


def port_open(host: str, port: int, timeout: float = 0.2) -> bool:
    """True when something accepts TCP connections on ``host:port``."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def wait_port(host: str, port: int, timeout: float = START_TIMEOUT) -> None:
    """Wait until ``host:port`` accepts connections; ``TimeoutError`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not port_open(host, port):
        if time.monotonic() >= deadline:
            raise TimeoutError(f"nothing accepted connections on {host}:{port} within {timeout}s")
        time.sleep(_POLL)


def find_binary(name: str) -> str | None:
    """Path of a server binary: PATH, then the sbin and PostgreSQL version dirs Debian uses."""
    found = shutil.which(name)
    if found:
        return found
    candidates = [f"/usr/sbin/{name}", f"/usr/local/sbin/{name}"]
    candidates += sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), key=_pg_version_key, reverse=True)
    for candidate in candidates:
        if os.access(candidate, os.X_OK):
            return candidate
    return None


def _pg_version_key(path: str) -> tuple[int, ...]:
    """Sort key so /usr/lib/postgresql/16 beats /usr/lib/postgresql/9.6."""
    version = Path(path).parent.parent.name
    return tuple(int(part) for part in version.split(".") if part.isdigit())


def require_binary(name: str) -> str:
    """Return the binary's path; skip the test when it is missing, fail instead under ``CI=true``."""
    path = find_binary(name)
    if path is None:
        skip_or_fail(f"{name!r} is not installed (looked in PATH, /usr/sbin and /usr/lib/postgresql/*/bin)")
    return path


def skip_or_fail(reason: str) -> NoReturn:
    """Skip a test whose server or tool is missing, or fail it under ``CI=true`` (CI must provide it)."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{reason}; CI must provide it")
    pytest.skip(reason)


def _binary(name: str) -> str:
    path = find_binary(name)
    if path is None:
        raise FileNotFoundError(f"{name!r} not found; install it or skip via require_binary()")
    return path


def _is_root() -> bool:
    return os.geteuid() == 0


def _chown_tree(path: Path, user: str) -> None:
    """Give ``path`` and everything below it to ``user`` (only meaningful when we are root)."""
    if not _is_root():
        return
    entry = pwd.getpwnam(user)
    os.chown(path, entry.pw_uid, entry.pw_gid)
    for root, dirs, files in os.walk(path):
        for name in (*dirs, *files):
            os.lchown(os.path.join(root, name), entry.pw_uid, entry.pw_gid)


def _as_user(user: str) -> dict[str, object]:
    """``subprocess`` keyword arguments that drop root privileges to ``user``; empty when not root."""
    if not _is_root():
        return {}
    entry = pwd.getpwnam(user)
    return {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}


def _run(args: Sequence[str], *, user: str | None, timeout: float, stdin: str | None = None) -> None:
    """Run a set-up command to completion (bounded); raise with its output when it fails."""
    extra = _as_user(user) if user else {}
    result = subprocess.run(
        list(args),
        check=False,  # checked below, with the output in the message
        input=stdin.encode() if stdin is not None else None,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        timeout=timeout,
        cwd="/",
        **extra,  # type: ignore[call-overload]
    )
    if result.returncode != 0:
        output = result.stdout.decode(errors="replace")[-4000:]
        raise RuntimeError(f"{args[0]} exited with {result.returncode}:\n{output}")


# --------------------------------------------------------------------------------------------------
# session-wide caches of initialised data directories

_template_lock = threading.Lock()
_templates: dict[str, Path] = {}
_template_root: Path | None = None


def _template_dir(key: str, build: Callable[[Path], None]) -> Path:
    """Build the template ``key`` once per process (thread-safe); later calls return the cached dir."""
    global _template_root  # noqa: PLW0603 - one cache per test session, on purpose
    with _template_lock:
        if key in _templates:
            return _templates[key]
        if _template_root is None:
            _template_root = Path(tempfile.mkdtemp(prefix="sidecar-test-templates-"))
            _template_root.chmod(0o755)
            atexit.register(shutil.rmtree, _template_root, True)
        target = _template_root / key
        shutil.rmtree(target, ignore_errors=True)  # left by a build that failed earlier
        target.mkdir(mode=0o755)
        try:
            build(target)
        except BaseException:
            shutil.rmtree(target, ignore_errors=True)
            raise
        _templates[key] = target
        return target


# --------------------------------------------------------------------------------------------------
# the common server life cycle

_live: weakref.WeakSet[Server] = weakref.WeakSet()


@atexit.register
def _kill_leftovers() -> None:
    """Never leave a server behind, even when a test run is interrupted."""
    for server in list(_live):
        with contextlib.suppress(Exception):
            server.close()


class Server(ABC):
    """A real server process on ``127.0.0.1:<port>`` with its own temporary directory."""

    kind: str = "server"
    stop_signal: signal.Signals = signal.SIGTERM

    def __init__(self, port: int | None = None) -> None:
        self.host = HOST
        self.port = port or free_port()
        self._tmp: Path | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self._paused = False
        _live.add(self)

    # -- hooks for subclasses

    @abstractmethod
    def _prepare(self, tmp: Path) -> None:
        """Create the data directory (usually a copy of a template) inside ``tmp``."""

    @abstractmethod
    def _command(self, tmp: Path) -> list[str]:
        """The server command line."""

    @abstractmethod
    def _ready(self, tmp: Path) -> bool:
        """True once the server answers; polled until ``START_TIMEOUT``."""

    def _run_as(self) -> str | None:
        """System user the server process must run as (when we are root)."""
        return None

    @property
    @abstractmethod
    def url(self) -> str:
        """Connection URL for the configured (test) user."""

    # -- life cycle

    @property
    def tmp_dir(self) -> Path:
        if self._tmp is None:
            self._tmp = Path(tempfile.mkdtemp(prefix=f"sidecar-test-{self.kind}-"))
            self._tmp.chmod(0o755)  # the server's own user must be able to enter it
            self._prepare(self._tmp)
        return self._tmp

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def paused(self) -> bool:
        return self._paused

    def start(self) -> Self:
        """Start the server (no-op when running) and wait until it answers."""
        if self.running:
            return self
        tmp = self.tmp_dir
        self._log = (tmp / "server.log").open("wb")
        extra = _as_user(user) if (user := self._run_as()) else {}
        self._proc = subprocess.Popen(
            self._command(tmp),
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # a Ctrl-C of pytest must not reach it before we stop it
            cwd=tmp,
            **extra,  # type: ignore[call-overload]
        )
        try:
            self._wait_ready(tmp)
        except BaseException:
            self._kill()
            raise
        return self

    def _wait_ready(self, tmp: Path) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            assert self._proc is not None
            if self._proc.poll() is not None:
                raise RuntimeError(
                    f"{self.kind} exited with {self._proc.returncode} during start:\n{self.log_tail()}"
                )
            if self._ready(tmp):
                return
            if time.monotonic() >= deadline:
                raise TimeoutError(f"{self.kind} not ready within {START_TIMEOUT}s:\n{self.log_tail()}")
            time.sleep(_POLL)

    def stop(self) -> None:
        """Shut the server down (resuming it first if paused) and wait for it, bounded."""
        proc = self._proc
        if proc is None:
            return
        self.resume()
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(self.stop_signal)
            try:
                proc.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self._kill()
        self._proc = None
        if self._log is not None:
            self._log.close()
            self._log = None

    def restart(self) -> None:
        """Stop, then start again on the same port with the same data."""
        self.stop()
        self.start()

    def close(self) -> None:
        """Stop and remove the temporary directory."""
        self.stop()
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None

    def pause(self) -> None:
        """SIGSTOP the server and its children: it accepts TCP (backlog) but never answers."""
        if self._proc is None or self._paused:
            return
        # Parent first so it cannot fork a new child that we would miss.
        for proc in self._process_tree():
            with contextlib.suppress(psutil.Error):
                proc.send_signal(signal.SIGSTOP)
        self._paused = True

    def resume(self) -> None:
        """SIGCONT everything ``pause()`` stopped."""
        if self._proc is None or not self._paused:
            return
        for proc in reversed(self._process_tree()):
            with contextlib.suppress(psutil.Error):
                proc.send_signal(signal.SIGCONT)
        self._paused = False

    def _process_tree(self) -> list[psutil.Process]:
        if self._proc is None:
            return []
        try:
            parent = psutil.Process(self._proc.pid)
            return [parent, *parent.children(recursive=True)]
        except psutil.NoSuchProcess:
            return []

    def _kill(self) -> None:
        """SIGKILL the server and every child; bounded wait."""
        tree = self._process_tree()
        for proc in tree:
            with contextlib.suppress(psutil.Error):
                proc.kill()
        psutil.wait_procs(tree, timeout=5)
        if self._proc is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._proc.wait(timeout=5)
        self._paused = False

    def log_tail(self, lines: int = 40) -> str:
        """Last lines of the server's output, for error messages."""
        if self._tmp is None:
            return ""
        try:
            text = (self._tmp / "server.log").read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "paused" if self._paused else "running" if self.running else "stopped"
        return f"<{type(self).__name__} {self.host}:{self.port} {state}>"


def _cred(user: str | None, password: str | None) -> str:
    """``user:password@`` for a URL, percent-encoded; empty when neither is set."""
    if not user and not password:
        return ""
    text = quote(user or "", safe="")
    if password is not None:
        text += ":" + quote(password, safe="")
    return text + "@"


# --------------------------------------------------------------------------------------------------
# Redis


class RedisServer(Server):
    """``redis-server`` without persistence; optional ``requirepass``, ACL user and unix socket."""

    kind = "redis"

    def __init__(
        self,
        port: int | None = None,
        *,
        password: str | None = None,
        acl_user: str | None = None,
        acl_password: str | None = None,
        unix_socket: bool = False,
        extra_args: Sequence[str] = (),
    ) -> None:
        super().__init__(port)
        self.password = password
        self.acl_user = acl_user
        self.acl_password = acl_password
        self.unix_socket = unix_socket
        self.extra_args = list(extra_args)

    @property
    def socket_path(self) -> Path | None:
        return self.tmp_dir / "redis.sock" if self.unix_socket else None

    def _prepare(self, tmp: Path) -> None:
        (tmp / "data").mkdir()

    def _command(self, tmp: Path) -> list[str]:
        cmd = [_binary("redis-server"), "--port", str(self.port), "--bind", HOST]
        cmd += ["--save", "", "--appendonly", "no", "--dir", str(tmp / "data"), "--daemonize", "no"]
        cmd += ["--logfile", "", "--protected-mode", "no"]
        if self.password is not None:
            cmd += ["--requirepass", self.password]
        if self.acl_user is not None:
            secret = "nopass" if self.acl_password is None else f">{self.acl_password}"
            cmd += ["--user", self.acl_user, "on", secret, "~*", "&*", "+@all"]
        if self.socket_path is not None:
            cmd += ["--unixsocket", str(self.socket_path), "--unixsocketperm", "700"]
        return cmd + self.extra_args

    def _ready(self, tmp: Path) -> bool:
        """Redis answers PING (or NOAUTH/LOADING) once it serves clients."""
        try:
            with socket.create_connection((self.host, self.port), timeout=0.5) as sock:
                sock.sendall(b"PING\r\n")
                reply = sock.recv(64)
        except OSError:
            return False
        return reply.startswith((b"+PONG", b"-NOAUTH", b"-WRONGPASS", b"-ERR"))

    @property
    def url(self) -> str:
        """``redis://`` URL with the ACL user, else the ``requirepass`` password, if any."""
        if self.acl_user is not None:
            cred = _cred(self.acl_user, self.acl_password or "")
        else:
            cred = _cred(None, self.password)
        return f"redis://{cred}{self.host}:{self.port}/0"

    @property
    def unix_url(self) -> str:
        if self.socket_path is None:
            raise ValueError("RedisServer(unix_socket=True) is needed for a unix:// URL")
        cred = _cred(self.acl_user, self.acl_password) if self.acl_user else _cred(None, self.password)
        return f"unix://{cred}{self.socket_path}?db=0"

    @property
    def admin_url(self) -> str:
        """URL that can always run admin commands (the default user)."""
        return f"redis://{_cred(None, self.password)}{self.host}:{self.port}/0"


# --------------------------------------------------------------------------------------------------
# PostgreSQL


def _build_pg_template(target: Path) -> None:
    """``initdb`` once: trust auth, UTF-8, no fsync (tests only)."""
    data = target / "data"
    data.mkdir(mode=0o700)
    _chown_tree(target, "postgres")
    _run(
        [
            _binary("initdb"),
            *("-D", str(data), "--auth=trust", "--username=postgres", "--encoding=UTF8", "--locale=C"),
            *("--no-sync", "--no-instructions"),
        ],
        user="postgres",
        timeout=INIT_TIMEOUT,
    )


class PostgresServer(Server):
    """A ``postgres`` cluster copied from a cached ``initdb`` template.

    ``auth`` applies to TCP connections; the unix socket always trusts, so tests have an admin path
    (``admin_url``) even when the TCP user's password is wrong on purpose. With a password auth,
    ``user`` (default ``app``, a ``pg_monitor`` member) is created with ``password``.
    """

    kind = "postgres"
    stop_signal = signal.SIGINT  # fast shutdown: disconnect clients instead of waiting for them

    def __init__(
        self,
        port: int | None = None,
        *,
        auth: PgAuth = "trust",
        user: str | None = None,
        password: str | None = None,
        database: str = "postgres",
        max_connections: int = 50,
        settings: dict[str, str] | None = None,
    ) -> None:
        super().__init__(port)
        if auth != "trust" and not password:
            raise ValueError(f"auth={auth!r} needs a password")
        self.auth: PgAuth = auth
        self.user = user or ("postgres" if auth == "trust" else "app")
        self.password = password
        self.database = database
        self.max_connections = max_connections
        self.settings = dict(settings or {})

    @property
    def socket_dir(self) -> Path:
        return self.tmp_dir / "sock"

    def _run_as(self) -> str:
        return "postgres"

    def _prepare(self, tmp: Path) -> None:
        template = _template_dir("postgres", _build_pg_template)
        data = tmp / "data"
        shutil.copytree(template / "data", data, symlinks=True)
        (tmp / "sock").mkdir()
        hba = "local all all trust\n" + f"host all all 127.0.0.1/32 {self.auth}\n"
        (data / "pg_hba.conf").write_text(hba)
        _chown_tree(tmp, "postgres")
        if self.auth != "trust" or self.user != "postgres":
            self._create_role(data)

    def _create_role(self, data: Path) -> None:
        """Create the test role in single-user mode, before the server listens."""
        encryption = "md5" if self.auth == "md5" else "scram-sha-256"
        password = "NULL" if self.password is None else "'" + self.password.replace("'", "''") + "'"
        ident = '"' + self.user.replace('"', '""') + '"'
        if self.user == "postgres":
            sql = f"ALTER ROLE postgres PASSWORD {password};\n"
        else:
            sql = f"CREATE ROLE {ident} LOGIN PASSWORD {password} IN ROLE pg_monitor;\n"
        _run(
            [
                _binary("postgres"),
                *("--single", "-D", str(data), "-c", f"password_encryption={encryption}"),
                *("-c", "fsync=off", "postgres"),
            ],
            user="postgres",
            timeout=INIT_TIMEOUT,
            stdin=sql,
        )

    def _command(self, tmp: Path) -> list[str]:
        settings = {
            "listen_addresses": HOST,
            "fsync": "off",
            "synchronous_commit": "off",
            "full_page_writes": "off",
            "shared_buffers": "16MB",
            "max_connections": str(self.max_connections),
            "logging_collector": "off",
            "unix_socket_permissions": "0777",
            **self.settings,
        }
        cmd = [_binary("postgres"), "-D", str(tmp / "data"), "-p", str(self.port), "-k", str(tmp / "sock")]
        for key, value in settings.items():
            cmd += ["-c", f"{key}={value}"]
        return cmd

    def _ready(self, tmp: Path) -> bool:
        """``postmaster.pid`` says ``ready``, what ``pg_ctl -w`` checks.

        No test connection: a short-lived one could still be counted by the first probe of a test.
        """
        try:
            lines = (tmp / "data" / "postmaster.pid").read_text().splitlines()
        except OSError:
            return False
        return len(lines) >= 8 and lines[7].strip() == "ready"

    @property
    def url(self) -> str:
        return f"postgresql://{_cred(self.user, self.password)}{self.host}:{self.port}/{self.database}"

    @property
    def admin_url(self) -> str:
        """Superuser over the unix socket (always trust)."""
        return f"postgresql://postgres@/{self.database}?host={self.socket_dir}&port={self.port}"


# --------------------------------------------------------------------------------------------------
# MariaDB / MySQL

_MARIADB_SIZING = ["--innodb-log-file-size=8M", "--innodb-buffer-pool-size=16M"]


def _build_mariadb_template(target: Path) -> None:
    """``mariadb-install-db`` once: root without password, no test database."""
    data = target / "data"
    data.mkdir()
    _chown_tree(target, "mysql")
    cmd = [_binary("mariadb-install-db"), "--no-defaults", f"--datadir={data}"]
    cmd += ["--auth-root-authentication-method=normal", "--skip-test-db", "--skip-name-resolve"]
    cmd += _MARIADB_SIZING
    if _is_root():
        cmd.append("--user=mysql")
    _run(cmd, user=None, timeout=INIT_TIMEOUT)


def _mariadb_binary() -> str:
    return find_binary("mariadbd") or _binary("mysqld")


def _sql_str(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "''") + "'"


class MariaDBServer(Server):
    """``mariadbd`` copied from a cached ``mariadb-install-db`` template.

    ``root`` has no password (from 127.0.0.1 and the socket). With ``user``/``password``, that user is
    (re)created at every start through ``--init-file`` with PROCESS privilege (enough for a probe).
    """

    kind = "mariadb"

    def __init__(
        self,
        port: int | None = None,
        *,
        user: str | None = None,
        password: str | None = None,
        max_connections: int = 50,
        extra_args: Sequence[str] = (),
    ) -> None:
        super().__init__(port)
        self.user = user or "root"
        self.password = password
        self.max_connections = max_connections
        self.extra_args = list(extra_args)

    @property
    def socket_path(self) -> Path:
        return self.tmp_dir / "mysqld.sock"

    def _prepare(self, tmp: Path) -> None:
        template = _template_dir("mariadb", _build_mariadb_template)
        shutil.copytree(template / "data", tmp / "data", symlinks=True)
        (tmp / "tmp").mkdir()
        sql = [
            "CREATE USER IF NOT EXISTS 'root'@'127.0.0.1';",
            "GRANT ALL ON *.* TO 'root'@'127.0.0.1' WITH GRANT OPTION;",
        ]
        if self.user != "root":
            name = _sql_str(self.user)
            sql.append(f"CREATE OR REPLACE USER {name}@'%' IDENTIFIED BY {_sql_str(self.password or '')};")
            sql.append(f"GRANT PROCESS ON *.* TO {name}@'%';")
        (tmp / "init.sql").write_text("\n".join(sql) + "\n")
        _chown_tree(tmp, "mysql")

    def _command(self, tmp: Path) -> list[str]:
        cmd = [_mariadb_binary(), "--no-defaults", f"--datadir={tmp / 'data'}", f"--port={self.port}"]
        cmd += [f"--bind-address={HOST}", f"--socket={self.socket_path}", f"--pid-file={tmp / 'mysqld.pid'}"]
        cmd += [f"--tmpdir={tmp / 'tmp'}", f"--init-file={tmp / 'init.sql'}", "--skip-log-bin"]
        cmd += ["--skip-name-resolve", f"--max-connections={self.max_connections}", *_MARIADB_SIZING]
        cmd += ["--innodb-use-native-aio=0", "--skip-host-cache"]
        if _is_root():
            cmd.append("--user=mysql")
        return cmd + self.extra_args

    def _ready(self, tmp: Path) -> bool:
        """The log says so after the init file ran and the sockets listen.

        No test connection: an aborted one stays in Threads_connected for a moment.
        """
        try:
            log = (tmp / "server.log").read_bytes()
        except OSError:
            return False
        return b"ready for connections" in log

    @property
    def url(self) -> str:
        return f"mysql://{_cred(self.user, self.password)}{self.host}:{self.port}/"

    @property
    def admin_url(self) -> str:
        return f"mysql://root@{self.host}:{self.port}/"
