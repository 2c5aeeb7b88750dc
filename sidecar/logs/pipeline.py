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

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final

import orjson

from sidecar.core.http_metrics import HttpMetrics
from sidecar.core.redaction import mask_url, redact_text
from sidecar.correlation.index import CorrelationIndex, LogEntry, pack_log
from sidecar.logs.access import AccessRecorder
from sidecar.logs.metrics import LogMetrics
from sidecar.logs.parse import TOO_LONG, LogError, LogParser, LogRecord, parse_time, rejection_of_bad_json
from sidecar.logs.reemit import Reemitter
from sidecar.logs.rules import RuleSet
from sidecar.logs.sources.channel import Batch

MAX_INDEXED_TEXT: Final = 512
_ERROR_LEVELS: Final = frozenset({"error", "fatal"})
_REDACTION_CACHE: Final = 4096
# Epoch milliseconds as ``parse_time`` tells them from seconds, microseconds and nanoseconds (pino,
# winston and bunyan write them): converted inline, the common case of the index's time.
_MS_ABOVE: Final = 100_000_000_000
_MS_UP_TO: Final = 100_000_000_000_000


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
        self._redactions: dict[str, str] = {}  # message -> its redaction (see _entry)
        self._dumps: Callable[[object], bytes] = orjson.dumps  # an attribute: no module lookup per line

    def consume(self, source: str, batch: Batch) -> None:
        """A source channel's sink: feed the batch and count what its reader already skipped."""
        if batch.too_long:
            self.metrics.reject(source, TOO_LONG, batch.too_long)
        self.feed(source, batch.lines)

    def feed(self, source: str, lines: list[bytes]) -> FeedResult:  # noqa: PLR0912, PLR0915 (the hot loop, one frame)
        """Parse and sink every line; empty lines are ignored, bad ones counted by reason.

        JSON lines (the common case) are decoded here rather than through ``LogParser.parse`` to
        save a call per line; everything else goes through ``parse``. Methods are called on their
        object, not through a local alias: compiled, that is a direct call instead of a generic one.
        """
        parser = self.parser
        loads = orjson.loads
        decode_error = orjson.JSONDecodeError
        access = self.access
        index = self.correlation
        error_sinks = self.error_sinks
        rules = self.rules
        record_sinks = self.record_sinks
        emitted: list[LogRecord] | None = [] if self.reemit is not None else None
        indexed: list[LogEntry] = []
        now = time.time() if index is not None else 0.0  # the index's time of lines that carry none
        levels: dict[str, int] = {}
        rejected: dict[str, int] = {}
        for line in lines:
            if line[:1] == b"{":  # sources cap line length before this (the splitter, the HTTP ingest)
                try:
                    record = parser.from_mapping(loads(line), source)
                except decode_error:
                    reason = rejection_of_bad_json(line)
                    rejected[reason] = rejected.get(reason, 0) + 1
                    continue
            else:
                if not line or line.isspace():
                    continue
                parsed = parser.parse(line, source)
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
                indexed.append(self._entry(record, now))
            if rules is not None:
                rules.apply(record)
            if emitted is not None:
                emitted.append(record)
            if record_sinks:
                for each in record_sinks:
                    each(record)
            if error_sinks and level in _ERROR_LEVELS:
                if indexed and index is not None:  # a sink reads the request's timeline (Sentry)
                    index.add_logs(indexed)
                    indexed.clear()
                for sink in error_sinks:
                    sink(record)
        if access is not None:
            access.flush_soon()
        if indexed and index is not None:
            index.add_logs(indexed)
        self.metrics.count(source, levels, rejected)
        if emitted and self.reemit is not None:
            self.reemit.emit(source, emitted)
        accepted = sum(levels.values())
        return FeedResult(accepted, rejected)

    def _entry(self, record: LogRecord, now: float) -> LogEntry:
        """The request's index entry for a line: compact, redacted (no raw fields, no stack).

        Its record is ``{"level", "message", "time", "source"}`` plus ``error_type`` and
        ``error_value`` for an error and ``http`` for an access line, handed over as the JSON array
        of those values (``CorrelationIndex.add_logs``): one ``orjson.dumps`` of a tuple per line,
        packed at once (``pack_log`` says why). ``now`` is the entry's time when the line has none.
        """
        raw = record.raw_time
        moment = raw / 1000 if type(raw) is int and _MS_ABOVE < raw <= _MS_UP_TO else parse_time(raw)
        text = record.message[:MAX_INDEXED_TEXT]
        message = self._redactions.get(text)
        if message is None:
            message = self._redacted(text)
        error = record.error
        access = record.access
        level, source = record.level, record.source
        values: tuple[object, ...]
        if access is None:  # tuples written out: unpacking one into the next costs a list per line
            if error is None:
                values = (level, message, moment, source)
            else:
                values = (level, message, moment, source, error.type, _error_value(error))
        else:
            url = access.url
            if url and "?" in url:
                url = mask_url(url[:MAX_INDEXED_TEXT])
            method, status, seconds = access.method, access.status, access.duration_seconds
            if error is None:
                values = (level, message, moment, source, method, url, status, seconds)
            else:
                values = (
                    level,
                    message,
                    moment,
                    source,
                    error.type,
                    _error_value(error),
                    method,
                    url,
                    status,
                    seconds,
                )
        trace_id = record.trace_id
        return (
            record.request_id or "",
            trace_id,
            pack_log(now if moment is None else moment, trace_id, self._dumps(values)),
        )

    def _redacted(self, text: str) -> str:
        """``redact_text`` of a message, remembered: most messages repeat ("request completed")."""
        redactions = self._redactions
        if len(redactions) >= _REDACTION_CACHE:
            redactions.clear()
        done = redactions[text] = redact_text(text)
        return done


def _error_value(error: LogError) -> str | None:
    """An error's value as the index keeps it: cut and redacted."""
    return redact_text(error.value[:MAX_INDEXED_TEXT]) if error.value else None
