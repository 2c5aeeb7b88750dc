"""The log flow's moving parts for one app: pipeline, per-source channels, readers, checkpoints, re-emit.

``start`` and ``stop`` are the whole lifecycle, called from one cleanup context. Stopping cancels the
readers and consumers and then saves offsets: batches read but not yet processed are simply read
again at the next start, because offsets only ever advance after processing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence

from prometheus_client import CollectorRegistry

from sidecar.core.http_metrics import HttpMetrics
from sidecar.correlation.index import CorrelationIndex
from sidecar.logs.metrics import LogMetrics
from sidecar.logs.parse import LogParser
from sidecar.logs.pipeline import LogPipeline
from sidecar.logs.reemit import Reemitter
from sidecar.logs.rule_metrics import RuleMetrics
from sidecar.logs.rule_settings import LogRule
from sidecar.logs.rules import RuleSet
from sidecar.logs.settings import SOURCE_NAME, LogSettings
from sidecar.logs.sources.channel import SourceChannel
from sidecar.logs.sources.checkpoint import CheckpointStore
from sidecar.logs.sources.stdin import SOURCE as STDIN_SOURCE
from sidecar.logs.sources.stdin import StdinSource
from sidecar.logs.sources.tail import FileTailer

log = logging.getLogger(__name__)

HTTP_SOURCE = "http"
MAX_HTTP_SOURCES = 32


class LogRuntime:
    """Everything the log sources need, built from ``LogSettings``; nothing runs until ``start``."""

    def __init__(
        self,
        settings: LogSettings,
        registry: CollectorRegistry,
        http: HttpMetrics | None = None,
        correlation: CorrelationIndex | None = None,
        stdin_fd: int | None = None,
        route_templates: Sequence[str] = (),
    ) -> None:
        self.settings = settings
        self.metrics = LogMetrics(registry)
        self.rule_metrics = RuleMetrics()
        registry.register(self.rule_metrics)
        self._by_source: dict[str, list[SourceChannel]] = {}
        self.reemit = Reemitter(self.metrics.drop) if settings.reemit else None
        self.pipeline = LogPipeline(
            LogParser(settings.fields, settings.max_line_bytes),
            self.metrics,
            http if settings.access_metrics else None,
            correlation if settings.correlate else None,
            self.reemit,
        )
        self.rules = RuleSet.compile(settings.rules, self.rule_metrics, route_templates)
        self.pipeline.rules = self.rules if len(self.rules) else None
        self.checkpoints = CheckpointStore(settings.state_dir if settings.files else None)
        self.file_channels = [self._channel(entry.source) for entry in settings.files]
        self.tailer = (
            FileTailer(settings, self.file_channels, self.metrics, self.checkpoints)
            if settings.files
            else None
        )
        self.stdin = (
            StdinSource(self._channel(STDIN_SOURCE), settings.max_line_bytes, stdin_fd)
            if settings.stdin
            else None
        )
        self.ingesting = 0  # HTTP ingest requests in progress
        self._http_sources: set[str] = set()
        self._channels: list[SourceChannel] = [*self.file_channels]
        if self.stdin is not None:
            self._channels.append(self.stdin.channel)
        self._tasks: list[asyncio.Task[None]] = []
        self._discovery: asyncio.Task[None] | None = None
        self._checkpoint_lock = asyncio.Lock()

    def _channel(self, source: str) -> SourceChannel:
        channel = SourceChannel(source, self.settings.queue_batches, self.pipeline.consume, self.metrics.drop)
        same = self._by_source.setdefault(source, [])
        same.append(channel)  # entries may share a source label: the gauge sums their queues
        self.metrics.queue_batches.labels(source).set_function(lambda: sum(c.depth for c in same))
        return channel

    def reload_rules(self, rules: list[LogRule], route_templates: Sequence[str] = ()) -> None:
        """Swap in new rules; rules that did not change keep their counters and label values."""
        self.rules = RuleSet.compile(rules, self.rule_metrics, route_templates, previous=self.rules)
        self.pipeline.rules = self.rules if len(self.rules) else None
        self.settings.rules = rules

    def http_source(self, requested: str | None) -> str:
        """The ``source`` label for an ingest request: the caller's name while the set is small."""
        if not requested or not SOURCE_NAME.match(requested):
            return HTTP_SOURCE
        if requested in self._http_sources:
            return requested
        if len(self._http_sources) >= MAX_HTTP_SOURCES:
            return HTTP_SOURCE
        self._http_sources.add(requested)
        return requested

    async def start(self) -> None:
        if self.reemit is not None:
            self.reemit.start()
        for channel in self._channels:
            self._tasks.append(asyncio.create_task(channel.run(), name=f"logs {channel.source}"))
        if self.tailer is not None:
            await asyncio.to_thread(self.checkpoints.load)
            self._discovery = asyncio.create_task(self.tailer.run(), name="logs file discovery")
            self._tasks.append(asyncio.create_task(self._save_checkpoints(), name="logs checkpoints"))
        if self.stdin is not None:
            try:
                await self.stdin.start()
            except (OSError, ValueError) as exc:
                log.error(
                    "cannot read standard input; the stdin log source is off", extra={"error": str(exc)}
                )
        sources = [e.path for e in self.settings.files] + (["stdin"] if self.stdin is not None else [])
        if sources:
            log.info("log sources started", extra={"sources": sources})

    async def _save_checkpoints(self) -> None:
        while True:
            await asyncio.sleep(self.settings.checkpoint_interval)
            await self.save_checkpoints()

    async def save_checkpoints(self, *, final: bool = False) -> None:
        """Write offsets now if they changed (off the loop; one write at a time); ``final`` always writes."""
        async with self._checkpoint_lock:
            snapshot = self.checkpoints.snapshot(force=final)
            if snapshot is not None and not await asyncio.to_thread(self.checkpoints.write, snapshot):
                for entry in self.settings.files:
                    self.metrics.file_error(entry.source, "checkpoint_write")

    async def stop(self) -> None:
        if self.stdin is not None:
            await self.stdin.stop()
        if self._discovery is not None:  # first, so no follower starts while the others stop
            self._discovery.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._discovery
            self._discovery = None
        if self.tailer is not None:
            await self.tailer.stop()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        if self.tailer is not None:
            await self.save_checkpoints(final=True)
        if self.pipeline.access is not None:  # the last batches' request histograms, not left on a timer
            self.pipeline.access.flush()
        if self.reemit is not None:
            await asyncio.to_thread(self.reemit.close)
