"""What the console reads, in one object under one app key, built at start-up by ``wiring``.

The recorders here (check history, traffic windows, recent Sentry events, the log tail) must exist from
start-up, since they remember what happened before anyone opened the console; they are small and cost
nothing per request. The pages, the rendering and the login live in modules that load on first use.
"""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web

from sidecar.config import Settings
from sidecar.console.auth import Sessions
from sidecar.console.errors import RecentEvents
from sidecar.console.history import CheckHistory
from sidecar.console.queues import FailedJobsReader
from sidecar.console.tail import LogTail
from sidecar.console.traffic import TrafficWindows
from sidecar.correlation.index import CorrelationIndex
from sidecar.probing.health import HealthModel
from sidecar.probing.results import ResultStore
from sidecar.sentry.forwarder import SentryForwarder


@dataclass(slots=True)
class ConsoleState:
    settings: Settings
    store: ResultStore
    health: HealthModel
    index: CorrelationIndex
    sentry: SentryForwarder | None
    history: CheckHistory
    traffic: TrafficWindows
    events: RecentEvents
    tail: LogTail | None
    failed_jobs: FailedJobsReader
    sessions: Sessions


CONSOLE = web.AppKey("console", ConsoleState)
