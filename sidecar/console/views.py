"""The pages' bodies, rendered on the server from the console's state; live parts re-rendered alone.

Each page has a ``live`` part (what the browser re-fetches every few seconds, ``?part=live``) and a
frame around it (headings, forms) rendered once, so a refresh never takes the keyboard focus away.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

from sidecar.console.queues import FailedJob, QueueView, queue_views
from sidecar.console.render import (
    NONE,
    age_text,
    ago,
    badge,
    esc,
    request_link,
    seconds_text,
    sparkline,
    table,
    template_link,
    when,
)
from sidecar.console.state import ConsoleState
from sidecar.console.traffic import WINDOWS, RecentRequest

LIVE_EVERY = {"overview": 2, "traffic": 5, "queues": 5, "errors": 5}


def live(page: str, inner: str, query: str = "") -> str:
    """The region the browser re-fetches; ``aria-live`` stays polite so screen readers are not flooded."""
    src = f"/console/{'' if page == 'overview' else page}?part=live{query}".replace("/console/?", "/console?")
    events = ' data-events="/console/api/events"' if page == "overview" else ""
    return (
        f'<div class="live"{events} data-live="{esc(src)}" data-every="{LIVE_EVERY.get(page, 5)}" '
        f'aria-live="polite">{inner}</div>'
    )


def csrf_field(csrf: str) -> str:
    return f'<input type="hidden" name="csrf" value="{esc(csrf)}">'


# --- Overview --------------------------------------------------------------------------------------


_READY = {True: '<span class="badge pass">ready</span>', False: '<span class="badge fail">not ready</span>'}


def overview_live(state: ConsoleState) -> str:
    state.history.forget_missing()  # checks removed by a reload (SIGHUP) leave the page
    readiness = state.history.readiness()
    since = state.history.readiness_since
    if readiness.ready:
        verdict = '<h2 class="verdict pass" id="verdict">Ready</h2>'
        why = (
            "<p>Every critical check passes and the sidecar is not draining: "
            "<code>/readyz</code> answers 200.</p>"
        )
    else:
        verdict = f'<h2 class="verdict fail" id="verdict">Not ready: {esc(readiness.reason)}</h2>'
        parts = []
        if readiness.reason == "draining":
            parts.append("the sidecar is draining (taken out of rotation)")
        if readiness.failing:
            parts.append(
                "critical checks failing after hysteresis: " + ", ".join(esc(c) for c in readiness.failing)
            )
        if readiness.starting:
            parts.append("waiting for a first result of: " + ", ".join(esc(c) for c in readiness.starting))
        why = f"<p>{'; '.join(parts)}. <code>/readyz</code> answers 503.</p>"
    since_text = f'<p class="since">Since {when(since)} ({esc(ago(since))}).</p>'
    transitions = "".join(
        f"<li>{when(t.at)} {_READY[t.ready]} {esc(t.reason)}</li>"
        for t in reversed(state.history.transitions)
    )
    changes = f'<details><summary>Readiness changes</summary><ul class="plain">{transitions}</ul></details>'
    summary = f"{verdict}{why}{since_text}{changes}"
    return f'<section class="summary" aria-labelledby="verdict">{summary}</section>{_checks(state)}'


def _checks(state: ConsoleState) -> str:
    rows = []
    for name, kind in state.store.checks():
        result = state.store.latest(name)
        hstate = state.health.states.get(name)
        track = state.history.track(name)
        status = result.status.value if result is not None else "starting"
        if hstate is None or hstate.ready is None:
            ready = "no result yet"
        else:
            streak = (
                f"{hstate.failures} failure(s) in a row (fall {hstate.fall})"
                if hstate.failures
                else f"{hstate.passes} pass(es) in a row (rise {hstate.rise})"
            )
            ready = f"{'ready' if hstate.ready else 'not ready'}, {streak}"
            if track is not None:
                ready += f", since {when(track.since)}"
        critical = "critical" if hstate is not None and hstate.critical else "non-critical"
        measurements = ""
        output = ""
        latency = NONE
        if result is not None:
            latency = seconds_text(result.duration_seconds)
            shown = list(result.measurements.items())[:8]
            measurements = "".join(
                f"<li><span>{esc(k)}</span> {esc(_value(m.value, m.unit))}</li>" for k, m in shown
            )
            reason = f"{result.reason.value}: " if result.reason is not None else ""
            output = esc((reason + result.output)[:300])
        spark = sparkline(list(track.points) if track else [], name)
        rows.append(
            f'<tr class="check status-{esc(status)}" data-check="{esc(name)}" data-status="{esc(status)}">'
            f'<th scope="row">{esc(name)}<br><small>{esc(kind)} · {critical}</small></th>'
            f"<td>{badge(status)}</td><td>{ready}</td><td>{latency}</td>"
            f'<td><ul class="measurements">{measurements}</ul></td><td>{spark}</td>'
            f'<td class="output">{output}</td></tr>'
        )
    return table(
        ("Check", "Status", "Readiness (hysteresis)", "Latency", "Last measurements", "History", "Output"),
        rows,
        caption="Every configured check, latest result first",
        empty="No checks are configured.",
    )


def _value(value: float | str, unit: str) -> str:
    """A measurement as people read it: durations in ms or s, ratios in percent."""
    if isinstance(value, str):
        return f"{value} {unit}".strip()
    if unit == "s":
        return seconds_text(value)
    if unit == "ratio":
        return f"{value * 100:.3g} %"
    return f"{value:.4g} {unit}".strip()


def overview(state: ConsoleState, csrf: str) -> str:
    draining = state.health.draining
    action, label, confirm = (
        (
            "undrain",
            "Put back in rotation (undrain)",
            "Put this instance back in rotation? /readyz will follow the checks again.",
        )
        if draining
        else (
            "drain",
            "Take out of rotation (drain)",
            "Take this instance out of rotation? /readyz will answer 503 until you undrain.",
        )
    )
    form = (
        f'<form method="post" action="/console/{action}" class="drain" data-confirm="{esc(confirm)}">'
        f'{csrf_field(csrf)}<button type="submit" class="{"primary" if draining else "danger"}"'
        ' id="drain-button">'
        f"{esc(label)}</button></form>"
    )
    return f"<h1>Overview</h1>{form}{live('overview', overview_live(state))}"


# --- Traffic ---------------------------------------------------------------------------------------


def window_of(raw: str | None) -> int:
    try:
        minutes = int(raw or "1")
    except ValueError:
        minutes = 1
    seconds = minutes * 60
    return seconds if seconds in WINDOWS else WINDOWS[0]


async def traffic_live(state: ConsoleState, window: int) -> str:
    span, routes = await state.traffic.window(window)
    rows = [
        f'<tr data-route="{esc(r.route)}"><th scope="row" class="mono">{esc(r.route)}</th>'
        f"<td>{r.requests}</td><td>{r.rate:.2f}/s</td>"
        f'<td class="{"bad" if r.error_ratio > 0.01 else ""}">{r.error_ratio * 100:.1f} %</td>'
        f"<td>{seconds_text(r.p50)}</td><td>{seconds_text(r.p95)}</td><td>{seconds_text(r.p99)}</td></tr>"
        for r in routes
    ]
    covered = f"{span / 60:.1f} min" if span < window - 15 else f"{window // 60} min"
    slowest, failed = await state.traffic.slowest_and_failed()
    return (
        f'<p class="note">Over the last {esc(covered)} (from the request-duration histogram; percentiles '
        "are interpolated within its buckets).</p>"
        + table(
            ("Route", "Requests", "Rate", "Errors", "p50", "p95", "p99"),
            rows,
            caption="Requests per route",
            empty="No requests in this window.",
        )
        + "<h2>Slowest recent requests</h2>"
        + _recent_table(slowest, "Slowest recent requests", "No recent requests.")
        + "<h2>Failed recent requests</h2>"
        + _recent_table(failed, "Failed recent requests", "No failed requests among the recent ones.")
    )


def _recent_table(records: list[RecentRequest], caption: str, empty: str) -> str:
    rows = [
        f"<tr><td>{when(r.at)}</td><td>{request_link(r.request_id)}</td>"
        f'<td class="mono">{esc(r.method)} {esc(r.path[:120])}</td>'
        f'<td class="{"bad" if r.status >= 500 or not r.status else ""}"'
        f">{r.status or esc(r.error or 'failed')}</td>"
        f"<td>{seconds_text(r.duration_ms / 1000 if r.duration_ms is not None else None)}</td></tr>"
        for r in records
    ]
    return table(("Time", "Request ID", "Request", "Status", "Duration"), rows, caption=caption, empty=empty)


def traffic(inner: str, window: int) -> str:
    current = ' aria-current="true"'
    tabs = "".join(
        f'<li><a href="/console/traffic?window={w // 60}"{current if w == window else ""}>{w // 60} min</a>'
        "</li>"
        for w in WINDOWS
    )
    return f'<h1>Traffic</h1><nav aria-label="Window"><ul class="tabs">{tabs}</ul></nav>' + live(
        "traffic", inner, f"&window={window // 60}"
    )


# --- Queues ----------------------------------------------------------------------------------------

_STATES = ("waiting", "prioritized", "active", "delayed", "failed", "completed", "paused", "waiting-children")


def queues_live(state: ConsoleState) -> str:
    views, empty = queue_views(state.store)
    states = [s for s in _STATES if any(s in v.counts for v in views)]
    states += sorted({s for v in views for s in v.counts} - set(states))
    rows = [_queue_row(v, states) for v in views]
    notes = "".join(
        f"<li>{esc(check)} ({esc(kind)}): {badge(status)} no queue figures yet</li>"
        for check, kind, status in empty
    )
    return table(
        ("Check", "Queue", *states, "Oldest waiting", "Overdue delayed", "Stalled", "Workers", "Failed jobs"),
        rows,
        caption="Every configured queue, as the last probe saw it",
        empty="No queue checks (bullmq, celery, rq, rabbitmq) are configured.",
    ) + (f'<ul class="plain">{notes}</ul>' if notes else "")


def _queue_row(view: QueueView, states: list[str]) -> str:
    figures = view.figures
    overdue = figures.get("overdue_delayed_jobs")
    cells = "".join(f"<td>{view.counts.get(s, NONE)}</td>" for s in states)
    failed = (
        f'<a href="/console/queues/failed?check={quote(view.check, safe="")}'
        f'&amp;queue={quote(view.name, safe="")}">'
        "recent failed</a>"
        if view.kind == "bullmq"
        else NONE
    )
    stalled = figures.get("stalled_jobs")
    workers = figures.get("workers")
    return (
        f'<tr data-queue="{esc(view.name)}"><td>{esc(view.check)}<br><small>{esc(view.kind)}</small></td>'
        f'<th scope="row" class="mono">{esc(view.name)}</th>{cells}'
        f"<td>{age_text(figures.get('oldest_waiting_job_age_seconds'))}</td>"
        f'<td class="{"bad" if overdue else ""}">{NONE if overdue is None else int(overdue)}</td>'
        f"<td>{NONE if stalled is None else int(stalled)}</td><td"
        f">{NONE if workers is None else int(workers)}</td>"
        f"<td>{failed}</td></tr>"
    )


def queues(inner: str) -> str:
    return f"<h1>Queues</h1>{live('queues', inner)}"


def failed_jobs(check: str, queue: str, jobs: list[FailedJob] | None, error: str | None) -> str:
    head = (
        f'<h1>Failed jobs <small class="mono">{esc(queue)}</small></h1>'
        '<p><a href="/console/queues">← Queues</a></p>'
    )
    if error is not None:
        return head + f'<p class="error" role="alert">{esc(error)}</p>'
    rows = [
        f'<tr><td class="mono">{esc(j.job_id)}</td><td>{esc(j.name)}</td><td class="output"'
        f">{esc(j.failed_reason)}</td>"
        f"<td>{NONE if j.attempts is None else j.attempts}</td><td>{when(j.finished_at)}</td></tr>"
        for j in jobs or []
    ]
    return head + table(
        ("Job", "Name", "Failed reason", "Attempts", "Failed at"),
        rows,
        caption=f"The most recent failed jobs of {queue} ({check}), newest first, at most 50",
        empty="No failed jobs.",
    )


# --- Errors ----------------------------------------------------------------------------------------


def errors_live(state: ConsoleState) -> str:
    sentry = state.sentry
    link = state.settings.console.sentry_url
    if sentry is None or not sentry.enabled:
        upstream = "<p>Sentry forwarding is off (no <code>sentry.app_dsn</code>).</p>"
    else:
        events, size = sentry.spool.size()
        failures = sentry.sender.failures if sentry.sender is not None else 0
        limited = sentry.limiter.next_expiry() is not None
        condition = "failing" if failures else ("rate limited" if limited else "reachable")
        status = "fail" if failures else ("warn" if limited else "pass")
        outcomes = ", ".join(f"{esc(k)} {v}" for k, v in sentry.stats.outcomes.items() if v)
        upstream = (
            f'<dl class="facts"><dt>Upstream</dt><dd>{badge(status)} {esc(condition)}'
            f"{f' ({failures} failed attempts in a row)' if failures else ''}</dd>"
            f"<dt>Spool</dt><dd>{events} envelopes, {size} bytes waiting</dd>"
            f"<dt>Outcomes</dt><dd>{outcomes or 'none yet'}</dd></dl>"
        )
    rows = [
        f"<tr><td>{when(e.at)}</td><td>{esc(e.origin)}</td><td>{badge(e.level)}</td>"
        f'<td class="output">{esc(e.title)}</td><td>{request_link(e.request_id)}</td>'
        f'<td class="mono">{esc(e.event_id[:12])}'
        f" {template_link(link, '{event_id}', e.event_id, 'open in Sentry')}</td></tr>"
        for e in reversed(state.events.events)
    ]
    return upstream + table(
        ("Time", "Origin", "Level", "Message", "Request ID", "Event"),
        rows,
        caption="Recent Sentry events, forwarded or relayed, newest first",
        empty="No Sentry events since the sidecar started.",
    )


def errors(inner: str) -> str:
    return f"<h1>Errors</h1>{live('errors', inner)}"


# --- Request ---------------------------------------------------------------------------------------

MAX_QUERY = 256


async def request_page(state: ConsoleState, query: str) -> str:
    form = (
        '<form method="get" action="/console/request" class="search" role="search">'
        '<label for="q">Request ID or trace ID</label>'
        f'<input id="q" name="q" value="{esc(query)}" maxlength="{MAX_QUERY}" autocomplete="off"'
        ' spellcheck="false">'
        '<button type="submit">Find</button></form>'
    )
    if not query:
        return (
            f"<h1>Request</h1>{form}<p>Paste the <code>X-Request-ID</code> of a response, or a trace ID.</p>"
        )
    found = state.index.get(query)
    if found is None and _looks_like_trace(query):
        ids = await find_trace(state, query.lower())
        if len(ids) == 1:
            found = state.index.get(ids[0])
        elif ids:
            items = "".join(f"<li>{request_link(i)}</li>" for i in ids)
            title = f'Requests of trace <span class="mono">{esc(query)}</span>'
            return f"<h1>Request</h1>{form}<h2>{title}</h2><ul>{items}</ul>"
    if found is None:
        return (
            f"<h1>Request</h1>{form}"
            f'<p class="error" role="alert">Nothing known about <span class="mono">{esc(query)}</span>:'
            " never seen, "
            "or already evicted from the bounded correlation index.</p>"
        )
    return f"<h1>Request</h1>{form}{timeline(state, found)}"


TRACE_SLICE = 500
MAX_TRACE_REQUESTS = 20


async def find_trace(state: ConsoleState, trace_id: str) -> list[str]:
    """Request IDs of a trace, newest first: a scan of the index in slices that yield to the loop."""
    index = state.index
    entries = index.newest_entries(len(index))
    found: list[str] = []
    for start in range(0, len(entries), TRACE_SLICE):
        found += [
            rid for rid, held in entries[start : start + TRACE_SLICE] if index.carries_trace(held, trace_id)
        ]
        if len(found) >= MAX_TRACE_REQUESTS:
            break
        await asyncio.sleep(0)
    return found[:MAX_TRACE_REQUESTS]


def _looks_like_trace(text: str) -> bool:
    return len(text) == 32 and all(c in "0123456789abcdefABCDEF" for c in text)


def timeline(state: ConsoleState, found: Mapping[str, Any]) -> str:
    settings = state.settings.console
    trace_id = found.get("trace_id")
    trace = (
        f'<dt>Trace</dt><dd class="mono">{esc(trace_id)} '
        f"{template_link(settings.trace_url, '{trace_id}', trace_id, 'open trace')}</dd>"
        if trace_id
        else ""
    )
    dropped = f", {found['dropped_entries']} dropped" if found.get("dropped_entries") else ""
    head = (
        f'<dl class="facts"><dt>Request ID</dt><dd class="mono" id="request-id">{esc(found["request_id"])}'
        f"</dd>{trace}"
        f"<dt>Entries</dt><dd>{len(found['timeline'])}{dropped}</dd></dl>"
    )
    rows = []
    for entry in found["timeline"]:
        kind = str(entry["kind"])
        record = entry["record"] if isinstance(entry["record"], dict) else {"value": entry["record"]}
        rows.append(
            f'<li class="entry {esc(kind)}"><span class="when">{when(entry["at"])}</span>'
            f'<span class="kind">{esc(kind)}</span><div class="what"'
            f">{_describe(kind, record, settings.sentry_url)}</div></li>"
        )
    return head + f'<ol class="timeline" aria-label="Timeline, oldest first">{"".join(rows)}</ol>'


def _describe(kind: str, record: Mapping[str, Any], sentry_url: str | None) -> str:
    if kind == "access":
        duration = record.get("duration_ms")
        upstream = record.get("upstream_ms")
        error = f' <span class="bad">{esc(record["error"])}</span>' if record.get("error") else ""
        return (
            f'<span class="mono">{esc(record.get("method"))} {esc(str(record.get("path"))[:300])}</span> → '
            f"<strong>{esc(record.get('status'))}</strong> in {esc(duration)} ms"
            f"{f' (app {esc(upstream)} ms)' if upstream is not None else ''}, route "
            f'<span class="mono">{esc(record.get("route"))}</span>{error}'
        )
    if kind == "log":
        http = record.get("http")
        extra = ""
        if isinstance(http, dict):
            shown = f"{esc(http.get('method'))} {esc(http.get('url'))} → {esc(http.get('status_code'))}"
            extra = f' <span class="mono">{shown}</span>'
        error = (
            f' <span class="bad">{esc(record.get("error_type"))}: {esc(record.get("error_value"))}</span>'
            if record.get("error_type")
            else ""
        )
        return (
            f"{badge(str(record.get('level', 'info')))} {esc(record.get('message'))}{extra}{error} "
            f"<small>({esc(record.get('source'))})</small>"
        )
    if kind == "sentry":
        event_id = str(record.get("event_id") or "")
        dedup = " (duplicate, not sent again)" if record.get("deduplicated") else ""
        return (
            f'{esc(record.get("title"))}{dedup} <span class="mono">{esc(event_id[:12])}</span> '
            f"{template_link(sentry_url, '{event_id}', event_id, 'open in Sentry')}"
        )
    shown = ", ".join(f"{esc(k)}={esc(str(v)[:200])}" for k, v in list(record.items())[:12])
    return f'<span class="mono">{shown}</span>'


# --- Logs ------------------------------------------------------------------------------------------

LEVELS = ("trace", "debug", "info", "warn", "error", "fatal")


def logs_page(state: ConsoleState) -> str:
    if state.tail is None:
        return "<h1>Logs</h1><p>The log flow is not running.</p>"
    sources = sorted(state.tail.sources | set(_configured_sources(state)))
    level_options = "".join(f'<option value="{lv}">{lv} and above</option>' for lv in LEVELS)
    source_options = "".join(f'<option value="{esc(s)}">{esc(s)}</option>' for s in sources)
    return (
        "<h1>Logs</h1>"
        '<form class="filters" id="tail-filters">'
        '<label for="level">Level</label><select id="level" name="level"><option value="">all</option'
        f">{level_options}</select>"
        '<label for="source">Source</label><select id="source" name="source"><option value="">all</option'
        f">{source_options}</select>"
        '<button type="button" id="tail-pause" aria-pressed="false">Pause</button>'
        '<span id="tail-state" role="status">live</span></form>'
        '<div class="scroll" tabindex="0" role="region" aria-label="Log lines"><table id="tail"'
        ' data-tail="/console/api/logs">'
        '<caption>Newest log lines last (at most 500 kept)</caption><thead><tr><th scope="col">Time</th>'
        '<th scope="col">Source</th><th scope="col">Level</th><th scope="col">Message</th>'
        '<th scope="col">Request ID</th></tr></thead><tbody></tbody></table></div>'
    )


def _configured_sources(state: ConsoleState) -> list[str]:
    logs = state.settings.logs
    names = [item.source for item in logs.files]
    if logs.stdin:
        names.append("stdin")
    return names


def tail_lines(state: ConsoleState, after: int, level: str, source: str) -> dict[str, Any]:
    if state.tail is None:
        return {"seq": 0, "lines": []}
    lines = state.tail.poll(after)
    floor = LEVELS.index(level) if level in LEVELS else 0
    shown = [
        {
            "seq": line.seq,
            "time": line.at,
            "source": line.source,
            "level": line.level,
            "message": line.message,
            "request_id": line.request_id,
        }
        for line in lines
        if (not source or line.source == source)
        and (line.level not in LEVELS or LEVELS.index(line.level) >= floor)
    ]
    return {"seq": state.tail.seq, "lines": shown, "sources": sorted(state.tail.sources), "now": time.time()}
