"""The log flow's consumer side: parse each line once, then feed every sink from the normalised record.

Sinks: per-source/level line counts, the user's ``logs.rules``, access lines into the shared HTTP
request histogram (through ``HttpMetrics``, so route normalisation, the route cap and the gateway's
no-double-count memory are the same), the correlation index for lines with a request ID, optional
re-emit to stdout, and record sinks (OTLP logs).

``feed`` is synchronous and runs on the event loop; callers bound its work by handing it one batch (a
read chunk, a slice of a request body) at a time. It is the hot path of log-derived metrics, so it
tallies counts in local dicts and touches the Prometheus families once per batch.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

from sidecar.core.http_metrics import HttpMetrics
from sidecar.core.redaction import mask_url, redact_text
from sidecar.correlation.index import CorrelationIndex
from sidecar.logs.access import AccessRecorder
from sidecar.logs.metrics import LogMetrics
from sidecar.logs.parse import TOO_LONG, LogParser, LogRecord, rejection_of_bad_json
from sidecar.logs.reemit import Reemitter
from sidecar.logs.rules import RuleSet
from sidecar.logs.sources.channel import Batch

MAX_INDEXED_TEXT = 512
_ERROR_LEVELS = frozenset({"error", "fatal"})
_REDACTION_CACHE = 4096


@dataclass(slots=True)
class FeedResult:
    """What became of one batch: lines accepted, and rejected lines by reason."""

    accepted: int = 0
    rejected: dict[str, int] = field(default_factory=dict)

    @property
    def rejected_total(self) -> int:
        return sum(self.rejected.values())


class LogPipeline:
    """Parser plus sinks; one instance per app, shared by every source."""

    def __init__(
        self,
        parser: LogParser,
        metrics: LogMetrics,
        http: HttpMetrics | None = None,
        correlation: CorrelationIndex | None = None,
        reemit: Reemitter | None = None,
    ) -> None:
        self.parser = parser
        self.metrics = metrics
        self.access = AccessRecorder(http) if http is not None else None
        self.correlation = correlation
        self.reemit = reemit
        self.error_sinks: list[Callable[[LogRecord], object]] = []  # e.g. the Sentry forwarder
        self.rules: RuleSet | None = None  # logs.rules, when any are configured
        self.record_sinks: list[Callable[[LogRecord], object]] = []  # every record, e.g. OTLP logs
        self._redactions: dict[str, str] = {}

    def consume(self, source: str, batch: Batch) -> None:
        """A source channel's sink: feed the batch and count what its reader already skipped."""
        if batch.too_long:
            self.metrics.reject(source, TOO_LONG, batch.too_long)
        self.feed(source, batch.lines)

    def feed(self, source: str, lines: list[bytes]) -> FeedResult:  # noqa: PLR0912 (the hot loop, one frame)
        """Parse and sink every line; empty lines are ignored, bad ones counted by reason.

        JSON lines (the common case) are decoded here rather than through ``LogParser.parse`` to
        save a call per line; everything else goes through ``parse``.
        """
        parser = self.parser
        from_mapping = parser.from_mapping
        parse = parser.parse
        loads = orjson.loads
        decode_error = orjson.JSONDecodeError
        access = self.access
        index = self.correlation
        error_sinks = self.error_sinks
        rules = self.rules
        record_sinks = self.record_sinks
        emitted: list[LogRecord] | None = [] if self.reemit is not None else None
        levels: dict[str, int] = {}
        rejected: dict[str, int] = {}
        for line in lines:
            if line[:1] == b"{":  # sources cap line length before this (the splitter, the HTTP ingest)
                try:
                    record = from_mapping(loads(line), source)
                except decode_error:
                    reason = rejection_of_bad_json(line)
                    rejected[reason] = rejected.get(reason, 0) + 1
                    continue
            else:
                if not line or line.isspace():
                    continue
                parsed = parse(line, source)
                if isinstance(parsed, str):
                    rejected[parsed] = rejected.get(parsed, 0) + 1
                    continue
                record = parsed
            level = record.level
            levels[level] = levels.get(level, 0) + 1
            seen = record.access
            if seen is not None and access is not None:
                access.record(seen, record.request_id, record.trace_id)
            if index is not None and record.request_id is not None:
                self._index(index, record)
            if rules is not None:
                rules.apply(record)
            if emitted is not None:
                emitted.append(record)
            if record_sinks:
                for each in record_sinks:
                    each(record)
            if error_sinks and level in _ERROR_LEVELS:
                for sink in error_sinks:
                    sink(record)
        if access is not None:
            access.flush()
        self.metrics.count(source, levels, rejected)
        if emitted and self.reemit is not None:
            self.reemit.emit(source, emitted)
        accepted = sum(levels.values())
        return FeedResult(accepted, rejected)

    def _redacted(self, text: str) -> str:
        """``redact_text`` of a message, remembered: most messages repeat ("request completed")."""
        done = self._redactions.get(text)
        if done is None:
            if len(self._redactions) >= _REDACTION_CACHE:
                self._redactions.clear()
            done = self._redactions[text] = redact_text(text)
        return done

    def _index(self, index: CorrelationIndex, record: LogRecord) -> None:
        """A compact, redacted entry on the request's timeline (no raw fields, no stack)."""
        moment = record.time
        entry: dict[str, Any] = {
            "level": record.level,
            "message": self._redacted(record.message[:MAX_INDEXED_TEXT]),
            "time": moment,
            "source": record.source,
        }
        error = record.error
        if error is not None:
            entry["error_type"] = error.type
            entry["error_value"] = redact_text(error.value[:MAX_INDEXED_TEXT]) if error.value else None
        access = record.access
        if access is not None:
            url = access.url
            entry["http"] = {
                "method": access.method,
                "url": mask_url(url[:MAX_INDEXED_TEXT]) if url and "?" in url else url,
                "status_code": access.status,
                "duration_seconds": access.duration_seconds,
            }
        index.add(record.request_id or "", "log", entry, trace_id=record.trace_id, at=moment)
