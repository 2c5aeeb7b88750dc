"""The ``sidecar_log_*`` metric families: what the log sources read, rejected, dropped and followed.

Counting happens per batch, not per line: the pipeline tallies levels and reasons in plain dicts and
adds them here once, through label children cached by label tuple (``.labels()`` is too slow for the
hot path). Every label comes from configuration or from a fixed vocabulary, so the sets are bounded.
"""

from __future__ import annotations

from collections.abc import Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge


class LogMetrics:
    """Counters and gauges for log ingestion on one registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.lines = Counter(
            "sidecar_log_lines",
            "Log lines parsed, by source and normalised level.",
            ["source", "level"],
            registry=registry,
        )
        self.rejected = Counter(
            "sidecar_log_lines_rejected",
            "Log lines skipped because they could not be parsed, by reason.",
            ["source", "reason"],
            registry=registry,
        )
        self.dropped = Counter(
            "sidecar_log_lines_dropped",
            "Log lines lost because a bound was reached (full queue, full re-emit buffer), by reason.",
            ["source", "reason"],
            registry=registry,
        )
        self.read_bytes = Counter(
            "sidecar_log_read_bytes",
            "Bytes read from log sources.",
            ["source"],
            registry=registry,
        )
        self.files = Gauge(
            "sidecar_log_files_followed",
            "Files currently followed by a file source.",
            ["source"],
            registry=registry,
        )
        self.rotations = Counter(
            "sidecar_log_file_rotations",
            "Rotations noticed in followed files: rename (a new file took the path) or truncate "
            "(copytruncate).",
            ["source", "kind"],
            registry=registry,
        )
        self.file_errors = Counter(
            "sidecar_log_file_errors",
            "Problems with followed files, by reason (open, read, too many files, checkpoint write).",
            ["source", "reason"],
            registry=registry,
        )
        self.queue_batches = Gauge(
            "sidecar_log_queue_batches",
            "Batches waiting in a source's queue.",
            ["source"],
            registry=registry,
        )
        self._children: dict[tuple[Counter, str, str], Counter] = {}

    def _child(self, family: Counter, first: str, second: str) -> Counter:
        key = (family, first, second)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = family.labels(first, second)
        return child

    def count(self, source: str, levels: Mapping[str, int], rejected: Mapping[str, int]) -> None:
        """Add one batch's tallies."""
        for level, n in levels.items():
            self._child(self.lines, source, level).inc(n)
        for reason, n in rejected.items():
            self._child(self.rejected, source, reason).inc(n)

    def reject(self, source: str, reason: str, n: int = 1) -> None:
        if n:
            self._child(self.rejected, source, reason).inc(n)

    def drop(self, source: str, reason: str, n: int = 1) -> None:
        if n:
            self._child(self.dropped, source, reason).inc(n)

    def file_error(self, source: str, reason: str) -> None:
        self._child(self.file_errors, source, reason).inc()

    def rotation(self, source: str, kind: str) -> None:
        self._child(self.rotations, source, kind).inc()
