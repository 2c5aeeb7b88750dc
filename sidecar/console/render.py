"""HTML building blocks: the page layout (``templates/layout.html``), escaping, times, sparklines.

Everything that reaches a page goes through ``esc`` (HTML text and attribute values alike); nothing
is ever written into a ``<script>`` or a ``style`` attribute, so the Content-Security-Policy can
forbid both.
"""

from __future__ import annotations

import html
import time
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from string import Template
from urllib.parse import quote

from collectors.base import Status
from sidecar.console.history import Point

HERE = Path(__file__).parent
NONE = "\u2013"  # an en dash: no value
PAGES = (
    ("overview", "/console", "Overview"),
    ("traffic", "/console/traffic", "Traffic"),
    ("queues", "/console/queues", "Queues"),
    ("errors", "/console/errors", "Errors"),
    ("request", "/console/request", "Request"),
    ("logs", "/console/logs", "Logs"),
)


def esc(value: object) -> str:
    return html.escape(str(value), quote=True)


@cache
def _layout() -> Template:
    return Template((HERE / "templates" / "layout.html").read_text(encoding="utf-8"))


def layout(*, page: str, title: str, body: str, service: str, csrf: str, logout: bool) -> str:
    current = ' aria-current="page"'
    nav = "".join(
        f'<li><a href="{href}"{current if key == page else ""}>{esc(label)}</a></li>'
        for key, href, label in PAGES
    )
    logout_form = (
        '<form method="post" action="/console/logout" class="logout">'
        f'<input type="hidden" name="csrf" value="{esc(csrf)}"><button type="submit">Log out</button></form>'
        if logout
        else ""
    )
    return _layout().substitute(
        title=esc(title),
        service=esc(service),
        csrf=esc(csrf),
        page=esc(page),
        nav=nav if page != "login" else "",
        logout=logout_form,
        body=body,
    )


def iso(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def ago(at: float, now: float | None = None) -> str:
    seconds = max(0.0, (time.time() if now is None else now) - at)
    if seconds < 60:
        return f"{seconds:.0f} s ago"
    if seconds < 3600:
        return f"{seconds / 60:.0f} min ago"
    if seconds < 86400:
        return f"{seconds / 3600:.1f} h ago"
    return f"{seconds / 86400:.1f} d ago"


def when(at: float | None) -> str:
    """A ``<time>``: the UTC clock time, the relative age as its title."""
    if at is None:
        return NONE
    stamp = iso(at)
    return f'<time datetime="{stamp}" title="{esc(ago(at))}">{stamp[11:19]}</time>'


def seconds_text(value: float | None) -> str:
    if value is None:
        return NONE
    if value < 0.001:
        return f"{value * 1e6:.0f} µs"
    if value < 1:
        return f"{value * 1000:.1f} ms"
    return f"{value:.2f} s"


def age_text(value: float | None) -> str:
    if value is None:
        return NONE
    if value < 120:
        return f"{value:.0f} s"
    if value < 7200:
        return f"{value / 60:.0f} min"
    return f"{value / 3600:.1f} h"


def badge(status: str) -> str:
    return f'<span class="badge {esc(status)}">{esc(status)}</span>'


def table(headers: Sequence[str], rows: Iterable[str], *, caption: str, empty: str) -> str:
    body = "".join(rows)
    if not body:
        return f'<p class="empty">{esc(empty)}</p>'
    head = "".join(f'<th scope="col">{esc(h)}</th>' for h in headers)
    return (
        f'<div class="scroll" tabindex="0" role="region" aria-label="{esc(caption)}"><table>'
        f"<caption>{esc(caption)}</caption><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>"
    )


def request_link(request_id: str | None) -> str:
    if not request_id:
        return NONE
    return f'<a class="mono" href="/console/request?q={quote(request_id, safe="")}">{esc(request_id)}</a>'


def template_link(template: str | None, placeholder: str, value: str | None, text: str) -> str:
    """A link from a configured template (``trace_url``, ``sentry_url``), the value URL-encoded."""
    if not template or not value:
        return ""
    url = template.replace(placeholder, quote(value, safe=""))
    return f'<a href="{esc(url)}" rel="noreferrer noopener" target="_blank">{esc(text)}</a>'


SPARK_W, SPARK_H = 120, 24
_STATUS_CLASS = {Status.PASS: "pass", Status.WARN: "warn", Status.FAIL: "fail"}


def sparkline(points: Sequence[Point], label: str) -> str:
    """Latency as a line, failed and warning results as marks: an inline SVG, no script."""
    if not points:
        return '<span class="empty">no results yet</span>'
    highest = max((p.seconds for p in points), default=0.0) or 1e-9
    step = SPARK_W / max(len(points) - 1, 1)

    def xy(i: int, p: Point) -> tuple[float, float]:
        return i * step, SPARK_H - 2 - (SPARK_H - 4) * (p.seconds / highest)

    line = " ".join(f"{x:.1f},{y:.1f}" for x, y in (xy(i, p) for i, p in enumerate(points)))
    marks = "".join(
        f'<rect class="{_STATUS_CLASS[p.status]}" x="{xy(i, p)[0] - 1.5:.1f}" y="0" width="3"'
        f' height="{SPARK_H}"/>'
        for i, p in enumerate(points)
        if p.status is not Status.PASS
    )
    fails = sum(1 for p in points if p.status is Status.FAIL)
    title = f"{label}: {len(points)} results, {fails} failed, slowest {seconds_text(highest)}"
    return (
        f'<svg class="spark" viewBox="0 0 {SPARK_W} {SPARK_H}" preserveAspectRatio="none" role="img" '
        f'aria-label="{esc(title)}"><title>{esc(title)}</title>{marks}'
        f'<polyline points="{line}"/></svg>'
    )
