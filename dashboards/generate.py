#!/usr/bin/env python3
"""Generate the Grafana dashboards in this directory from one description per dashboard.

    python dashboards/generate.py           # write dashboards/*.json
    python dashboards/generate.py --check   # exit 1 when a committed file differs from the generated one

Every dashboard takes its Prometheus data source from the ``datasource`` template variable (so it
imports into any Grafana without editing) and filters by ``job`` (default ``sidecar``, the convention
the alert rules use) and ``instance``; dependency and queue dashboards also by ``check``. Queries use
only metrics the sidecar exports (tests/unit/dashboards/test_dashboards.py checks it against the code, and the
Prometheus end-to-end test runs every query against a real sidecar).
"""

# PromQL expressions stay whole on one line each, easier to read and to paste into Prometheus.
# ruff: noqa: E501

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
SCHEMA_VERSION = 39
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
GRID_WIDTH = 24

# Label filters shared by the queries.
SEL = 'job=~"$job", instance=~"$instance"'
CHECK = f'{SEL}, check=~"$check"'
RATE = "$__rate_interval"
# SLO parameters; keep them in step with alerts/slo.rules.yml.
AVAILABILITY_BUDGET = 0.001
LATENCY_BUDGET = 0.01

Json = dict[str, Any]


@dataclass(frozen=True)
class Query:
    expr: str
    legend: str = ""
    instant: bool = False


@dataclass(frozen=True)
class Panel:
    title: str
    queries: Sequence[Query]
    kind: str = "timeseries"
    unit: str = "short"
    width: int = 12
    height: int = 8
    description: str = ""
    min: float | None = None
    max: float | None = None
    thresholds: Sequence[tuple[float, str]] = ()
    mappings: Sequence[tuple[str, str, str]] = ()  # value, text, colour
    stack: bool = False


@dataclass(frozen=True)
class Row:
    title: str
    panels: Sequence[Panel]


@dataclass(frozen=True)
class Variable:
    name: str
    label: str
    query: str
    include_all: bool = True
    default: str | None = None


@dataclass(frozen=True)
class Dashboard:
    uid: str
    title: str
    description: str
    rows: Sequence[Row]
    variables: Sequence[Variable] = field(default_factory=tuple)


# -- JSON building ------------------------------------------------------------------------------------


def datasource_variable() -> Json:
    return {
        "name": "datasource",
        "label": "Data source",
        "type": "datasource",
        "query": "prometheus",
        "current": {},
        "hide": 0,
        "refresh": 1,
        "regex": "",
        "options": [],
    }


def query_variable(variable: Variable) -> Json:
    current: Json = (
        {"selected": True, "text": variable.default, "value": variable.default}
        if variable.default
        else {"selected": True, "text": ["All"], "value": ["$__all"]}
    )
    return {
        "name": variable.name,
        "label": variable.label,
        "type": "query",
        "datasource": DATASOURCE,
        "definition": variable.query,
        "query": {"query": variable.query, "refId": f"{variable.name}-values"},
        "refresh": 2,
        "sort": 1,
        "includeAll": variable.include_all,
        "multi": variable.include_all,
        "allValue": ".*" if variable.include_all else None,
        "current": current,
        "hide": 0,
        "regex": "",
        "options": [],
    }


def field_config(panel: Panel) -> Json:
    steps: list[Json] = [{"color": "green", "value": None}]
    steps += [{"color": colour, "value": value} for value, colour in panel.thresholds]
    defaults: Json = {"unit": panel.unit, "thresholds": {"mode": "absolute", "steps": steps}}
    if panel.min is not None:
        defaults["min"] = panel.min
    if panel.max is not None:
        defaults["max"] = panel.max
    if panel.mappings:
        defaults["mappings"] = [
            {"type": "value", "options": {value: {"text": text, "color": colour}}}
            for value, text, colour in panel.mappings
        ]
    if panel.kind == "timeseries":
        defaults["custom"] = {
            "drawStyle": "line",
            "lineWidth": 1,
            "fillOpacity": 10,
            "showPoints": "never",
            "spanNulls": False,
            "stacking": {"mode": "normal" if panel.stack else "none", "group": "A"},
            "thresholdsStyle": {"mode": "line" if panel.thresholds else "off"},
        }
    return {"defaults": defaults, "overrides": []}


def panel_options(panel: Panel) -> Json:
    if panel.kind == "stat":
        return {
            "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
            "colorMode": "background",
            "graphMode": "none",
            "textMode": "auto",
            "orientation": "auto",
        }
    if panel.kind == "state-timeline":
        return {"showValue": "never", "mergeValues": True, "rowHeight": 0.9, "legend": {"showLegend": False}}
    if panel.kind == "table":
        return {"showHeader": True, "cellHeight": "sm"}
    return {
        "legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
        "tooltip": {"mode": "multi", "sort": "desc"},
    }


def target(query: Query, index: int) -> Json:
    body: Json = {
        "refId": chr(ord("A") + index),
        "datasource": DATASOURCE,
        "expr": query.expr,
        "legendFormat": query.legend or "__auto",
        "range": not query.instant,
        "instant": query.instant,
    }
    if query.instant:
        body["format"] = "table"
    return body


def render_panel(panel: Panel, panel_id: int, x: int, y: int) -> Json:
    body: Json = {
        "id": panel_id,
        "type": panel.kind,
        "title": panel.title,
        "description": panel.description,
        "datasource": DATASOURCE,
        "gridPos": {"h": panel.height, "w": panel.width, "x": x, "y": y},
        "targets": [target(q, i) for i, q in enumerate(panel.queries)],
        "fieldConfig": field_config(panel),
        "options": panel_options(panel),
    }
    if panel.kind == "table":
        body["transformations"] = [
            {"id": "merge", "options": {}},
            {"id": "organize", "options": {"excludeByName": {"Time": True, "__name__": True}}},
        ]
    return body


def render(dashboard: Dashboard) -> Json:
    panels: list[Json] = []
    panel_id = 1
    y = 0
    for row in dashboard.rows:
        panels.append(
            {
                "id": panel_id,
                "type": "row",
                "title": row.title,
                "collapsed": False,
                "gridPos": {"h": 1, "w": GRID_WIDTH, "x": 0, "y": y},
                "panels": [],
            }
        )
        panel_id += 1
        y += 1
        x, row_height = 0, 0
        for panel in row.panels:
            if x + panel.width > GRID_WIDTH:
                x, y, row_height = 0, y + row_height, 0
            panels.append(render_panel(panel, panel_id, x, y))
            panel_id += 1
            x += panel.width
            row_height = max(row_height, panel.height)
        y += row_height
    return {
        "__requires": [
            {"type": "grafana", "id": "grafana", "name": "Grafana", "version": "10.0.0"},
            {"type": "datasource", "id": "prometheus", "name": "Prometheus", "version": "1.0.0"},
        ],
        "uid": dashboard.uid,
        "title": dashboard.title,
        "description": dashboard.description,
        "tags": ["observability-sidecar"],
        "schemaVersion": SCHEMA_VERSION,
        "version": 1,
        "editable": True,
        "graphTooltip": 1,
        "timezone": "",
        "time": {"from": "now-6h", "to": "now"},
        "refresh": "30s",
        "fiscalYearStartMonth": 0,
        "liveNow": False,
        "annotations": {
            "list": [
                {
                    "builtIn": 1,
                    "datasource": {"type": "grafana", "uid": "-- Grafana --"},
                    "enable": True,
                    "hide": True,
                    "iconColor": "rgba(0, 211, 255, 1)",
                    "name": "Annotations & Alerts",
                    "type": "dashboard",
                }
            ]
        },
        "links": [
            {
                "type": "dashboards",
                "tags": ["observability-sidecar"],
                "asDropdown": True,
                "title": "Sidecar dashboards",
                "includeVars": True,
                "keepTime": True,
            }
        ],
        "templating": {"list": [datasource_variable(), *(query_variable(v) for v in dashboard.variables)]},
        "panels": panels,
    }


# -- the dashboards -----------------------------------------------------------------------------------

JOB = Variable("job", "Job", "label_values(sidecar_build_info, job)", include_all=False, default="sidecar")
INSTANCE = Variable("instance", "Instance", 'label_values(sidecar_build_info{job=~"$job"}, instance)')
CHECK_VARIABLE = Variable("check", "Check", f"label_values(sidecar_check_up{{{SEL}}}, check)")
READY_MAPPINGS = (("1", "ready", "green"), ("0", "not ready", "red"))
UP_MAPPINGS = (("1", "up", "green"), ("0", "down", "red"))


def ratio_or_zero(part: str, whole: str, by: str) -> str:
    """``part / whole`` that is 0, not empty, when ``part`` has no series (no errors yet)."""
    return f"(sum by ({by}) ({part}) or 0 * sum by ({by}) ({whole})) / sum by ({by}) ({whole})"


def overview() -> Dashboard:
    count = f"rate(http_server_request_duration_seconds_count{{{SEL}}}[{RATE}])"
    errors = f'rate(http_server_request_duration_seconds_count{{{SEL}, http_response_status_code=~"5..|"}}[{RATE}])'
    buckets = f"rate(http_server_request_duration_seconds_bucket{{{SEL}}}[{RATE}])"
    return Dashboard(
        uid="sidecar-overview",
        title="Sidecar overview",
        description="Is the app ready, is it serving, which dependency is the problem.",
        variables=(JOB, INSTANCE, CHECK_VARIABLE),
        rows=(
            Row(
                "Readiness",
                (
                    Panel(
                        "Ready",
                        [Query(f"sidecar_ready{{{SEL}}}", "{{instance}}")],
                        kind="stat",
                        width=6,
                        height=5,
                        mappings=READY_MAPPINGS,
                        description="1 when /readyz answers 200 (every critical check passes, not draining).",
                    ),
                    Panel(
                        "Scrape targets up",
                        [Query(f"up{{{SEL}}}", "{{instance}}")],
                        kind="stat",
                        width=6,
                        height=5,
                        mappings=UP_MAPPINGS,
                    ),
                    Panel(
                        "Draining",
                        [Query(f"sidecar_draining{{{SEL}}}", "{{instance}}")],
                        kind="stat",
                        width=6,
                        height=5,
                        mappings=(("0", "serving", "green"), ("1", "draining", "orange")),
                    ),
                    Panel(
                        "Readiness changes (15m)",
                        [Query(f"increase(sidecar_readiness_changes_total{{{SEL}}}[15m])", "{{instance}}")],
                        kind="stat",
                        width=6,
                        height=5,
                        thresholds=((2, "orange"), (5, "red")),
                    ),
                ),
            ),
            Row(
                "The app behind the gateway (live traffic)",
                (
                    Panel(
                        "App ejected",
                        [Query(f"sidecar_app_ejected{{{SEL}}}", "{{instance}}")],
                        kind="state-timeline",
                        width=12,
                        mappings=(("0", "in rotation", "green"), ("1", "ejected", "red")),
                        description="1 while failing live traffic (outlier detection) keeps the app out of "
                        "readiness; /readyz?verbose says which rule.",
                    ),
                    Panel(
                        "Ejections by reason",
                        [
                            Query(
                                f"sum by (reason) (increase(sidecar_app_ejections_total{{{SEL}}}[{RATE}]))",
                                "{{reason}}",
                            )
                        ],
                        width=12,
                        stack=True,
                        description="consecutive_5xx, consecutive_connect_failures or error_ratio; "
                        "repeated ejections last longer each time.",
                    ),
                ),
            ),
            Row(
                "Requests (gateway and access logs)",
                (
                    Panel(
                        "Requests per second by status",
                        [
                            Query(
                                f"sum by (http_response_status_code) ({count})",
                                "{{http_response_status_code}}",
                            )
                        ],
                        unit="reqps",
                        width=8,
                        stack=True,
                    ),
                    Panel(
                        "Error ratio (5xx and no response)",
                        [Query(ratio_or_zero(errors, count, "job"), "errors")],
                        unit="percentunit",
                        width=8,
                        min=0,
                        thresholds=((0.001, "orange"), (0.01, "red")),
                    ),
                    Panel(
                        "Latency percentiles",
                        [
                            Query(f"histogram_quantile({q}, sum by (le) ({buckets}))", f"p{round(q * 100)}")
                            for q in (0.5, 0.95, 0.99)
                        ],
                        unit="s",
                        width=8,
                    ),
                    Panel(
                        "Busiest routes",
                        [Query(f"topk(10, sum by (http_route) ({count}))", "{{http_route}}")],
                        unit="reqps",
                        width=12,
                    ),
                    Panel(
                        "Active requests",
                        [
                            Query(
                                f"sum by (http_request_method) (http_server_active_requests{{{SEL}}})",
                                "{{http_request_method}}",
                            )
                        ],
                        width=12,
                    ),
                ),
            ),
            Row(
                "Dependencies",
                (
                    Panel(
                        "Check ready (after hysteresis)",
                        [Query(f"sidecar_check_ready{{{CHECK}}}", "{{instance}} {{check}}")],
                        kind="state-timeline",
                        width=8,
                        mappings=READY_MAPPINGS,
                    ),
                    Panel(
                        "Last probe up",
                        [Query(f"sidecar_check_up{{{CHECK}}}", "{{instance}} {{check}}")],
                        kind="state-timeline",
                        width=8,
                        mappings=UP_MAPPINGS,
                        description="1 when the check's last probe did not fail (before hysteresis).",
                    ),
                    Panel(
                        "Probe duration",
                        [Query(f"sidecar_check_duration_seconds{{{CHECK}}}", "{{instance}} {{check}}")],
                        unit="s",
                        width=8,
                    ),
                    Panel(
                        "Failed probes by reason",
                        [
                            Query(
                                f"sum by (check, reason) (increase(sidecar_check_failures_total{{{CHECK}}}[{RATE}]))",
                                "{{check}}: {{reason}}",
                            )
                        ],
                        width=24,
                        stack=True,
                    ),
                ),
            ),
        ),
    )


def dependencies() -> Dashboard:
    pg = f"pg_stat_activity_count{{{CHECK}}}"
    return Dashboard(
        uid="sidecar-dependencies",
        title="Sidecar dependencies",
        description="Every check, and what the sidecar measures inside PostgreSQL, MySQL, Redis and HTTP/TCP endpoints.",
        variables=(JOB, INSTANCE, CHECK_VARIABLE),
        rows=(
            Row(
                "Checks",
                (
                    Panel(
                        "Status",
                        [Query(f"sidecar_check_status{{{CHECK}}} == 1", "{{check}} ({{kind}}): {{status}}")],
                        kind="state-timeline",
                        width=12,
                        mappings=(("1", "current", "blue"),),
                    ),
                    Panel(
                        "Ready (after hysteresis)",
                        [Query(f"sidecar_check_ready{{{CHECK}}}", "{{check}} critical={{critical}}")],
                        kind="state-timeline",
                        width=12,
                        mappings=READY_MAPPINGS,
                    ),
                    Panel(
                        "Probe duration",
                        [Query(f"sidecar_check_duration_seconds{{{CHECK}}}", "{{instance}} {{check}}")],
                        unit="s",
                        width=8,
                    ),
                    Panel(
                        "Failed probes per second by reason",
                        [
                            Query(
                                f"sum by (check, reason) (rate(sidecar_check_failures_total{{{CHECK}}}[{RATE}]))",
                                "{{check}}: {{reason}}",
                            )
                        ],
                        width=8,
                    ),
                    Panel(
                        "Seconds since the last probe",
                        [
                            Query(
                                f"time() - sidecar_check_last_run_timestamp_seconds{{{CHECK}}}",
                                "{{instance}} {{check}}",
                            )
                        ],
                        unit="s",
                        width=8,
                    ),
                ),
            ),
            Row(
                "PostgreSQL",
                (
                    Panel(
                        "Connections by state",
                        [Query(f"sum by (check, state) ({pg})", "{{check}} {{state}}")],
                        width=8,
                        stack=True,
                    ),
                    Panel(
                        "Connections used (of max_connections)",
                        [
                            Query(
                                f"sum without (datname, state) ({pg}) / pg_settings_max_connections{{{CHECK}}}",
                                "{{check}}",
                            )
                        ],
                        unit="percentunit",
                        width=8,
                        min=0,
                        max=1,
                        thresholds=((0.8, "red"),),
                    ),
                    Panel(
                        "Longest transaction",
                        [
                            Query(
                                f"max by (check) (pg_stat_activity_max_tx_duration{{{CHECK}}})",
                                "{{check}}",
                            )
                        ],
                        unit="s",
                        width=8,
                    ),
                    Panel(
                        "Server",
                        [
                            Query(
                                f"time() - pg_postmaster_start_time_seconds{{{CHECK}}}",
                                "{{check}} uptime",
                                instant=True,
                            ),
                            Query(f"pg_replication_is_replica{{{CHECK}}}", "{{check}} replica", instant=True),
                            Query(f"pg_static{{{CHECK}}}", "{{check}} {{short_version}}", instant=True),
                        ],
                        kind="table",
                        width=24,
                        height=6,
                    ),
                ),
            ),
            Row(
                "MySQL / MariaDB",
                (
                    Panel(
                        "Threads",
                        [
                            Query(f"mysql_global_status_threads_connected{{{CHECK}}}", "{{check}} connected"),
                            Query(f"mysql_global_status_threads_running{{{CHECK}}}", "{{check}} running"),
                            Query(
                                f"mysql_global_status_max_used_connections{{{CHECK}}}",
                                "{{check}} max used connections",
                            ),
                        ],
                        width=8,
                    ),
                    Panel(
                        "Connections used (of max_connections)",
                        [
                            Query(
                                f"mysql_global_status_threads_connected{{{CHECK}}}"
                                f" / mysql_global_variables_max_connections{{{CHECK}}}",
                                "{{check}}",
                            )
                        ],
                        unit="percentunit",
                        width=8,
                        min=0,
                        max=1,
                        thresholds=((0.8, "red"),),
                    ),
                    Panel(
                        "Connection errors per second",
                        [
                            Query(
                                "sum by (check, error) "
                                f"(rate(mysql_global_status_connection_errors_total{{{CHECK}}}[{RATE}]))",
                                "{{check}} {{error}}",
                            )
                        ],
                        width=8,
                    ),
                    Panel(
                        "Server",
                        [
                            Query(f"mysql_global_status_uptime{{{CHECK}}}", "{{check}} uptime", instant=True),
                            Query(
                                f"mysql_global_variables_read_only{{{CHECK}}}",
                                "{{check}} read only",
                                instant=True,
                            ),
                            Query(f"mysql_version_info{{{CHECK}}}", "{{check}} {{version}}", instant=True),
                        ],
                        kind="table",
                        width=24,
                        height=6,
                    ),
                ),
            ),
            Row(
                "Redis",
                (
                    Panel(
                        "Memory used and maxmemory",
                        [
                            Query(f"redis_memory_used_bytes{{{CHECK}}}", "{{check}} used"),
                            Query(f"redis_memory_max_bytes{{{CHECK}}} > 0", "{{check}} maxmemory"),
                        ],
                        unit="bytes",
                        width=8,
                    ),
                    Panel(
                        "Clients",
                        [
                            Query(f"redis_connected_clients{{{CHECK}}}", "{{check}} connected"),
                            Query(f"redis_blocked_clients{{{CHECK}}}", "{{check}} blocked"),
                            Query(f"redis_config_maxclients{{{CHECK}}}", "{{check}} maxclients"),
                        ],
                        width=8,
                    ),
                    Panel(
                        "Hit ratio",
                        [
                            Query(
                                f"rate(redis_keyspace_hits_total{{{CHECK}}}[{RATE}]) / (rate(redis_keyspace_hits_total"
                                f"{{{CHECK}}}[{RATE}]) + rate(redis_keyspace_misses_total{{{CHECK}}}[{RATE}]))",
                                "{{check}}",
                            )
                        ],
                        unit="percentunit",
                        width=8,
                        min=0,
                        max=1,
                    ),
                    Panel(
                        "Commands, evictions and expirations per second",
                        [
                            Query(
                                f"rate(redis_commands_processed_total{{{CHECK}}}[{RATE}])",
                                "{{check}} commands",
                            ),
                            Query(f"rate(redis_evicted_keys_total{{{CHECK}}}[{RATE}])", "{{check}} evicted"),
                            Query(f"rate(redis_expired_keys_total{{{CHECK}}}[{RATE}])", "{{check}} expired"),
                            Query(
                                f"rate(redis_rejected_connections_total{{{CHECK}}}[{RATE}])",
                                "{{check}} rejected connections",
                            ),
                        ],
                        width=12,
                    ),
                    Panel(
                        "Server and replication",
                        [
                            Query(f"redis_uptime_in_seconds{{{CHECK}}}", "{{check}} uptime", instant=True),
                            Query(
                                f"redis_instance_info{{{CHECK}}}",
                                "{{check}} {{role}} {{redis_version}}",
                                instant=True,
                            ),
                            Query(f"redis_connected_slaves{{{CHECK}}}", "{{check}} replicas", instant=True),
                            Query(
                                f"redis_master_link_up{{{CHECK}}}", "{{check}} link to master", instant=True
                            ),
                            Query(
                                f"rate(redis_connections_received_total{{{CHECK}}}[{RATE}])",
                                "{{check}} new connections/s",
                                instant=True,
                            ),
                        ],
                        kind="table",
                        width=12,
                    ),
                    Panel(
                        "Keys per database",
                        [
                            Query(f"redis_db_keys{{{CHECK}}}", "{{check}} {{db}}"),
                            Query(f"redis_db_keys_expiring{{{CHECK}}}", "{{check}} {{db}} with TTL"),
                        ],
                        width=24,
                    ),
                ),
            ),
            Row(
                "HTTP and TCP endpoints",
                (
                    Panel(
                        "HTTP probe phases",
                        [Query(f"probe_http_duration_seconds{{{CHECK}}}", "{{check}} {{phase}}")],
                        unit="s",
                        width=8,
                        stack=True,
                    ),
                    Panel(
                        "HTTP status code",
                        [Query(f"probe_http_status_code{{{CHECK}}}", "{{check}}")],
                        width=8,
                    ),
                    Panel(
                        "Certificate days left",
                        [Query(f"(probe_ssl_earliest_cert_expiry{{{CHECK}}} - time()) / 86400", "{{check}}")],
                        unit="d",
                        width=8,
                        thresholds=((-1e9, "red"), (3, "orange"), (14, "green")),
                    ),
                    Panel(
                        "HTTP response",
                        [
                            Query(f"probe_http_version{{{CHECK}}}", "{{check}} HTTP version", instant=True),
                            Query(f"probe_http_ssl{{{CHECK}}}", "{{check}} TLS", instant=True),
                            Query(f"probe_http_redirects{{{CHECK}}}", "{{check}} redirects", instant=True),
                            Query(
                                f"probe_http_content_length{{{CHECK}}}",
                                "{{check}} Content-Length",
                                instant=True,
                            ),
                            Query(
                                f"probe_http_uncompressed_body_length{{{CHECK}}}",
                                "{{check}} body bytes read",
                                instant=True,
                            ),
                        ],
                        kind="table",
                        width=12,
                    ),
                    Panel(
                        "TCP connect and DNS lookup",
                        [
                            Query(f"sidecar_tcp_connect_duration_seconds{{{CHECK}}}", "{{check}} connect"),
                            Query(f"probe_dns_lookup_time_seconds{{{CHECK}}}", "{{check}} DNS"),
                        ],
                        unit="s",
                        width=12,
                    ),
                ),
            ),
        ),
    )


def queues() -> Dashboard:
    queue_sel = f'{CHECK}, queue=~"$queue"'
    backlog_states = 'state=~"wait|prioritized|paused"'
    return Dashboard(
        uid="sidecar-queues",
        title="Sidecar queues",
        description="BullMQ, Celery, RQ and RabbitMQ queues: backlog, age, workers, stuck jobs.",
        variables=(
            JOB,
            INSTANCE,
            Variable("check", "Check", f"label_values(sidecar_queue_jobs{{{SEL}}}, check)"),
            Variable("queue", "Queue", f'label_values(sidecar_queue_jobs{{{SEL}, check=~"$check"}}, queue)'),
        ),
        rows=(
            Row(
                "Backlog",
                (
                    Panel(
                        "Jobs waiting (wait, prioritized, paused)",
                        [
                            Query(
                                f"sum by (check, queue) (sidecar_queue_jobs{{{queue_sel}, {backlog_states}}})",
                                "{{check}}/{{queue}}",
                            )
                        ],
                        width=12,
                        thresholds=((1000, "red"),),
                    ),
                    Panel(
                        "Jobs by state",
                        [Query(f"sum by (state) (sidecar_queue_jobs{{{queue_sel}}})", "{{state}}")],
                        width=12,
                        stack=True,
                    ),
                    Panel(
                        "Age of the next job in line",
                        [
                            Query(
                                f"sidecar_queue_oldest_waiting_job_age_seconds{{{queue_sel}}}",
                                "{{check}}/{{queue}}",
                            )
                        ],
                        unit="s",
                        width=12,
                        thresholds=((600, "red"),),
                    ),
                    Panel(
                        "Workers",
                        [Query(f"sidecar_queue_workers{{{queue_sel}}}", "{{check}}/{{queue}}")],
                        width=12,
                    ),
                ),
            ),
            Row(
                "Stuck work",
                (
                    Panel(
                        "Overdue delayed jobs",
                        [
                            Query(
                                f"sidecar_queue_overdue_delayed_jobs{{{queue_sel}}}", "{{check}}/{{queue}}"
                            ),
                        ],
                        width=8,
                    ),
                    Panel(
                        "Most overdue delayed job, late by",
                        [
                            Query(
                                f"sidecar_queue_overdue_delayed_seconds{{{queue_sel}}}",
                                "{{check}}/{{queue}}",
                            ),
                        ],
                        unit="s",
                        width=8,
                    ),
                    Panel(
                        "Stalled jobs and paused queues",
                        [
                            Query(
                                f"sidecar_queue_stalled_jobs{{{queue_sel}}}", "{{check}}/{{queue}} stalled"
                            ),
                            Query(f"sidecar_queue_paused{{{queue_sel}}}", "{{check}}/{{queue}} paused"),
                        ],
                        width=8,
                    ),
                ),
            ),
            Row(
                "Throughput (BullMQ metrics)",
                (
                    Panel(
                        "Jobs completed and failed per second",
                        [
                            Query(
                                f"rate(sidecar_queue_jobs_completed_total{{{queue_sel}}}[{RATE}])",
                                "{{check}}/{{queue}} completed",
                            ),
                            Query(
                                f"rate(sidecar_queue_jobs_failed_total{{{queue_sel}}}[{RATE}])",
                                "{{check}}/{{queue}} failed",
                            ),
                        ],
                        width=24,
                    ),
                ),
            ),
            Row(
                "Celery",
                (
                    Panel(
                        "Tasks by priority",
                        [
                            Query(
                                f"sidecar_celery_queue_priority_jobs{{{queue_sel}}}",
                                "{{check}}/{{queue}} priority {{priority}}",
                            )
                        ],
                        width=12,
                        stack=True,
                    ),
                    Panel(
                        "Unacknowledged messages",
                        [
                            Query(f"sidecar_celery_unacked_messages{{{CHECK}}}", "{{check}} unacked"),
                            Query(
                                f"sidecar_celery_oldest_unacked_message_age_seconds{{{CHECK}}}",
                                "{{check}} oldest age (s)",
                            ),
                        ],
                        width=12,
                    ),
                ),
            ),
        ),
    )


def host_and_sidecar() -> Dashboard:
    return Dashboard(
        uid="sidecar-host",
        title="Sidecar host and process",
        description="The host, the app's process, the sidecar's own resources and the telemetry it drops.",
        variables=(JOB, INSTANCE),
        rows=(
            Row(
                "Host",
                (
                    Panel(
                        "CPU busy",
                        [Query(f"sidecar_host_cpu_utilization_ratio{{{SEL}}}", "{{instance}}")],
                        unit="percentunit",
                        width=8,
                        min=0,
                        max=1,
                    ),
                    Panel(
                        "Load",
                        [
                            Query(f"{m}{{{SEL}}}", f"{{{{instance}}}} {m[5:]}")
                            for m in ("node_load1", "node_load5", "node_load15")
                        ],
                        width=8,
                    ),
                    Panel(
                        "Memory used",
                        [
                            Query(
                                f"1 - sidecar_host_memory_available_bytes{{{SEL}}} / sidecar_host_memory_total_bytes{{{SEL}}}",
                                "{{instance}} memory",
                            ),
                            Query(
                                f"1 - sidecar_host_swap_free_bytes{{{SEL}}} / (sidecar_host_swap_total_bytes{{{SEL}}} > 0)",
                                "{{instance}} swap",
                            ),
                        ],
                        unit="percentunit",
                        width=8,
                        min=0,
                        max=1,
                    ),
                    Panel(
                        "Filesystem used",
                        [
                            Query(
                                f"1 - node_filesystem_avail_bytes{{{SEL}}} / node_filesystem_size_bytes{{{SEL}}}",
                                "{{instance}} {{mountpoint}}",
                            ),
                            Query(
                                f"1 - node_filesystem_files_free{{{SEL}}} / node_filesystem_files{{{SEL}}}",
                                "{{instance}} {{mountpoint}} inodes",
                            ),
                        ],
                        unit="percentunit",
                        width=8,
                        min=0,
                        max=1,
                        thresholds=((0.9, "red"),),
                    ),
                    Panel(
                        "Container memory",
                        [
                            Query(
                                f"sidecar_container_memory_working_set_bytes{{{SEL}}}",
                                "{{instance}} working set",
                            ),
                            Query(f"sidecar_container_memory_usage_bytes{{{SEL}}}", "{{instance}} usage"),
                            Query(f"sidecar_container_memory_limit_bytes{{{SEL}}}", "{{instance}} limit"),
                        ],
                        unit="bytes",
                        width=8,
                    ),
                    Panel(
                        "File descriptors and uptime",
                        [
                            Query(
                                f"node_filefd_allocated{{{SEL}}} / node_filefd_maximum{{{SEL}}}",
                                "{{instance}} fds used",
                            ),
                            Query(
                                f"(time() - node_boot_time_seconds{{{SEL}}}) / 86400",
                                "{{instance}} uptime (days)",
                            ),
                        ],
                        width=8,
                    ),
                ),
            ),
            Row(
                "The app's process (process checks)",
                (
                    Panel(
                        "CPU",
                        [
                            Query(
                                f"rate(sidecar_app_process_cpu_seconds_total{{{SEL}}}[{RATE}])",
                                "{{instance}} {{check}}",
                            )
                        ],
                        unit="percentunit",
                        width=6,
                    ),
                    Panel(
                        "Memory",
                        [
                            Query(
                                f"sidecar_app_process_resident_memory_bytes{{{SEL}}}",
                                "{{instance}} {{check}} RSS",
                            ),
                            Query(
                                f"sidecar_app_process_virtual_memory_bytes{{{SEL}}}",
                                "{{instance}} {{check}} virtual",
                            ),
                        ],
                        unit="bytes",
                        width=6,
                    ),
                    Panel(
                        "File descriptors used",
                        [
                            Query(
                                f"sidecar_app_process_open_fds{{{SEL}}} / sidecar_app_process_max_fds{{{SEL}}}",
                                "{{instance}} {{check}}",
                            )
                        ],
                        unit="percentunit",
                        width=6,
                    ),
                    Panel(
                        "Threads and uptime",
                        [
                            Query(f"sidecar_app_process_threads{{{SEL}}}", "{{instance}} {{check}} threads"),
                            Query(
                                f"time() - sidecar_app_process_start_time_seconds{{{SEL}}}",
                                "{{instance}} {{check}} uptime (s)",
                            ),
                        ],
                        width=6,
                    ),
                ),
            ),
            Row(
                "The sidecar itself",
                (
                    Panel(
                        "CPU",
                        [Query(f"rate(process_cpu_seconds_total{{{SEL}}}[{RATE}])", "{{instance}}")],
                        unit="percentunit",
                        width=6,
                    ),
                    Panel(
                        "Resident memory",
                        [Query(f"process_resident_memory_bytes{{{SEL}}}", "{{instance}}")],
                        unit="bytes",
                        width=6,
                    ),
                    Panel(
                        "Open file descriptors",
                        [Query(f"process_open_fds{{{SEL}}}", "{{instance}}")],
                        width=6,
                    ),
                    Panel(
                        "Version",
                        [Query(f"sidecar_build_info{{{SEL}}}", "{{instance}} {{version}}", instant=True)],
                        kind="table",
                        width=6,
                    ),
                ),
            ),
            Row(
                "Logs and correlation",
                (
                    Panel(
                        "Log lines per second by level",
                        [
                            Query(
                                f"sum by (source, level) (rate(sidecar_log_lines_total{{{SEL}}}[{RATE}]))",
                                "{{source}} {{level}}",
                            )
                        ],
                        width=8,
                        stack=True,
                    ),
                    Panel(
                        "Log lines rejected and dropped per second",
                        [
                            Query(
                                f"sum by (source, reason) (rate(sidecar_log_lines_rejected_total{{{SEL}}}[{RATE}]))",
                                "{{source}} rejected: {{reason}}",
                            ),
                            Query(
                                f"sum by (source, reason) (rate(sidecar_log_lines_dropped_total{{{SEL}}}[{RATE}]))",
                                "{{source}} dropped: {{reason}}",
                            ),
                        ],
                        width=8,
                    ),
                    Panel(
                        "Log sources",
                        [
                            # lines/s and rejects are counted for every source (files, stdin, HTTP ingest);
                            # bytes read and files followed exist only for file sources
                            Query(
                                f"sum by (source) (rate(sidecar_log_lines_total{{{SEL}}}[{RATE}]))",
                                "{{source}} lines/s",
                            ),
                            Query(
                                f"sum by (source) (rate(sidecar_log_lines_rejected_total{{{SEL}}}[{RATE}]))",
                                "{{source}} rejected lines/s",
                            ),
                            Query(
                                f"sum by (source) (rate(sidecar_log_read_bytes_total{{{SEL}}}[{RATE}]))",
                                "{{source}} bytes/s (files)",
                            ),
                            Query(f"sidecar_log_queue_batches{{{SEL}}}", "{{source}} queued batches"),
                            Query(f"sidecar_log_files_followed{{{SEL}}}", "{{source}} files"),
                        ],
                        width=8,
                    ),
                    Panel(
                        "Followed files: rotations and errors",
                        [
                            Query(
                                f"sum by (source, kind) (increase(sidecar_log_file_rotations_total{{{SEL}}}[{RATE}]))",
                                "{{source}} rotation: {{kind}}",
                            ),
                            Query(
                                f"sum by (source, reason) (increase(sidecar_log_file_errors_total{{{SEL}}}[{RATE}]))",
                                "{{source}} error: {{reason}}",
                            ),
                        ],
                        width=12,
                    ),
                    Panel(
                        "Correlation index",
                        [
                            Query(f"sidecar_correlation_requests{{{SEL}}}", "{{instance}} requests held"),
                            Query(
                                f"rate(sidecar_correlation_evictions_total{{{SEL}}}[{RATE}])",
                                "{{instance}} evictions/s",
                            ),
                            Query(f"sidecar_correlation_bytes{{{SEL}}} / 1e6", "{{instance}} MB held"),
                        ],
                        width=12,
                    ),
                ),
            ),
            Row(
                "Sentry forwarding",
                (
                    Panel(
                        "Events per second by outcome",
                        [
                            Query(
                                f"sum by (outcome) (rate(sidecar_sentry_events_total{{{SEL}}}[{RATE}]))",
                                "{{outcome}}",
                            )
                        ],
                        width=8,
                    ),
                    Panel(
                        "Dropped and failed sends per second",
                        [
                            Query(
                                f"sum by (reason) (rate(sidecar_sentry_dropped_total{{{SEL}}}[{RATE}]))",
                                "dropped: {{reason}}",
                            ),
                            Query(
                                f"sum by (reason) (rate(sidecar_sentry_send_failures_total{{{SEL}}}[{RATE}]))",
                                "send failed: {{reason}}",
                            ),
                        ],
                        width=8,
                    ),
                    Panel(
                        "Spool",
                        [
                            Query(f"sidecar_sentry_spool_events{{{SEL}}}", "{{instance}} events"),
                            Query(f"sidecar_sentry_spool_bytes{{{SEL}}} / 1e6", "{{instance}} MB"),
                        ],
                        width=8,
                    ),
                    Panel(
                        "Relay requests per second by answer",
                        [
                            Query(
                                f"sum by (code) (rate(sidecar_sentry_relay_requests_total{{{SEL}}}[{RATE}]))",
                                "{{code}}",
                            )
                        ],
                        width=24,
                    ),
                ),
            ),
            Row(
                "Gateway and listeners",
                (
                    Panel(
                        "Upstream errors, rejections and retries per second",
                        [
                            Query(
                                f"sum by (reason) (rate(sidecar_gateway_upstream_errors_total{{{SEL}}}[{RATE}]))",
                                "upstream: {{reason}}",
                            ),
                            Query(
                                f"sum by (reason) (rate(sidecar_gateway_rejected_total{{{SEL}}}[{RATE}]))",
                                "rejected: {{reason}}",
                            ),
                            Query(
                                f"sum(rate(sidecar_gateway_upstream_retries_total{{{SEL}}}[{RATE}]))",
                                "retries",
                            ),
                            Query(
                                f"sum(rate(sidecar_gateway_client_disconnects_total{{{SEL}}}[{RATE}]))",
                                "client disconnects",
                            ),
                        ],
                        width=8,
                    ),
                    Panel(
                        "Connections",
                        [
                            Query(
                                f"sum by (side, state) (sidecar_gateway_connections{{{SEL}}})",
                                "{{side}} {{state}}",
                            )
                        ],
                        width=8,
                    ),
                    Panel(
                        "Dropped telemetry per second",
                        [
                            Query(
                                f"sum(rate(sidecar_http_route_overflow_total{{{SEL}}}[{RATE}]))",
                                "requests with overflow route",
                            ),
                            Query(
                                f"sum(rate(sidecar_gateway_access_log_dropped_total{{{SEL}}}[{RATE}]))",
                                "access log lines dropped",
                            ),
                            Query(
                                f"sum(rate(sidecar_http_duplicate_observations_total{{{SEL}}}[{RATE}]))",
                                "log access lines already counted (skipped)",
                            ),
                            Query(
                                f"sum(rate(sidecar_http_reused_request_ids_total{{{SEL}}}[{RATE}]))",
                                "client-reused request IDs (still counted)",
                            ),
                            Query(
                                "sum by (listener, reason) "
                                f"(rate(sidecar_http_rejected_requests_total{{{SEL}}}[{RATE}]))",
                                "{{listener}} refused: {{reason}}",
                            ),
                        ],
                        width=8,
                    ),
                    Panel(
                        "Request and response body sizes (p95)",
                        [
                            Query(
                                "histogram_quantile(0.95, sum by (le) "
                                f"(rate(http_server_request_body_size_bytes_bucket{{{SEL}}}[{RATE}])))",
                                "request",
                            ),
                            Query(
                                "histogram_quantile(0.95, sum by (le) "
                                f"(rate(http_server_response_body_size_bytes_bucket{{{SEL}}}[{RATE}])))",
                                "response",
                            ),
                        ],
                        unit="bytes",
                        width=24,
                    ),
                    Panel(
                        "Rate limiting per second: decisions by rule and outcome, Redis errors, evictions",
                        [
                            Query(
                                "sum by (rule, outcome) "
                                f"(rate(sidecar_gateway_ratelimit_decisions_total{{{SEL}}}[{RATE}]))",
                                "{{rule}}: {{outcome}}",
                            ),
                            Query(
                                "sum by (reason) "
                                f"(rate(sidecar_gateway_ratelimit_redis_errors_total{{{SEL}}}[{RATE}]))",
                                "Redis error: {{reason}}",
                            ),
                            Query(
                                "sum by (rule) "
                                f"(rate(sidecar_gateway_ratelimit_local_evictions_total{{{SEL}}}[{RATE}]))",
                                "{{rule}}: local keys evicted",
                            ),
                        ],
                        description=(
                            "gateway.rate_limits: allowed and rejected (429) requests per rule; error_open and "
                            "error_closed are decisions Redis could not make (let through, or refused with 503)."
                        ),
                        width=12,
                    ),
                    Panel(
                        "Rate limiting: Redis decision latency",
                        [
                            Query(
                                "histogram_quantile(0.5, sum by (le) "
                                f"(rate(sidecar_gateway_ratelimit_redis_duration_seconds_bucket{{{SEL}}}[{RATE}])))",
                                "p50",
                            ),
                            Query(
                                "histogram_quantile(0.99, sum by (le) "
                                f"(rate(sidecar_gateway_ratelimit_redis_duration_seconds_bucket{{{SEL}}}[{RATE}])))",
                                "p99",
                            ),
                        ],
                        description="Round trip of one rate-limit decision to Redis (past rate_limit_redis.timeout: error).",
                        unit="s",
                        width=12,
                    ),
                ),
            ),
        ),
    )


def slo() -> Dashboard:
    service = 'job=~"$job", service=~"$service"'

    def window(name: str, window: str) -> str:
        return f"service:sidecar_http_{name}:ratio_rate{window}{{{service}}}"

    count = f"http_server_request_duration_seconds_count{{{service}}}"
    errors = f'http_server_request_duration_seconds_count{{{service}, http_response_status_code=~"5..|"}}'
    fast = f'http_server_request_duration_seconds_bucket{{{service}, le="0.5"}}'
    budget_left_availability = (
        f"1 - ({ratio_or_zero(f'increase({errors}[30d])', f'increase({count}[30d])', 'job, service')})"
        f" / {AVAILABILITY_BUDGET}"
    )
    budget_left_latency = (
        f"1 - (1 - sum by (job, service) (increase({fast}[30d])) / sum by (job, service) (increase({count}[30d])))"
        f" / {LATENCY_BUDGET}"
    )
    windows = ("5m", "1h", "6h", "3d")

    def objective_row(title: str, budget_left: str, ratio: str, budget: float, ratio_title: str) -> Row:
        """One SLO: error budget left, burn rates against the alert thresholds, and the ratio itself."""
        return Row(
            title,
            (
                Panel(
                    "Error budget left (30 days)",
                    [Query(budget_left, "{{service}}")],
                    kind="stat",
                    unit="percentunit",
                    width=6,
                    thresholds=((-1e9, "red"), (0.25, "orange"), (0.5, "green")),
                ),
                Panel(
                    "Burn rate (1 = budget lasts exactly 30 days)",
                    [Query(f"{window(ratio, w)} / {budget}", f"{{{{service}}}} {w}") for w in windows],
                    width=9,
                    thresholds=((1, "orange"), (6, "red"), (14.4, "dark-red")),
                ),
                Panel(
                    ratio_title,
                    [Query(window(ratio, w), f"{{{{service}}}} {w}") for w in windows],
                    unit="percentunit",
                    width=9,
                ),
            ),
        )

    return Dashboard(
        uid="sidecar-slo",
        title="Sidecar SLO",
        description=(
            "HTTP availability (99.9% non-5xx) and latency (99% under 0.5s) objectives over 30 days, from the "
            "recording rules of alerts/slo.rules.yml: error ratios, burn rates against the alert thresholds, "
            "error budget left."
        ),
        variables=(
            JOB,
            Variable(
                "service",
                "Service",
                'label_values(service:sidecar_http_requests:rate5m{job=~"$job"}, service)',
            ),
        ),
        rows=(
            objective_row(
                "Availability (99.9% of requests without a 5xx)",
                budget_left_availability,
                "errors",
                AVAILABILITY_BUDGET,
                "Error ratio",
            ),
            objective_row(
                "Latency (99% of requests within 0.5s)",
                budget_left_latency,
                "slow_requests",
                LATENCY_BUDGET,
                "Share of requests slower than 0.5s",
            ),
            Row(
                "Traffic",
                (
                    Panel(
                        "Requests per second",
                        [
                            Query(
                                f"service:sidecar_http_requests:rate{w}{{{service}}}", f"{{{{service}}}} {w}"
                            )
                            for w in ("5m", "1h")
                        ],
                        unit="reqps",
                        width=24,
                    ),
                ),
            ),
        ),
    )


DASHBOARDS = {
    "overview.json": overview,
    "dependencies.json": dependencies,
    "queues.json": queues,
    "host-and-sidecar.json": host_and_sidecar,
    "slo.json": slo,
}


def generated() -> dict[str, str]:
    """File name -> JSON text of every dashboard."""
    return {name: json.dumps(render(build()), indent=2) + "\n" for name, build in DASHBOARDS.items()}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--check", action="store_true", help="compare instead of writing")
    parser.add_argument("--out", type=Path, default=HERE)
    args = parser.parse_args(argv)
    stale = []
    for name, text in generated().items():
        path = args.out / name
        if args.check:
            if not path.exists() or path.read_text() != text:
                stale.append(name)
        else:
            path.write_text(text)
    if stale:
        print(f"out of date, run python dashboards/generate.py: {', '.join(stale)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
