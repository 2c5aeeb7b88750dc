"""The Errors page's memory: the newest Sentry events the sidecar forwarded or relayed, bounded.

The forwarder tells its observers of every scrubbed event it spools; this keeps the few fields the
page shows (time, level, title, request ID, event ID), never the event itself.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

MAX_EVENTS = 100
MAX_TITLE = 300
_REQUEST_ID_TAGS = ("request_id", "requestId", "request.id", "x-request-id", "X-Request-ID")


@dataclass(frozen=True, slots=True)
class SeenEvent:
    at: float
    origin: str  # "forwarded" (made by the sidecar) or "relayed" (from the app's SDK)
    level: str
    title: str
    event_id: str
    request_id: str | None


def _title(event: Mapping[str, Any]) -> str:
    values = (
        (event.get("exception") or {}).get("values") if isinstance(event.get("exception"), dict) else None
    )
    if isinstance(values, list) and values and isinstance(values[-1], dict):
        last = values[-1]
        return f"{last.get('type') or 'Error'}: {last.get('value') or ''}"
    message = event.get("message")
    if isinstance(message, dict):
        message = message.get("formatted") or message.get("message")
    logentry = event.get("logentry")
    if not message and isinstance(logentry, dict):
        message = logentry.get("formatted") or logentry.get("message")
    return str(message or event.get("transaction") or "event")


def _request_id(event: Mapping[str, Any]) -> str | None:
    tags = event.get("tags")
    if isinstance(tags, list):
        tags = {t[0]: t[1] for t in tags if isinstance(t, list | tuple) and len(t) == 2}
    if isinstance(tags, dict):
        for key in _REQUEST_ID_TAGS:
            value = tags.get(key)
            if isinstance(value, str) and value:
                return value[:256]
    return None


class RecentEvents:
    """Ring of ``SeenEvent``; ``observe`` is the forwarder's observer callback."""

    def __init__(self) -> None:
        self.events: deque[SeenEvent] = deque(maxlen=MAX_EVENTS)

    def observe(self, origin: str, event: Mapping[str, Any]) -> None:
        if event.get("type") == "transaction":
            return
        event_id = event.get("event_id")
        self.events.append(
            SeenEvent(
                at=time.time(),
                origin=origin,
                level=str(event.get("level") or "error"),
                title=_title(event)[:MAX_TITLE],
                event_id=event_id if isinstance(event_id, str) else "",
                request_id=_request_id(event),
            )
        )
