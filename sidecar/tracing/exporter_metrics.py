"""Counting what the span pipeline does: exported, dropped (by reason) and failed exports.

The SDK's ``BatchSpanProcessor`` already keeps requests fast: ``on_end`` appends to a bounded deque and
a worker thread exports. But when the queue is full it drops the oldest span with no more than a
rate-limited log line, and a failed export is only logged. Here the processor is subclassed to count
queue-full drops and the exporter is wrapped to count what was sent and what was lost, so
``/metrics`` shows it: ``sidecar_otel_spans_exported_total``,
``sidecar_otel_spans_dropped_total{reason}`` (``queue_full``, ``export_failed``, ``shutdown``) and
``sidecar_otel_export_failures_total``.
"""

from __future__ import annotations

import inspect
import logging
import threading
import time
from collections.abc import Sequence
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from prometheus_client import CollectorRegistry, Counter, Gauge

from sidecar.tracing.otlp_encoding import EncodedSpan, SpanEncoder

log = logging.getLogger(__name__)

DROP_REASONS = ("queue_full", "export_failed", "shutdown")
MIN_BACKOFF_SECONDS = 1.0
MAX_BACKOFF_SECONDS = 30.0


class ExportMetrics:
    """The ``sidecar_otel_*`` families on the app registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.exported = Counter(
            "sidecar_otel_spans_exported",
            "Spans the OTLP endpoint accepted.",
            registry=registry,
        )
        self.dropped = Counter(
            "sidecar_otel_spans_dropped",
            "Spans lost before reaching the OTLP endpoint, by reason (queue_full, export_failed, shutdown).",
            ["reason"],
            registry=registry,
        )
        self.failures = Counter(
            "sidecar_otel_export_failures",
            "OTLP export requests that failed (after the exporter's own retries).",
            registry=registry,
        )
        self.queued = Gauge(
            "sidecar_otel_queue_spans",
            "Spans waiting in the export queue.",
            registry=registry,
        )
        for reason in DROP_REASONS:
            self.dropped.labels(reason)
        self.queue_full = self.dropped.labels("queue_full")
        self.export_failed = self.dropped.labels("export_failed")
        self.shutdown_lost = self.dropped.labels("shutdown")


class CountingExporter(SpanExporter):
    """Wraps the OTLP exporter: a batch is either exported or dropped with ``export_failed``.

    After a failed batch (the SDK exporter has already retried it within its timeout) the next one
    waits, 1 s doubling to 30 s: a collector that refuses connections at once would otherwise have
    the export thread retrying in a tight loop, taking CPU and the GIL from the event loop. While it
    waits the queue fills and new spans are dropped there (``queue_full``), which costs nothing.
    """

    def __init__(self, inner: SpanExporter, metrics: ExportMetrics) -> None:
        self.inner = inner
        self.metrics = metrics
        self._shutdown_takes_timeout = "timeout_millis" in inspect.signature(inner.shutdown).parameters
        self._backoff = 0.0
        self._retry_at = 0.0
        self._stopping = threading.Event()

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        wait = self._retry_at - time.monotonic()
        if wait > 0:
            self._stopping.wait(wait)  # cut short by a stop, which tries once more at once
        try:
            result = self.inner.export(spans)
        except Exception:
            log.exception("OTLP export raised")
            result = SpanExportResult.FAILURE
        if result is SpanExportResult.SUCCESS:
            self.metrics.exported.inc(len(spans))
            self._backoff = 0.0
        else:
            self.metrics.failures.inc()
            self.metrics.export_failed.inc(len(spans))
            self._backoff = min(max(MIN_BACKOFF_SECONDS, self._backoff * 2), MAX_BACKOFF_SECONDS)
            self._retry_at = time.monotonic() + self._backoff
        return result

    def stop_waiting(self) -> None:
        """A stop is under way: the pending batch is tried now rather than after the backoff."""
        self._stopping.set()

    def shutdown(self, timeout_millis: float = 30_000, **_kwargs: Any) -> None:
        self._stopping.set()
        if self._shutdown_takes_timeout:
            self.inner.shutdown(timeout_millis=timeout_millis)  # type: ignore[call-arg]
        else:
            self.inner.shutdown()

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return self.inner.force_flush(timeout_millis)


class CountingBatchSpanProcessor(BatchSpanProcessor):
    """``BatchSpanProcessor`` (bounded queue, export thread, ``OTEL_BSP_*``) that counts what it drops.

    What it queues are encoded spans (``otlp_encoding.EncodedSpan``): the gateway hands those over
    ready-made, and an SDK span (a probe's) is encoded here when it ends. The queue length is read
    from the SDK's internal deque; if a future SDK moves it, drops are no longer counted (logged
    once at start) but nothing else changes.
    """

    def __init__(
        self,
        exporter: SpanExporter,
        metrics: ExportMetrics,
        max_queue_size: int | None = None,
        schedule_delay_millis: float | None = None,
        max_export_batch_size: int | None = None,
    ) -> None:
        self.exporter = CountingExporter(exporter, metrics)
        super().__init__(
            self.exporter,
            max_queue_size=max_queue_size,
            schedule_delay_millis=schedule_delay_millis,
            max_export_batch_size=max_export_batch_size,
        )
        self.metrics = metrics
        self.encoder = SpanEncoder()
        batch = getattr(self, "_batch_processor", None)
        queue = getattr(batch, "_queue", None)
        capacity = getattr(batch, "_max_queue_size", None)
        self._queue: Any = queue if hasattr(queue, "__len__") and isinstance(capacity, int) else None
        self.capacity: int = capacity if isinstance(capacity, int) else 0
        if self._queue is None:
            log.warning("this OpenTelemetry SDK hides its span queue: queue-full drops are not counted")
        else:
            metrics.queued.set_function(lambda: len(self._queue))
        self._closed = False

    def on_end(self, span: ReadableSpan | EncodedSpan) -> None:
        if not isinstance(span, EncodedSpan):
            context = span.context
            if context is None or not context.trace_flags.sampled:
                return
            span = self.encoder.encode(span) or span  # kept as it is if it has events or links
        if self._closed:
            self.metrics.shutdown_lost.inc()
            return
        queue = self._queue
        if queue is not None and len(queue) >= self.capacity:
            self.metrics.queue_full.inc()  # the deque drops its oldest span to take this one
        super().on_end(span)  # type: ignore[arg-type]

    def shutdown(self, timeout_millis: int = 30_000) -> None:
        """Export what is queued within ``timeout_millis``; what is left then is counted as lost."""
        if self._closed:
            return
        self._closed = True
        self.exporter.stop_waiting()
        batch: Any = getattr(self, "_batch_processor", None)
        if batch is not None:
            batch.shutdown(timeout_millis=timeout_millis)
        else:  # pragma: no cover (an SDK without the shared batch processor)
            super().shutdown()  # type: ignore[no-untyped-call]
        if self._queue is not None and len(self._queue):
            self.metrics.shutdown_lost.inc(len(self._queue))
