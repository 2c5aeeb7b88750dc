"""Shared fixtures: throwaway Redis, PostgreSQL and MariaDB servers (see ``tests/servers.py``).

Each fixture is function-scoped and yields a started server; it is always stopped and its data
removed afterwards, resumed first if a test paused it. Server options come from indirect
parametrisation, e.g.
``@pytest.mark.parametrize("postgres_server", [{"auth": "scram-sha-256", "password": "pw"}], indirect=True)``.
A missing server binary skips the test, or fails it under ``CI=true``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from tests.servers import MariaDBServer, PostgresServer, RedisServer, Server, find_binary, require_binary

ROOT = Path(__file__).resolve().parent.parent


def pytest_sessionstart(session: pytest.Session) -> None:
    """Refuse to test stale native code: a compiled module shadows its edited ``.py`` (setup.py)."""
    stale = [
        str(source.relative_to(ROOT))
        for native in (ROOT / "sidecar").rglob("*.so")
        for suffix in (".py", ".c")  # mypyc's modules, and the one written in C (head_scan)
        if (source := native.with_name(native.name.split(".", 1)[0] + suffix)).exists()
        and source.stat().st_mtime > native.stat().st_mtime
    ]
    if stale:
        pytest.exit(
            f"compiled modules are older than their source ({', '.join(stale)}): rebuild them with "
            "`.venv/bin/pip install -e .` (tests/run.sh does) or remove the .so files",
            returncode=4,
        )


def _serve(server: Server) -> Iterator[Any]:
    try:
        server.start()
        yield server
    finally:
        server.resume()
        server.close()


def _params(request: pytest.FixtureRequest) -> dict[str, Any]:
    return dict(getattr(request, "param", None) or {})


@pytest.fixture(scope="module")
def redis_url() -> Iterator[str]:
    """One throwaway redis-server per test module, for tests that share it and flush it after each."""
    require_binary("redis-server")
    with RedisServer() as server:
        yield server.url


@pytest.fixture
def flush_redis_after(redis_url: str) -> Iterator[None]:
    """Empty the module's Redis after a test (use with ``pytest.mark.usefixtures``)."""
    yield
    with redis.Redis.from_url(redis_url) as client:
        client.flushall()


@pytest.fixture
def redis_server(request: pytest.FixtureRequest) -> Iterator[RedisServer]:
    require_binary("redis-server")
    yield from _serve(RedisServer(**_params(request)))


@pytest.fixture
def postgres_server(request: pytest.FixtureRequest) -> Iterator[PostgresServer]:
    require_binary("initdb")
    require_binary("postgres")
    yield from _serve(PostgresServer(**_params(request)))


@pytest.fixture
def mariadb_server(request: pytest.FixtureRequest) -> Iterator[MariaDBServer]:
    require_binary("mariadb-install-db")
    if find_binary("mysqld") is None:  # older installs have only mysqld
        require_binary("mariadbd")
    yield from _serve(MariaDBServer(**_params(request)))
