"""The ``console:`` section: whether the on-call console is served, and where its links point.

Only this module of the console package is imported at start-up (the root configuration composes it);
everything else loads when the admin listener serves the console.
"""

from __future__ import annotations

from typing import Annotated

from sidecar.core.durations import Duration
from sidecar.core.settings_model import Meta, Model, field_validator

PLACEHOLDERS = ("{trace_id}", "{event_id}", "{request_id}")


def _valid_template(value: str | None, placeholder: str) -> str | None:
    if value is None or not value.strip():
        return None
    if not value.startswith(("https://", "http://")):
        raise ValueError(f"a link template must be an http(s) URL, e.g. https://example.org/x/{placeholder}")
    if placeholder not in value:
        raise ValueError(f"a link template must contain {placeholder}, where the ID goes")
    return value


class ConsoleSettings(Model):
    """The on-call console on the admin listener (``/console``)."""

    enabled: Annotated[bool, Meta(description="serve the on-call console on the admin listener")] = True
    history_points: Annotated[
        int, Meta(ge=10, le=1000, description="probe results kept per check for the sparklines")
    ] = 120
    session_lifetime: Annotated[Duration, Meta(description="how long a console login lasts")] = 12 * 3600.0
    trace_url: Annotated[
        str | None,
        Meta(
            description="link to your trace viewer, with {trace_id}, e.g. https://grafana/explore?trace={trace_id}"
        ),
    ] = None
    sentry_url: Annotated[
        str | None,
        Meta(
            description="link to a Sentry event, with {event_id}, e.g. https://sentry.io/organizations/o/issues/?query={event_id}"
        ),
    ] = None

    @field_validator("trace_url")
    @classmethod
    def _trace_template(cls, value: str | None) -> str | None:
        return _valid_template(value, "{trace_id}")

    @field_validator("sentry_url")
    @classmethod
    def _sentry_template(cls, value: str | None) -> str | None:
        return _valid_template(value, "{event_id}")
