"""Typed application keys: every piece of shared state an aiohttp app holds, in one place."""

from __future__ import annotations

from aiohttp import web
from prometheus_client import CollectorRegistry

from sidecar.config import Settings
from sidecar.core.http_metrics import HttpMetrics
from sidecar.correlation.index import CorrelationIndex
from sidecar.logs.otlp_export import LogExporter
from sidecar.logs.runtime import LogRuntime
from sidecar.probing.health import HealthModel
from sidecar.probing.outlier import OutlierDetector
from sidecar.probing.results import ResultStore
from sidecar.probing.scheduler import Scheduler
from sidecar.sentry.forwarder import SentryForwarder
from sidecar.tracing.runtime import TracingRuntime

SETTINGS = web.AppKey("settings", Settings)
STORE = web.AppKey("store", ResultStore)
HEALTH = web.AppKey("health", HealthModel)
REGISTRY = web.AppKey("registry", CollectorRegistry)
SCHEDULER = web.AppKey("scheduler", Scheduler)
HTTP_METRICS = web.AppKey("http_metrics", HttpMetrics)
CORRELATION = web.AppKey("correlation", CorrelationIndex)
LOGS = web.AppKey("logs", LogRuntime)
SENTRY = web.AppKey("sentry", SentryForwarder)
TRACING = web.AppKey("tracing", TracingRuntime)  # only when tracing is on
LOG_EXPORT = web.AppKey("log_export", LogExporter)  # only when OTLP log export is on
OUTLIER = web.AppKey("outlier", OutlierDetector)  # only with an upstream and app_check.outlier on
