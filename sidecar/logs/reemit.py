"""Re-emit normalised log lines as JSON on standard output, for a cluster log shipper.

Each line carries the request and trace IDs the sidecar found, so the shipper's index can join logs to
traces without parsing every library's format again. Writing must never stall the event loop or the
sources: lines go into a byte-bounded buffer that a daemon thread writes out; when standard output is
slower than the logs, lines are dropped and counted rather than held without limit. Credentials in
the app's fields (``Authorization`` and ``Cookie`` headers, passwords, tokens) are masked on the way out.
"""

from __future__ import annotations

import logging
import os
import re
import threading
from collections import deque
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import orjson

from sidecar.core.redaction import MASK, redact_text
from sidecar.logs.parse import LogRecord

log = logging.getLogger(__name__)

_SECRET_KEY = re.compile(
    r"(?i)(authorization|cookie|password|passwd|secret|token|api[_-]?key|credential|session)"
)
_MAX_DEPTH = 8


def scrub(value: Any, depth: int = 0) -> Any:
    """A copy of ``value`` with the values of credential-like keys replaced by ``***``."""
    if depth > _MAX_DEPTH:
        return MASK
    if type(value) is dict:
        return {
            k: (MASK if isinstance(k, str) and _SECRET_KEY.search(k) else scrub(v, depth + 1))
            for k, v in value.items()
        }
    if type(value) is list:
        return [scrub(v, depth + 1) for v in value]
    if type(value) is str and len(value) >= 12:
        return redact_text(value)
    return value


def normalised(record: LogRecord) -> dict[str, Any]:
    """The JSON shape of a re-emitted line."""
    moment = record.time
    out: dict[str, Any] = {
        "time": datetime.fromtimestamp(moment, UTC).isoformat() if moment is not None else None,
        "level": record.level,
        "message": redact_text(record.message),
        "source": record.source,
        "request_id": record.request_id,
        "trace_id": record.trace_id,
    }
    if record.error is not None:
        out["error"] = {
            "type": record.error.type,
            "message": redact_text(record.error.value) if record.error.value else None,
            "stack": record.error.stack,
        }
    if record.access is not None:
        access = record.access
        out["http"] = {
            "method": access.method,
            "url": redact_text(access.url) if access.url else None,
            "route": access.route,
            "status_code": access.status,
            "duration_seconds": access.duration_seconds,
            "response_bytes": access.bytes,
        }
    if record.fields:
        out["attributes"] = scrub(record.fields)
    return out


class Reemitter:
    """A byte-bounded buffer of JSON lines and the daemon thread that writes it to a file descriptor."""

    def __init__(
        self,
        count_drop: Callable[[str, str, int], None],
        fd: int = 1,
        max_buffer_bytes: int = 8 * 1024 * 1024,
    ) -> None:
        self._fd = fd
        self._count_drop = count_drop
        self.max_buffer_bytes = max_buffer_bytes
        self._buffer: deque[bytes] = deque()
        self._buffered = 0
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._closed = False
        self._thread: threading.Thread | None = None
        self.written = 0
        self.failed = False

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="log-reemit", daemon=True)
        self._thread.start()

    def emit(self, source: str, records: list[LogRecord]) -> None:
        """Queue one batch's records; what does not fit in the buffer is dropped and counted."""
        if not records:
            return
        chunk = b"".join(
            orjson.dumps(normalised(r), option=orjson.OPT_APPEND_NEWLINE, default=str) for r in records
        )
        with self._lock:
            if self.failed or self._buffered + len(chunk) > self.max_buffer_bytes:
                dropped = len(records)
            else:
                dropped = 0
                self._buffer.append(chunk)
                self._buffered += len(chunk)
                self._wake.notify()
        if dropped:
            self._count_drop(source, "reemit_overflow", dropped)

    def close(self, timeout: float = 1.0) -> None:
        """Stop after writing what is buffered, waiting at most ``timeout`` seconds."""
        with self._lock:
            self._closed = True
            self._wake.notify()
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        while True:
            with self._lock:
                while not self._buffer and not self._closed:
                    self._wake.wait()
                if not self._buffer:
                    return
                data = b"".join(self._buffer)
                self._buffer.clear()
                self._buffered = 0
            try:
                view = memoryview(data)
                while view:
                    n = os.write(self._fd, view)
                    view = view[n:]
                self.written += len(data)
            except OSError as exc:
                log.error("re-emitting log lines failed; stopping re-emit", extra={"error": str(exc)})
                with self._lock:
                    self.failed = True
                return
