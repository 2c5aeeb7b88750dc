"""Kind name -> collector class, imported lazily so a missing optional driver costs nothing.

Modelled on sentry-python's ``DidNotEnable``: a kind whose driver is not installed raises
``CollectorUnavailable``; the configuration layer decides whether that is an error (asked for) or a
skipped default.
"""

from __future__ import annotations

import importlib

from collectors.base import Collector

# kind -> (module, class name, pip extra that brings its driver)
_REGISTRY: dict[str, tuple[str, str, str]] = {
    "postgres": ("collectors.postgres", "PostgresCollector", "postgres"),
    "mysql": ("collectors.mysql", "MySQLCollector", "mysql"),
    "redis": ("collectors.redis", "RedisCollector", "redis"),
    "bullmq": ("collectors.bullmq", "BullMQCollector", "redis"),
    "celery": ("collectors.celery", "CeleryCollector", "redis"),
    "rq": ("collectors.rq", "RQCollector", "redis"),
    "rabbitmq": ("collectors.rabbitmq", "RabbitMQCollector", "rabbitmq"),
    "http": ("collectors.http", "HTTPCollector", ""),
    "tcp": ("collectors.tcp", "TCPCollector", ""),
    "host": ("collectors.host", "HostCollector", ""),
    "process": ("collectors.process", "ProcessCollector", ""),
}

KNOWN_KINDS: tuple[str, ...] = tuple(sorted(_REGISTRY))


class CollectorUnavailable(Exception):
    """The collector's driver library is not installed."""


def load_collector(kind: str) -> type[Collector]:  # type: ignore[type-arg]
    """Return the collector class for ``kind``; ``KeyError`` for unknown kinds."""
    module_name, class_name, extra = _REGISTRY[kind]
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and exc.name.startswith("collectors"):
            raise
        hint = f"pip install 'observability-sidecar[{extra}]'" if extra else "reinstall the sidecar"
        raise CollectorUnavailable(f"the {kind} collector needs {exc.name!r}: {hint}") from exc
    cls: type[Collector] = getattr(module, class_name)  # type: ignore[type-arg]
    return cls
